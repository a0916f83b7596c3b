"""Every metric the alert rules and the dashboard read is one hotpool really exports, and every
metric hotpool exports has its place on the dashboard."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_files import SCRAPE_SERIES, alert_rules, dashboard, dashboard_queries
from tests.deploy.exported import exported_families, exposed_names
from tests.deploy.promql import grafana_names

pytestmark = pytest.mark.integration


def deploy_queries() -> list[tuple[str, str]]:
    """(where, query) of every alert rule and every dashboard query."""
    alerts = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return alerts + dashboard_queries(dashboard())


async def test_the_deploy_files_read_only_metrics_hotpool_exports(hotpool_stack):
    families = await exported_families(await hotpool_stack())
    exported = exposed_names((family.name, family.type) for family in families)
    assert len(families) >= 20  # both registries were read, their scrape-time parts too
    unknown = {}
    for where, query in deploy_queries():
        names = grafana_names(query)
        assert names, f"{where} reads no metric: {query}"
        if missing := names - exported - SCRAPE_SERIES:
            unknown[where] = sorted(missing)
    assert not unknown, f"queries name metrics hotpool does not export: {unknown}"


async def test_the_dashboard_shows_every_metric_hotpool_exports(hotpool_stack):
    families = await exported_families(await hotpool_stack())
    shown = set().union(*(grafana_names(query) for _, query in dashboard_queries(dashboard())))
    unshown = [
        family.name
        for family in families
        if not exposed_names([(family.name, family.type)]) & shown
    ]
    assert not unshown, f"no dashboard panel shows {unshown}"

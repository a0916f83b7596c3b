"""deploy/prometheus and deploy/grafana: what Prometheus's own tool accepts, alerts tested
firing and quiet, and a dashboard Grafana can import."""

from __future__ import annotations

import json
import re
from itertools import combinations

import pytest

from tests.deploy.deploy_files import (
    ALERTS,
    ALERTS_TEST,
    CONFIG,
    ROOT,
    alert_rules,
    alert_tests,
    dashboard,
    dashboard_queries,
    panels,
    promtool,
)
from tests.deploy.promql import grafana_promql

README_SECTION = "### Prometheus, alerts and Grafana"


@pytest.mark.integration
def test_promtool_accepts_the_scrape_config_and_its_rules():
    config = promtool("check", "config", CONFIG)
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", ALERTS)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout


@pytest.mark.integration
def test_the_alert_rules_pass_their_unit_tests():
    result = promtool("test", "rules", ALERTS_TEST)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@pytest.mark.unit
def test_every_alert_is_tested_firing_and_quiet_and_explained_in_the_readme():
    names = [rule["alert"] for rule in alert_rules()]
    firing = {case["alertname"] for case in alert_tests() if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in alert_tests() if not case.get("exp_alerts")}
    assert len(names) == len(set(names)) and set(names) == firing == quiet
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(README_SECTION) :].split("\n## ", 1)[0]
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"`{rule['alert']}`" in section, f"README says nothing of {rule['alert']}"


@pytest.mark.integration
def test_every_dashboard_query_is_promql_that_promtool_parses(tmp_path):
    # promtool has no parse command, but it parses every recording rule it checks
    queries = [(where, grafana_promql(query)) for where, query in dashboard_queries(dashboard())]
    rules = [
        {"record": f"hotpool_dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(queries)
        if expr
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(rules) >= 30 and f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.unit
def test_the_dashboard_is_an_importable_grafana_dashboard():
    board = dashboard()
    assert board["id"] is None and board["uid"] and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # the data source is chosen at import, not wired to one instance's uid
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    assert variables["namespace"]["datasource"] == variables["function"]["datasource"] == chosen
    every = panels(board)
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in every:
        assert panel["title"] and panel["description"] and panel["datasource"] == chosen
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == chosen and target["expr"].strip()
            assert "$__rate_interval" in target["expr"] or "rate(" not in target["expr"]


@pytest.mark.unit
def test_the_dashboard_panels_fit_the_grid_without_overlapping():
    boxes = [(panel["title"], panel["gridPos"]) for panel in dashboard()["panels"]]
    for title, pos in boxes:
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, title

    def cells(pos: dict[str, int]) -> set[tuple[int, int]]:
        return {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }

    for (a, pos_a), (b, pos_b) in combinations(boxes, 2):
        assert not cells(pos_a) & cells(pos_b), f"{a!r} overlaps {b!r}"


@pytest.mark.unit
def test_the_scrape_config_names_the_jobs_the_rules_and_the_dashboard_use():
    config = CONFIG.read_text()
    jobs = set(re.findall(r"job_name: (\S+)", config))
    assert jobs == {"hotpool-main", "hotpool-manager"}
    assert "127.0.0.1:9464" in config and "127.0.0.1:9465" in config
    used = " ".join(rule["expr"] for rule in alert_rules())
    used += " ".join(query for _, query in dashboard_queries(dashboard()))
    assert set(re.findall(r"hotpool-(?:main|manager)", used)) == jobs

"""The queries in deploy/: the alert rules' expressions and the Grafana dashboard's, each with
where it is, and promtool on the machine (or a skip that fails in CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.services import missing_service

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hotpool.json"

# Series Prometheus writes itself for every scrape target, documented in "Jobs and
# instances" (https://prometheus.io/docs/concepts/jobs_instances/): the only names a query
# may read that no hotpool registry holds
SCRAPE_SERIES = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped",
     "scrape_samples_post_metric_relabeling", "scrape_series_added"}
)  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml, in file order."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_tests() -> list[dict[str, Any]]:
    """Every alert test case of alerts_test.yml."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too, rows left out."""
    found = []
    for panel in board["panels"]:
        found.extend(panel.get("panels", []))
        if panel["type"] != "row":
            found.append(panel)
    return found


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) of each panel target and each query variable of the dashboard."""
    found = [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            found.append((f"variable ${variable['name']}", query))
    return found


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool (Debian's prometheus package) run on ``args``."""
    if shutil.which("promtool") is None:
        missing_service("promtool is not installed (apt-get install prometheus)")
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=60)

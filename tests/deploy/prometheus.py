"""A real Prometheus server for a test: Debian's ``prometheus`` binary with a configuration and
a TSDB in a temporary directory, on a free port, and a small client of its HTTP API."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.deploy_files import ALERTS, CONFIG
from tests.helpers import free_port
from tests.services import missing_service

# the test's own scrape and rule interval: a sample a second, so a count shows within seconds
SCRAPE_INTERVAL = "1s"


def shipped_config(main_target: str, manager_target: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml as shipped (its jobs, its rules), pointed at these
    targets and scraping every second."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(
        scrape_interval=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL, scrape_timeout="1s"
    )
    config["rule_files"] = [str(ALERTS)]
    targets = {"hotpool-main": main_target, "hotpool-manager": manager_target}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class PrometheusApi:
    """The HTTP API (``/api/v1``) of one Prometheus server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful answer; AssertionError naming the error otherwise."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as exc:
            answer = json.load(exc)
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, promql: str) -> float | None:
        """The value of a query answering one sample; None when it answers none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets(self) -> list[dict[str, Any]]:
        return self.get("/api/v1/targets", state="active")["activeTargets"]


@contextlib.contextmanager
def prometheus_server(workdir: Path, config: dict[str, Any]) -> Iterator[PrometheusApi]:
    """A ``prometheus`` process with ``config`` (JSON is YAML), its TSDB under ``workdir``;
    yields its API once it is ready. Skips (fails in CI) when prometheus is not installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing_service("prometheus is not installed (apt-get install prometheus)")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log_path)
        yield PrometheusApi(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    """Until the server answers ``/-/ready`` (its TSDB open, its configuration loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/-/ready", timeout=2):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"prometheus was not ready in {timeout_s} s: {log_path.read_text()[-3000:]}"
    )

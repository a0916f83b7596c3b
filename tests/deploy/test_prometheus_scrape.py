"""The proof the issue asks for: a real Prometheus server (Debian's package) scrapes a real Main
and a real Manager (``hotpool dev`` in a child process, metrics on their own ports), and after
a known number of invocations a PromQL query through its HTTP API returns that number."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest

from hotpool.benchmarks.devserver import DevServer, bench_zip, dev_server
from tests.deploy.deploy_files import alert_rules
from tests.deploy.prometheus import PrometheusApi, prometheus_server, shipped_config
from tests.helpers import free_port

pytestmark = pytest.mark.integration

INVOCATIONS = 37
FUNCTION = "counted"
OF_IT = f'function="{FUNCTION}"'


def until(read: Callable[[], object], expected: object, timeout_s: float = 60) -> object:
    """Poll ``read`` until it returns ``expected`` (scrapes and rule evaluations run every
    second); returns the last reading, for the assertion to show."""
    deadline = time.monotonic() + timeout_s
    seen = read()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = read()
    return seen


@contextlib.contextmanager
def hotpool_with_metrics(attempts: int = 3) -> Iterator[tuple[DevServer, int, int]]:
    """``hotpool dev`` with Main's and the Manager's /metrics on free ports. A port picked
    before the child binds it can be taken in between (an outgoing connection's ephemeral
    port): the child then exits naming it, and the ports are picked again."""
    for attempt in range(attempts):
        ports = free_port(), free_port()
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(
                dev_server(metrics_port=ports[0], manager_metrics_port=ports[1], prewarm_count=0)
            )
        except RuntimeError as exc:
            if "already in use" in str(exc) and attempt < attempts - 1:
                continue
            raise
        with stack:
            yield server, *ports
        return


def health(prometheus: PrometheusApi) -> dict[str, str]:
    """Each job's target's health: "unknown" until its first scrape, then "up" or "down"."""
    return {target["labels"]["job"]: target["health"] for target in prometheus.targets()}


def test_a_real_prometheus_counts_the_invocations_of_a_real_main_and_manager(tmp_path):
    with hotpool_with_metrics() as (hotpool, main_port, manager_port):
        config = shipped_config(f"127.0.0.1:{main_port}", f"127.0.0.1:{manager_port}")
        with prometheus_server(tmp_path / "prometheus", config) as prometheus:
            hotpool.deploy(FUNCTION, bench_zip())
            for _ in range(INVOCATIONS):
                hotpool.invoke(FUNCTION)

            counted = f"sum(hotpool_invocations_total{{{OF_IT}}})"
            assert until(lambda: prometheus.value(counted), INVOCATIONS) == INVOCATIONS
            # by label: every call succeeded, synchronously; cold as often as the records say
            # (Main answers before it gives the container back, so the next call may find
            # the pool empty and start another)
            by_labels = prometheus.query(
                f"sum by (status, start, trigger) (hotpool_invocations_total{{{OF_IT}}})"
            )
            counts = {
                (s["metric"]["status"], s["metric"]["start"], s["metric"]["trigger"]): s["value"][1]
                for s in by_labels
            }
            records = hotpool.records(FUNCTION, INVOCATIONS)
            cold = sum(1 for record in records if record["cold_start"])
            assert len(records) == INVOCATIONS and cold >= 1
            assert counts == {
                ("success", "cold", "sync"): str(cold),
                ("success", "warm", "sync"): str(INVOCATIONS - cold),
            }
            # both targets are up, and the Manager's own figures arrive: as many containers
            # started as Main counted cold starts
            up = {"hotpool-main": "up", "hotpool-manager": "up"}
            assert until(lambda: health(prometheus), up) == up
            started = 'sum(hotpool_manager_container_starts_total{job="hotpool-manager"})'
            assert until(lambda: prometheus.value(started), float(cold)) == cold
            cold_starts = f'sum(hotpool_cold_starts_total{{{OF_IT}, job="hotpool-main"}})'
            assert prometheus.value(cold_starts) == cold
            assert prometheus.value('hotpool_manager_backend_up{job="hotpool-manager"}') == 1.0
            assert prometheus.value('hotpool_managers_alive{job="hotpool-main"}') == 1.0
            # the server runs the shipped rules against these targets
            groups = prometheus.get("/api/v1/rules")["groups"]
            loaded = {rule["name"] for group in groups for rule in group["rules"]}
            assert loaded == {rule["alert"] for rule in alert_rules()}

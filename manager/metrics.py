"""A Manager's Prometheus metrics: its containers by state, its capacity, its heartbeat and
backend, and the containers it started with where their time went.

The figures come from the Manager's own table at scrape time (nothing to read from Redis:
Main exports the cluster-wide view). Names are the ones ``deploy/`` queries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from hotpool.manager.backend import ContainerState
from hotpool.manager.service import ManagerService
from hotpool.shared.metrics import PHASE_BUCKETS_S, Exporter, StateCollector, known
from hotpool.shared.runtimes import RUNTIMES

# the timings of ManagerService.create()'s answer, by the phase label they become
PHASES = {
    "fetch_ms": "code_fetch",
    "start_ms": "container_start",
    "init_ms": "init",
    "total_ms": "total",
}


class ManagerMetrics:
    """One Manager's registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.starts = Counter(
            "hotpool_manager_container_starts",
            "Containers this Manager started and specialised for a cold start",
            ["runtime", "prewarmed"],
            registry=self.registry,
        )
        phases = Histogram(
            "hotpool_manager_container_start_seconds",
            "Where this Manager's cold starts spent their time",
            ["phase"],
            registry=self.registry,
            buckets=PHASE_BUCKETS_S,
        )
        self._phases = {key: phases.labels(label) for key, label in PHASES.items()}
        self._service: ManagerService | None = None
        self.registry.register(StateCollector(self._families))
        self.exporter = Exporter(self.registry, self._refresh)

    def watch(self, service: ManagerService) -> None:
        self._service = service

    def started(self, runtime: str, answer: dict[str, Any]) -> None:
        """Count a cold start from ``ManagerService.create``'s answer."""
        prewarmed = "true" if answer.get("prewarmed") else "false"
        self.starts.labels(known(runtime, frozenset(RUNTIMES)), prewarmed).inc()
        for key, histogram in self._phases.items():
            ms = answer.get(key)
            if isinstance(ms, (int, float)):
                histogram.observe(ms / 1000)

    async def _refresh(self) -> None:
        """Nothing to read ahead: the table and the last heartbeat are in memory."""

    def _families(self) -> Iterator[Metric]:
        service = self._service
        if service is None:
            return
        by_state = GaugeMetricFamily(
            "hotpool_manager_containers_by_state",
            "This Manager's containers by state",
            labels=["state"],
        )
        counts = dict.fromkeys((s.value for s in ContainerState), 0)
        for record in service.containers:
            counts[record.state.value] += 1
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state
        capacity = GaugeMetricFamily(
            "hotpool_manager_capacity",
            "What this Manager may give its containers",
            labels=["resource"],
        )
        settings = service.settings
        capacity.add_metric(["containers"], settings.capacity_containers)
        capacity.add_metric(["memory_mb"], settings.effective_capacity_memory_mb)
        yield capacity
        beat = service.heartbeat_ok_at
        yield GaugeMetricFamily(
            "hotpool_manager_heartbeat_age_seconds",
            "Seconds since this Manager's last successful heartbeat (-1: none yet)",
            value=max(0.0, time.time() - beat) if beat else -1.0,
        )
        yield GaugeMetricFamily(
            "hotpool_manager_backend_up",
            "1 when the container backend answered the last heartbeat's check",
            value=int(service.healthy),
        )

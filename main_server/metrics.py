"""Main's Prometheus metrics: what each invocation did, counted from its execution record on
the invoke path, and the state of the pool, the Managers, the queues and the scheduler, read
at scrape time.

On the invoke path an invocation costs one dict lookup and four updates of labelled children
cached by their label tuple (``hotpool bench`` measures it: ``metrics_us_per_invocation``).
Every function, namespace and status label goes through the ``LabelFolder``, so no tenant can
grow the series without bound. The names are the ones ``deploy/`` (dashboard, alert rules)
queries: change one only together with those.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from hotpool.shared.async_queue import AsyncQueue, Depth
from hotpool.shared.execlog import RecordWriter
from hotpool.shared.metadata import MetadataStore
from hotpool.shared.metrics import (
    DURATION_BUCKETS_S,
    OVERHEAD_BUCKETS_S,
    PHASE_BUCKETS_S,
    Exporter,
    LabelFolder,
    StateCollector,
    known,
    probe,
)
from hotpool.shared.models import split_qualified
from hotpool.shared.pool import Pool, PoolCounts
from hotpool.shared.registry import ManagerInfo, ManagerRegistry

log = logging.getLogger(__name__)

STATUSES = frozenset({"success", "error", "timeout", "failed"})
TRIGGERS = frozenset({"sync", "async", "web", "websocket", "schedule", "destination"})
# ColdStart.breakdown()'s keys, by the phase label they become
PHASES = {
    "placement_ms": "placement",
    "code_fetch_ms": "code_fetch",
    "container_start_ms": "container_start",
    "init_ms": "init",
    "manager_total_ms": "manager_total",
}
# a handler time a container claims beyond this (a day) is not believed
max_handler_ms = 86_400_000
# the labelled children of one (function, status, cold, trigger) are cached; a process that
# has seen this many distinct tuples starts the cache afresh (the children stay registered)
max_cached_children = 10_000


@dataclass
class MainSources:
    """What the scrape-time collector reads; ``scheduler`` returns the app's Scheduler, if
    it has one (its ``stats``: ``main_server.scheduler.SchedulerStats``)."""

    redis: Redis
    metadata: MetadataStore
    pool: Pool
    registry: ManagerRegistry
    queue: AsyncQueue
    records: RecordWriter
    websockets: Callable[[], int]
    scheduler: Callable[[], Any] = lambda: None


@dataclass
class MainState:
    """One scrape's reading of Redis, the metadata store and the app."""

    redis_up: bool = False
    redis_rtt_s: float = 0.0
    metadata_up: bool = False
    counts: PoolCounts | None = None
    managers: list[ManagerInfo] = field(default_factory=list)
    depths: dict[str, Depth] = field(default_factory=dict)
    read_at: float = 0.0


class MainMetrics:
    """Main's registry: the invoke path's counters and histograms, and the state collector."""

    def __init__(self, max_functions: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.folder = LabelFolder(max_functions)
        r = self.registry
        self.invocations = Counter(
            "hotpool_invocations",
            "Invocations by outcome; status throttled: refused at admission (no record), "
            "start none",
            ["namespace", "function", "status", "start", "trigger"],
            registry=r,
        )
        self.duration = Histogram(
            "hotpool_invocation_duration_seconds",
            "Main's time for an invocation, from admission to the record",
            ["namespace", "function"],
            registry=r,
            buckets=DURATION_BUCKETS_S,
        )
        self.handler = Histogram(
            "hotpool_handler_duration_seconds",
            "The handler's own time, as its container measured it",
            ["namespace", "function"],
            registry=r,
            buckets=DURATION_BUCKETS_S,
        )
        self.overhead = Histogram(
            "hotpool_invocation_overhead_seconds",
            "Main's time around the handler (total minus handler) of warm invocations",
            ["trigger"],
            registry=r,
            buckets=OVERHEAD_BUCKETS_S,
        )
        self.cold_starts = Counter(
            "hotpool_cold_starts",
            "Invocations that started a container",
            ["namespace", "function", "prewarmed"],
            registry=r,
        )
        self.phases = Histogram(
            "hotpool_cold_start_phase_seconds",
            "Where cold starts' time went",
            ["phase"],
            registry=r,
            buckets=PHASE_BUCKETS_S,
        )
        self._phases = {key: self.phases.labels(label) for key, label in PHASES.items()}
        self._children: dict[tuple[str, str, bool, str], tuple[Any, ...]] = {}
        self._sources: MainSources | None = None
        self.state = MainState()
        self.registry.register(StateCollector(self._state_families))
        self.exporter = Exporter(self.registry, self.refresh)

    def watch(self, sources: MainSources) -> None:
        """Read these at each scrape (set once the app's clients exist)."""
        self._sources = sources

    # -- the invoke path ----------------------------------------------------------------------

    def observe(self, record: dict[str, Any]) -> None:
        """Count one invocation from its execution record (never raising into the call)."""
        try:
            self._observe(record)
        except Exception:
            log.exception("counting invocation %s failed", record.get("request_id"))

    def _observe(self, record: dict[str, Any]) -> None:
        cold = bool(record.get("cold_start"))
        key = (record["function"], record.get("status", "failed"), cold, record["trigger"])
        children = self._children.get(key)
        if children is None:
            children = self._labelled(*key)
        count, duration, handler, overhead = children
        count.inc()
        total_s = record["duration_ms"] / 1000
        duration.observe(total_s)
        handler_ms = record.get("handler_ms")
        # the container reports its handler's time, and a function can make it say anything:
        # a NaN or an infinity would spoil the histogram's sum for good
        if isinstance(handler_ms, (int, float)) and 0 <= handler_ms < max_handler_ms:
            handler.observe(handler_ms / 1000)
            if not cold:  # a cold start's time has its own phases
                overhead.observe(max(0.0, total_s - handler_ms / 1000))
        if cold:
            self._cold_start(record)

    def refused(self, record: dict[str, Any]) -> None:
        """Count an invocation refused at admission (429): it reached no container."""
        namespace, function, _, trigger = self._labels(record["function"], "", record["trigger"])
        self.invocations.labels(namespace, function, "throttled", "none", trigger).inc()

    def _labels(self, qualified: str, status: str, trigger: str) -> tuple[str, str, str, str]:
        """Label values within bounds: folded names, known statuses and triggers."""
        namespace, function = self.folder.fold(*split_qualified(qualified))
        return namespace, function, known(status, STATUSES, "error"), known(trigger, TRIGGERS)

    def _labelled(self, qualified: str, status: str, cold: bool, trigger: str) -> tuple:
        namespace, function, status_label, trigger_label = self._labels(qualified, status, trigger)
        start = "cold" if cold else "warm"
        children = (
            self.invocations.labels(namespace, function, status_label, start, trigger_label),
            self.duration.labels(namespace, function),
            self.handler.labels(namespace, function),
            self.overhead.labels(trigger_label),
        )
        if len(self._children) >= max_cached_children:
            self._children.clear()
        self._children[(qualified, status, cold, trigger)] = children
        return children

    def _cold_start(self, record: dict[str, Any]) -> None:
        breakdown = record.get("cold_start_breakdown") or {}
        namespace, function = self.folder.fold(*split_qualified(record["function"]))
        prewarmed = "true" if breakdown.get("prewarmed") else "false"
        self.cold_starts.labels(namespace, function, prewarmed).inc()
        for key, histogram in self._phases.items():
            ms = breakdown.get(key)
            if isinstance(ms, (int, float)) and 0 <= ms < max_handler_ms:
                histogram.observe(ms / 1000)

    # -- scrape time --------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read Redis and the metadata store, each bounded by ``state_read_timeout_s``."""
        sources = self._sources
        if sources is None:
            return
        state = MainState(read_at=time.time())
        begun = time.perf_counter()
        redis_down, metadata_down = await asyncio.gather(
            probe(sources.redis.ping()), probe(sources.metadata.ping())
        )
        state.redis_up, state.metadata_up = redis_down is None, metadata_down is None
        if state.redis_up:
            state.redis_rtt_s = time.perf_counter() - begun
            # a Redis that answers a ping but not the reads is down for what they show
            state.redis_up = await probe(self._read_redis(sources, state)) is None
        self.state = state

    async def _read_redis(self, sources: MainSources, state: MainState) -> None:
        state.managers = await sources.registry.snapshot(fresh=True)
        state.depths = await sources.queue.depths()
        state.counts = await sources.pool.counts()

    def _state_families(self) -> Iterator[Metric]:
        state, sources = self.state, self._sources
        yield GaugeMetricFamily(
            "hotpool_redis_up", "1 when Redis answered the scrape's ping", value=int(state.redis_up)
        )
        yield GaugeMetricFamily(
            "hotpool_redis_rtt_seconds", "The scrape's Redis ping time", value=state.redis_rtt_s
        )
        yield GaugeMetricFamily(
            "hotpool_metadata_up",
            "1 when the metadata store answered",
            value=int(state.metadata_up),
        )
        if sources is not None:
            yield from self._local_families(sources)
        if state.redis_up:
            yield from self._container_families(state)
            yield from self._manager_families(state)
            yield from self._queue_families(state)
        yield from self._scheduler_families(sources.scheduler() if sources else None)

    def _local_families(self, sources: MainSources) -> Iterator[Metric]:
        records = sources.records
        yield GaugeMetricFamily(
            "hotpool_websocket_connections",
            "WebSocket connections open on this replica",
            value=sources.websockets(),
        )
        yield GaugeMetricFamily(
            "hotpool_record_writer_queue",
            "Execution records in memory waiting for the log store",
            value=records.queued,
        )
        yield GaugeMetricFamily(
            "hotpool_record_writer_spilled",
            "Records this replica spilled to disk, not yet replayed",
            value=max(0, records.spilled - records.replayed),
        )

    def _container_families(self, state: MainState) -> Iterator[Metric]:
        containers = GaugeMetricFamily(
            "hotpool_containers",
            "Containers by function and state, cluster-wide",
            labels=["namespace", "function", "state"],
        )
        counts = state.counts
        if counts is not None:
            tally: Tally[tuple[str, str, str]] = Tally()
            for kind, by_label in (
                ("idle", counts.idle),
                ("busy", counts.leased),
                ("starting", counts.starting),
            ):
                for label, n in by_label.items():
                    qualified = label.rsplit(":", 1)[0]
                    tally[(*self.folder.fold(*split_qualified(qualified)), kind)] += n
            for labels, n in sorted(tally.items()):
                containers.add_metric(labels, n)
        yield containers

    def _manager_families(self, state: MainState) -> Iterator[Metric]:
        alive = [m for m in state.managers if m.alive]
        yield GaugeMetricFamily(
            "hotpool_managers_alive", "Managers whose heartbeat is current", value=len(alive)
        )
        running = GaugeMetricFamily(
            "hotpool_manager_containers", "Containers on each Manager", labels=["manager"]
        )
        capacity = GaugeMetricFamily(
            "hotpool_manager_capacity_containers",
            "Containers each Manager may run",
            labels=["manager"],
        )
        age = GaugeMetricFamily(
            "hotpool_manager_heartbeat_age_seconds",
            "Seconds since each Manager's last heartbeat",
            labels=["manager"],
        )
        for m in state.managers:  # a dead one's age shows how long ago it went
            running.add_metric([m.id], m.running)
            capacity.add_metric([m.id], m.capacity)
            age.add_metric([m.id], max(0.0, state.read_at - m.heartbeat_at))
        yield from (running, capacity, age)

    def _queue_families(self, state: MainState) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "hotpool_async_queue_depth", "Asynchronous events not yet ended", labels=["namespace"]
        )
        oldest = GaugeMetricFamily(
            "hotpool_async_oldest_age_seconds",
            "Age of the oldest event not yet ended",
            labels=["namespace"],
        )
        queued: Tally[str] = Tally()
        ages: dict[str, float] = {}
        for namespace, d in state.depths.items():
            label = self.folder.namespace(namespace)
            queued[label] += d.queued
            ages[label] = max(ages.get(label, 0.0), d.oldest_age_s)
        for label in sorted(queued):
            depth.add_metric([label], queued[label])
            oldest.add_metric([label], ages[label])
        yield from (depth, oldest)

    def _scheduler_families(self, scheduler: Any) -> Iterator[Metric]:
        stats = getattr(scheduler, "stats", None)
        if stats is None:  # no scheduler in this app
            return
        yield GaugeMetricFamily(
            "hotpool_scheduler_leader",
            "1 while this replica leads",
            value=int(bool(getattr(stats, "leading", False))),
        )
        yield GaugeMetricFamily(
            "hotpool_scheduler_fencing_token",
            "The fencing token of this replica's leadership",
            value=getattr(stats, "fencing_token", 0),
        )
        yield CounterMetricFamily(
            "hotpool_scheduler_leader_changes",
            "Leaderships this replica took",
            value=getattr(stats, "leader_changes", 0),
        )
        for name, what in (("fires", "Schedule ticks fired"), ("missed", "Schedule ticks missed")):
            tally = getattr(stats, name, None) or {}
            family = CounterMetricFamily(
                f"hotpool_schedule_{name}",
                f"{what} by this replica",
                labels=["namespace", "function"],
            )
            folded: Tally[tuple[str, str]] = Tally()
            for (namespace, function), n in tally.items():
                folded[self.folder.fold(namespace, function)] += n
            for labels, n in sorted(folded.items()):
                family.add_metric(labels, n)
            yield family

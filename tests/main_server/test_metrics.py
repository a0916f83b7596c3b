"""Main's Prometheus metrics (main_server.metrics): counted from execution records on the
invoke path, read from Redis and the app at scrape time, and /readyz.

Values are read back through prometheus_client's own parser of the exposition text, as
Prometheus reads them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import fakeredis
import pytest
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from hotpool.main_server.invoke import Invoker
from hotpool.main_server.metrics import MainMetrics, MainSources
from hotpool.main_server.scheduler import SchedulerStats
from hotpool.main_server.state import METRICS
from hotpool.shared import metrics as shared_metrics
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.errors import TooManyRequests
from hotpool.shared.metrics import metrics_app
from hotpool.shared.pool import Admission, Pool
from hotpool.shared.redis_conn import make_redis
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.schema import migrate
from hotpool.shared.settings import Settings
from tests.deploy.exported import exported_names
from tests.fakes import ECHO_V1, FakeManagers, FakeRecords, FakeTransport, FakeVersions, success
from tests.helpers import free_port, handler_zip
from tests.services import RedisProcess, TcpProxy
from tests.stack import wait_for


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def record(function: str = "shop.pay", **fields: Any) -> dict[str, Any]:
    """An execution record as the invoke path writes it (the fields metrics read)."""
    return {
        "request_id": "r1",
        "function": function,
        "version": 1,
        "trigger": "sync",
        "status": "success",
        "cold_start": False,
        "duration_ms": 12.0,
        "handler_ms": 10.0,
        **fields,
    }


async def scrape(metrics: MainMetrics) -> str:
    return (await metrics.exporter.scrape()).decode()


# -- the invoke path's figures ---------------------------------------------------------------


@pytest.mark.unit
async def test_records_count_by_outcome_with_their_times():
    metrics = MainMetrics(200)
    metrics.observe(record())
    metrics.observe(record(trigger="web"))
    metrics.observe(record(status="error", duration_ms=30.0, handler_ms=29.0))
    metrics.observe(record(status="timeout", handler_ms=None, duration_ms=5000.0))
    text = await scrape(metrics)

    total = "hotpool_invocations_total"
    ours = {"namespace": "shop", "function": "pay"}
    assert value(text, total, **ours) == 4
    assert value(text, total, status="success", trigger="sync", start="warm", **ours) == 1
    assert value(text, total, status="success", trigger="web", **ours) == 1
    assert value(text, total, status="error", **ours) == 1
    assert value(text, total, status="timeout", **ours) == 1
    assert value(text, "hotpool_invocation_duration_seconds_count", **ours) == 4
    assert value(text, "hotpool_invocation_duration_seconds_sum", **ours) == pytest.approx(5.054)
    # a timeout has no handler time, so neither handler time nor overhead
    assert value(text, "hotpool_handler_duration_seconds_count", **ours) == 3
    assert value(text, "hotpool_invocation_overhead_seconds_count") == 3
    overhead = value(text, "hotpool_invocation_overhead_seconds_sum", trigger="sync")
    assert overhead == pytest.approx(0.002 + 0.001)
    assert (
        value(text, "hotpool_invocation_overhead_seconds_bucket", trigger="web", le="0.0025") == 1
    )


@pytest.mark.unit
async def test_a_cold_start_counts_with_its_phases_and_not_as_overhead():
    metrics = MainMetrics(200)
    breakdown = {"placement_ms": 2.0, "code_fetch_ms": 3.0, "container_start_ms": 40.0,
                 "init_ms": 15.0, "manager_total_ms": 60.0, "prewarmed": True}  # fmt: skip
    metrics.observe(record("plain", cold_start=True, cold_start_breakdown=breakdown,
                           duration_ms=80.0, handler_ms=5.0))  # fmt: skip
    text = await scrape(metrics)

    assert value(text, "hotpool_invocations_total", function="plain", start="cold") == 1
    assert value(text, "hotpool_cold_starts_total", namespace="default", function="plain",
                 prewarmed="true") == 1  # fmt: skip
    phases = {"placement": 0.002, "code_fetch": 0.003, "container_start": 0.04, "init": 0.015,
              "manager_total": 0.06}  # fmt: skip
    for phase, seconds in phases.items():
        assert value(text, "hotpool_cold_start_phase_seconds_sum", phase=phase) == pytest.approx(
            seconds
        )
    assert value(text, "hotpool_invocation_overhead_seconds_count") == 0


@pytest.mark.unit
async def test_labels_from_outside_cannot_mint_series():
    metrics = MainMetrics(200)
    metrics.observe(record(status="<script>" + "x" * 5000))  # a container's reply says so
    metrics.observe(record(trigger="carrier-pigeon"))
    text = await scrape(metrics)
    assert label_values(text, "hotpool_invocations_total", "status") == {"error", "success"}
    assert label_values(text, "hotpool_invocations_total", "trigger") == {"sync", "other"}


class _Metadata:
    def __init__(self, silent: bool = False) -> None:
        self.silent = silent

    async def ping(self) -> None:
        if self.silent:
            await asyncio.Event().wait()


def _sources(redis: Any, metadata: Any, scheduler: SchedulerStats | None = None) -> MainSources:
    class _Records:
        queued, spilled, replayed = 3, 10, 4

    return MainSources(
        redis=redis,
        metadata=metadata,
        pool=Pool(redis),
        registry=ManagerRegistry(redis),
        queue=AsyncQueue(redis),
        records=_Records(),  # type: ignore[arg-type]
        websockets=lambda: 5,
        scheduler=lambda: scheduler,
    )


@pytest.mark.unit
async def test_the_scheduler_part_is_there_when_the_app_has_a_scheduler():
    redis = fakeredis.FakeAsyncRedis()
    stats = SchedulerStats(
        leading=True,
        fencing_token=7,
        leader_changes=2,
        fires=Counter({("shop", "tick"): 5}),
        missed=Counter({("shop", "tick"): 1}),
    )
    with_scheduler, without = MainMetrics(200), MainMetrics(200)
    with_scheduler.watch(_sources(redis, _Metadata(), stats))
    without.watch(_sources(redis, _Metadata()))
    text = await scrape(with_scheduler)

    assert value(text, "hotpool_scheduler_leader") == 1
    assert value(text, "hotpool_scheduler_fencing_token") == 7
    assert value(text, "hotpool_scheduler_leader_changes_total") == 2
    assert value(text, "hotpool_schedule_fires_total", namespace="shop", function="tick") == 5
    assert value(text, "hotpool_schedule_missed_total", namespace="shop", function="tick") == 1
    assert "hotpool_scheduler_leader" not in await scrape(without)
    # the app's own figures come along in both
    assert value(text, "hotpool_websocket_connections") == 5
    assert value(text, "hotpool_record_writer_queue") == 3
    assert value(text, "hotpool_record_writer_spilled") == 6
    assert value(text, "hotpool_redis_up") == 1 and value(text, "hotpool_metadata_up") == 1
    await redis.aclose()


@pytest.mark.unit
async def test_a_scrape_with_redis_and_the_database_silent_answers_them_down(monkeypatch):
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads, never answers

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(shared_metrics, "state_read_timeout_s", 0.2)
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0")
    redis = make_redis(settings)
    metrics = MainMetrics(200)
    metrics.watch(_sources(redis, _Metadata(silent=True)))
    try:
        text = await scrape(metrics)
    finally:
        await redis.aclose()
        server.close()
    assert value(text, "hotpool_redis_up") == 0
    assert value(text, "hotpool_metadata_up") == 0
    assert "hotpool_managers_alive" not in text  # nothing read, nothing made up


@pytest.mark.unit
async def test_a_call_refused_at_admission_is_counted_throttled_without_a_record():
    redis = fakeredis.FakeAsyncRedis()
    pool, records, metrics = Pool(redis), FakeRecords(), MainMetrics(200)
    invoker = Invoker(
        Settings(queue_timeout_s=0.3),
        pool=pool,
        managers=FakeManagers(),
        containers=FakeTransport(success(1)),
        records=records,
        versions=FakeVersions(ECHO_V1),
        metrics=metrics,
    )
    one_slot = Admission("key-1", 0.0, 0, "acme", 1, 30.0)
    async with invoker.invocation(ECHO_V1, b"{}", "req-1", one_slot) as done:
        assert done.status == 200
        with pytest.raises(TooManyRequests):
            async with invoker.invocation(ECHO_V1, b"{}", "req-2", one_slot, trigger="web"):
                pass
    text = await scrape(metrics)
    assert len(records.records) == 1
    echo = {"namespace": "default", "function": "echo"}
    assert value(text, "hotpool_invocations_total", status="success", start="cold", **echo) == 1
    throttled = {"status": "throttled", "start": "none", "trigger": "web"}
    assert value(text, "hotpool_invocations_total", **throttled, **echo) == 1
    await redis.aclose()


# the names DESIGN16.md (part C) gives deploy/'s dashboard and alert rules
DESIGNED = {
    "hotpool_invocations_total", "hotpool_invocation_duration_seconds_bucket",
    "hotpool_handler_duration_seconds_bucket", "hotpool_invocation_overhead_seconds_bucket",
    "hotpool_cold_starts_total", "hotpool_cold_start_phase_seconds_bucket", "hotpool_containers",
    "hotpool_managers_alive", "hotpool_manager_containers",
    "hotpool_manager_capacity_containers", "hotpool_manager_heartbeat_age_seconds",
    "hotpool_async_queue_depth", "hotpool_async_oldest_age_seconds",
    "hotpool_websocket_connections", "hotpool_record_writer_queue",
    "hotpool_record_writer_spilled", "hotpool_redis_up", "hotpool_redis_rtt_seconds",
    "hotpool_metadata_up", "hotpool_scheduler_leader", "hotpool_scheduler_fencing_token",
    "hotpool_schedule_fires_total", "hotpool_schedule_missed_total",
    "hotpool_scheduler_leader_changes_total", "hotpool_manager_containers_by_state",
    "hotpool_manager_capacity", "hotpool_manager_container_starts_total",
    "hotpool_manager_container_start_seconds_bucket", "hotpool_manager_backend_up",
}  # fmt: skip


@pytest.mark.integration
async def test_every_designed_name_is_exported(hotpool_stack):
    assert DESIGNED <= await exported_names(await hotpool_stack())


# -- on the embedded stack ---------------------------------------------------------------------


async def _metrics_site(app: web.Application) -> tuple[web.AppRunner, str]:
    """Main's /metrics on a free port, as main_server.serve starts it."""
    runner = web.AppRunner(metrics_app(app[METRICS].exporter))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/metrics"


@pytest.mark.integration
async def test_the_metrics_port_counts_every_way_in(hotpool_stack):
    stack = await hotpool_stack()
    runner, url = await _metrics_site(stack.client.app)
    try:
        assert (await stack.deploy("counted", handler_zip("return 'ok'"))).status == 201
        for _ in range(5):
            assert (await stack.invoke("counted", {})).status == 200
        assert (await stack.client.get("/fn/counted/x")).status == 200
        queued = await stack.client.post(
            "/v1/functions/counted/invoke", json={}, headers={"X-Amz-Invocation-Type": "Event"}
        )
        assert queued.status == 202

        async with ClientSession() as http:

            async def scraped() -> str:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    return await resp.text()

            async def async_counted() -> bool:
                return value(await scraped(), "hotpool_invocations_total", trigger="async") == 1

            assert await wait_for(async_counted)
            text = await scraped()
    finally:
        await runner.cleanup()

    ours = {"namespace": "default", "function": "counted"}
    total = "hotpool_invocations_total"
    assert value(text, total, **ours) == 7
    assert value(text, total, trigger="sync", status="success", **ours) == 5
    assert value(text, total, trigger="web", **ours) == 1
    assert value(text, total, start="cold", **ours) == 1
    assert value(text, "hotpool_cold_starts_total", **ours) == 1
    assert value(text, "hotpool_invocation_duration_seconds_count", **ours) == 7
    assert value(text, "hotpool_redis_up") == 1 and value(text, "hotpool_metadata_up") == 1
    assert value(text, "hotpool_managers_alive") == 1
    manager = stack.settings.manager_id
    assert value(text, "hotpool_manager_capacity_containers", manager=manager) > 0
    assert value(text, "hotpool_containers", state="idle", **ours) == 1


@pytest.mark.integration
async def test_readyz_is_open_and_ready_on_a_healthy_stack(hotpool_stack):
    stack = await hotpool_stack()
    async with ClientSession() as anonymous:  # no key
        async with anonymous.get(stack.client.make_url("/readyz")) as resp:
            assert resp.status == 200
            assert await resp.json() == {"ready": True, "checks": {"redis": "ok", "metadata": "ok"}}


@pytest.mark.integration
async def test_readyz_and_the_scrape_say_redis_is_down_while_it_is(hotpool_stack, tmp_path):
    server = RedisProcess(tmp_path / "redis")
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        stack = await hotpool_stack(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        assert (await stack.client.get("/readyz")).status == 200
        await proxy.cut()

        resp = await stack.client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["ready"] is False and body["checks"]["metadata"] == "ok"
        assert body["checks"]["redis"].startswith(("unreachable", "no answer"))
        text = await scrape(stack.client.app[METRICS])
        assert value(text, "hotpool_redis_up") == 0 and value(text, "hotpool_metadata_up") == 1

        await proxy.restore()

        async def ready() -> bool:
            return (await stack.client.get("/readyz")).status == 200

        assert await wait_for(ready)
    finally:
        await proxy.cut()
        server.stop()


@pytest.mark.integration
async def test_readyz_says_the_metadata_store_is_down_while_it_is(hotpool_stack, mariadb_url):
    await migrate(mariadb_url)
    url = make_url(mariadb_url)
    proxy = TcpProxy(url.port or 3306)
    await proxy.start()
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        stack = await hotpool_stack(database_url=through_proxy)
        assert (await stack.client.get("/readyz")).status == 200
        await proxy.cut()

        resp = await stack.client.get("/readyz")
        assert resp.status == 503
        checks = (await resp.json())["checks"]
        assert checks["redis"] == "ok" and checks["metadata"] != "ok"
        assert "127.0.0.1" not in checks["metadata"]  # open route: no address leaks
        text = await scrape(stack.client.app[METRICS])
        assert value(text, "hotpool_metadata_up") == 0 and value(text, "hotpool_redis_up") == 1
        await proxy.restore()
    finally:
        await proxy.cut()

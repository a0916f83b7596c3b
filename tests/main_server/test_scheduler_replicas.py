"""Exactly once across replicas, for real: three ``hotpool main`` processes, one ``hotpool
manager`` (process backend), one Redis and one metadata database, per-second schedules, and the
leading Main SIGKILLed again and again (and started again). A ledger written by the function
shows every tick in the window fired exactly once, none missing, and no fire later than the
lease plus a little. The function and the findings are the chaos run's
(``benchmarks/chaos_function``, ``benchmarks.chaos.schedule_audit``), which checks the same under
its faults.

HOTPOOL_TEST_SCHEDULE_S sets how long the schedules run while the leaders die: 30 s by default
(some five leaders killed, each takeover checked), 120 or more for a soak. The counts and the
worst delays are printed (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time

import aiohttp
import orjson
import pytest
import redis.asyncio

from hotpool.benchmarks.chaos.checks import read_executions
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import FUNCTION_DIR, SERVICE_SETTINGS, HarnessError
from hotpool.benchmarks.chaos.schedule_audit import (
    accepted_states,
    expected_ticks,
    findings,
    leading_main,
    schedule_runs,
    tick_of,
)
from hotpool.shared import schedule_keys
from hotpool.shared.packages import zip_directory
from tests.services import missing_service

pytestmark = pytest.mark.integration

WINDOW_S = float(os.environ.get("HOTPOOL_TEST_SCHEDULE_S", "30"))
MAINS = 3
LEASE_S = 2.0
# beyond the lease: a follower's poll for it (lease / 5), the new leader's first turn, and the
# lag of a loaded two-core CI machine
SLACK_S = 2.0
SCHEDULES = ("every-second-a", "every-second-b")
SETTINGS = {
    **SERVICE_SETTINGS,
    "SCHEDULER_LEASE_S": str(LEASE_S),
    "METRICS_PORT": "0",
    "MANAGER_METRICS_PORT": "0",
}


async def kill_leaders(cluster: Cluster, shared: redis.asyncio.Redis, until: float) -> list[float]:
    """SIGKILL whichever Main leads, every few seconds, and start it again; the kill times."""
    rng = random.Random(16)
    kills = []
    while time.time() + 4 < until:
        await asyncio.sleep(rng.uniform(3.0, 7.0))
        name = leading_main(cluster, await shared.get(schedule_keys.LEADER))
        if name is None:
            continue
        cluster.kill(name)
        kills.append(time.time())
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await cluster.start_main(int(name.removeprefix("main")))
    await asyncio.sleep(max(0.0, until - time.time()))
    return kills


async def put(http: aiohttp.ClientSession, url: str, **kwargs) -> dict:
    async with http.put(url, **kwargs) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def arrivals(ledger, expected: set[tuple[str, float]], deadline_s: float) -> list[dict]:
    """The ledger's runs of Scheduled Events, once every expected tick arrived (or the deadline
    passed)."""
    deadline = time.monotonic() + deadline_s
    while True:
        runs = schedule_runs(read_executions(ledger))
        seen = {(r["schedule"], tick_of(r["time"])) for r in runs}
        if expected <= seen or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.5)


async def test_three_replicas_fire_every_tick_once_while_the_leader_is_killed(tmp_path):
    cluster = Cluster(tmp_path / "run", mains=MAINS, managers=1, settings=SETTINGS)
    ledger = tmp_path / "ledger"
    ledger.touch()
    try:
        try:
            await cluster.start_redis()
        except HarnessError as exc:
            missing_service(str(exc))
        await cluster.migrate()
        await cluster.start_manager(0)
        for i in range(MAINS):
            await cluster.start_main(i)
        shared = redis.asyncio.Redis(port=cluster.redis_port)
        async with aiohttp.ClientSession(headers=cluster.headers) as http:
            base = cluster.main_url(0)
            env = orjson.dumps({"CHAOS_LOG": str(ledger)}).decode()
            await put(
                http, f"{base}/v1/functions/ticker", data=zip_directory(FUNCTION_DIR),
                params={"env": env}, headers={"Content-Type": "application/zip"},
            )  # fmt: skip
            created = {}
            for name in SCHEDULES:
                body = {"expression": "rate(1 second)"}
                made = await put(http, f"{base}/v1/functions/ticker/schedules/{name}", json=body)
                created[name] = tick_of(made["created_at"])
        try:
            kills = await kill_leaders(cluster, shared, until=time.time() + WINDOW_S)
            window_end = math.floor(time.time()) - 1
            expected = {
                tick
                for name, at in created.items()
                for tick in expected_ticks(name, at, 1.0, window_end)
            }
            runs = await arrivals(ledger, expected, deadline_s=60)
            accepted = await accepted_states(shared, {r["request_id"] for r in runs})
        finally:
            await shared.aclose()
    finally:
        await asyncio.to_thread(cluster.teardown)
    _check(runs, expected, accepted, kills)


def _check(runs: list[dict], expected: set, accepted: dict[str, dict], kills: list[float]) -> None:
    found = findings(runs, expected, accepted)
    worst_fire = max(found.fire_late.values(), default=0.0)
    worst_arrival = max(found.arrival_late.values(), default=0.0)
    direct = {t: v for t, v in found.arrival_late.items() if t not in found.reclaimed}
    worst_direct = max(direct.values(), default=0.0)
    deliveries = sum(len(rs) for rs in found.fired.values())
    print(
        f"\nscheduler replicas: {len(expected)} ticks expected ({len(SCHEDULES)} schedules, "
        f"{WINDOW_S:g} s), {len(found.fired)} fired, {len(found.missing)} missing, "
        f"{len(found.fired_twice)} fired twice; {deliveries} deliveries "
        f"({len(found.redelivered)} ticks run again by the async path); {len(kills)} leaders "
        f"killed; worst fire delay {worst_fire:.3f} s, worst arrival delay {worst_arrival:.3f} s "
        f"({worst_direct:.3f} s without the {len(found.reclaimed)} events taken from a killed "
        f"consumer); lease {LEASE_S:g} s"
    )
    assert not found.missing, f"ticks never fired: {found.missing[:10]}"
    assert not found.fired_twice, f"ticks fired as two events: {found.fired_twice[:5]}"
    event_ids = [rs[0]["event_id"] for rs in found.fired.values()]
    assert len(event_ids) == len(set(event_ids))
    assert not found.attempt_twice, f"one attempt delivered twice: {found.attempt_twice[:5]}"
    assert len(kills) >= WINDOW_S / 10
    assert len(found.fire_late) == len(found.fired), "a fired event's state is gone from Redis"
    assert worst_fire <= LEASE_S + SLACK_S, _worst(found.fire_late)
    assert worst_direct <= LEASE_S + SLACK_S, _worst(direct)


def _worst(late: dict[tuple[str, float], float]) -> list:
    return sorted(late.items(), key=lambda item: -item[1])[:5]

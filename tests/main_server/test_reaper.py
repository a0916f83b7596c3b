"""The lease reaper: its pure decisions, and what it does to a running stack (BRIEF.md §3,
invariant 2: every live container ends up in exactly one place, whatever died)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import fakeredis
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server.app import create_app
from hotpool.main_server.reaper import Action, Health, Reaper, due_orphans, reclaim_action
from hotpool.main_server.state import REAPER
from hotpool.shared import keys
from hotpool.shared.models import CONTAINER_SECRET_HEADER, PoolEntry
from hotpool.shared.pool import Pool
from hotpool.shared.registry import ManagerRegistration, ManagerRegistry
from hotpool.shared.settings import Settings
from tests.helpers import handler_zip
from tests.stack import wait_for

# --- reclaim_action ----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("health", "manager_alive", "action"),
    [
        (Health.IDLE, True, Action.RETURN),
        (Health.BUSY, True, Action.EXTEND),
        (Health.DEAD, True, Action.REMOVE),
        (Health.IDLE, False, Action.REMOVE),
        (Health.BUSY, False, Action.REMOVE),
        (Health.DEAD, False, Action.REMOVE),
    ],
)
def test_reclaim_action_table(health, manager_alive, action):
    assert reclaim_action(health, manager_alive) is action


# --- due_orphans -------------------------------------------------------------------------------

ENTRIES = st.sampled_from([f"f|1|m|c{i}|h:{i}" for i in range(8)])
TIMES = st.integers(0, 1000).map(float)


@pytest.mark.unit
@given(
    suspects=st.dictionaries(ENTRIES, TIMES),
    unplaced=st.sets(ENTRIES),
    now=TIMES,
    grace=st.integers(1, 200).map(float),
)
def test_due_orphans_are_exactly_those_unplaced_for_the_grace(suspects, unplaced, now, grace):
    suspects = {e: min(t, now) for e, t in suspects.items()}  # seen in the past
    due, watching = due_orphans(suspects, unplaced, now, grace)

    assert due == {e for e in unplaced if e in suspects and now - suspects[e] >= grace}
    assert due | set(watching) == unplaced and not due & set(watching)
    # a suspect that got placed (or disappeared) is dropped, not remembered
    for e in set(suspects) - unplaced:
        assert e not in due and e not in watching
    # a suspect keeps the time it was first seen; a new one starts its grace now
    for e, since in watching.items():
        assert since == suspects.get(e, now)


@pytest.mark.unit
@given(
    unplaced=st.sets(ENTRIES, min_size=1),
    grace=st.integers(1, 50).map(float),
    steps=st.lists(st.integers(0, 30).map(float), min_size=1, max_size=10),
)
def test_nothing_is_due_before_its_grace(unplaced, grace, steps):
    """Watched pass after pass, an orphan is due at the first pass >= grace after first seen."""
    now = 100.0
    due, suspects = due_orphans({}, unplaced, now, grace)
    assert due == set()
    first_seen = now
    for dt in steps:
        now += dt
        due, suspects = due_orphans(suspects, unplaced, now, grace)
        if now - first_seen < grace:
            assert due == set()
        else:
            assert due == unplaced
            break


@pytest.mark.unit
@given(unplaced=st.sets(ENTRIES, min_size=1), grace=st.integers(1, 50).map(float))
def test_an_orphan_that_is_placed_again_starts_over(unplaced, grace):
    _, suspects = due_orphans({}, unplaced, 0.0, grace)
    _, suspects = due_orphans(suspects, set(), grace / 2, grace)  # placed meanwhile
    assert suspects == {}
    due, suspects = due_orphans(suspects, unplaced, grace, grace)  # lost again
    assert due == set() and set(suspects) == unplaced


# --- purge_dead_managers -----------------------------------------------------------------------


@pytest.mark.unit
async def test_the_purge_skips_a_manager_that_came_back_since_the_snapshot():
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    pool = Pool(redis)
    registry = ManagerRegistry(redis)
    reaper = Reaper(Settings(), pool=pool, registry=registry, managers=None, http=None)
    for manager_id in ("back", "dead"):
        own = ManagerRegistration(redis, manager_id, alive_ttl_s=30)
        mine = PoolEntry("fn", 1, manager_id, f"{manager_id}-c", "127.0.0.1:9000")
        await own.register(mine)
        await own.heartbeat({"url": "http://x", "capacity": 1, "running": 1, "heartbeat_at": 1.0},
                            [mine], is_known={mine.container_id}.__contains__)  # fmt: skip
        await pool.lease(mine, 30)
        await pool.release(mine)
    await redis.delete(keys.manager_alive("dead"))

    # both were dead in the reaper's snapshot; "back" restarted under its id before the purge
    await reaper.purge_dead_managers(alive=set())

    assert await registry.registered_ids() == ["back"]
    assert [PoolEntry.decode(raw).manager_id for raw in await pool.placed()] == ["back"]
    assert reaper.counters["dead_managers"] == 1 and reaper.counters["purged_entries"] == 1
    await redis.aclose()


# --- on a running stack ------------------------------------------------------------------------

FAST_REAPER = {"lease_grace_s": 0.2, "lease_reaper_interval_s": 0.1, "orphan_grace_s": 0.3}
HELLO = handler_zip("return 'hi'")
SLEEPY = handler_zip("import time\ntime.sleep((event or {}).get('s', 0))\nreturn 'slept'")


async def warm(stack, name: str, code: bytes = HELLO) -> PoolEntry:
    """Deploy ``name``, call it once, and return its one idle container."""
    assert (await stack.deploy(name, code)).status == 201
    assert (await stack.invoke(name, {})).status == 200
    (raw,) = await stack.idle_entries(name, 1)
    return PoolEntry.decode(raw)


def secret_of(entry: PoolEntry) -> dict[str, str]:
    """The header a container demands, as Main sends it."""
    return {CONTAINER_SECRET_HEADER: entry.secret}


async def health(entry: PoolEntry) -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{entry.address}/healthz", headers=secret_of(entry)) as resp,
    ):
        return orjson.loads(await resp.read())


async def nothing_leaked(stack, name: str) -> bool:
    """Invariant 2: pool entries + leases == live containers."""
    placed = await stack.pool_entries(name, 1) + await stack.leases()
    ids = [raw.split("|")[3] for raw in placed]
    return len(ids) == len(set(ids)) and set(ids) == stack.live_containers()


@pytest.mark.integration
async def test_lease_of_a_dead_main_is_reclaimed_into_the_pool(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "lost")
    # a Main leases the container and dies before releasing it
    leased = await Pool(stack.redis).acquire("lost", 1, lease_s=0.1)
    assert leased == idle and await stack.pool_entries("lost", 1) == []

    async def back_in_pool() -> bool:
        return await stack.pool_entries("lost", 1) == [idle.encode()]

    assert await wait_for(back_in_pool, timeout_s=10)
    assert await stack.leases() == []
    assert (await health(idle))["busy"] is False
    assert stack.client.app[REAPER].counters["reclaimed_return"] == 1
    # and it serves the next call warm
    resp = await stack.invoke("lost", {})
    assert resp.status == 200 and resp.headers["X-Hotpool-Cold-Start"] == "false"
    assert await nothing_leaked(stack, "lost")


@pytest.mark.integration
async def test_expired_lease_of_a_busy_container_is_extended_not_shared(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "busy", SLEEPY)
    await Pool(stack.redis).acquire("busy", 1, lease_s=0.1)
    # the dead Main's call still runs in the container, well past the lease
    call = asyncio.create_task(_call_container(idle, {"s": 1.0}))
    seen_in_pool_while_busy = False

    async def watch() -> bool:
        nonlocal seen_in_pool_while_busy
        if not call.done() and await stack.pool_entries("busy", 1):
            seen_in_pool_while_busy = True
        return call.done()

    assert await wait_for(watch, timeout_s=10)
    assert (await call)["status"] == "success"
    # invariant 1: it was never handed out while it still ran the lost call
    assert not seen_in_pool_while_busy
    assert stack.client.app[REAPER].counters["reclaimed_extend"] >= 1

    async def returned() -> bool:
        return await stack.pool_entries("busy", 1) == [idle.encode()]

    assert await wait_for(returned, timeout_s=10)
    assert await stack.leases() == []


async def _call_container(entry: PoolEntry, event: object) -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://{entry.address}/invoke", data=orjson.dumps(event), headers=secret_of(entry)
        ) as resp,
    ):
        return orjson.loads(await resp.read())


@pytest.mark.integration
async def test_orphan_is_returned_after_its_grace(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "orphan")
    # a waiter took it off the list (BLPOP) and died before leasing it
    lost_at = time.monotonic()
    assert await stack.redis.lpop(keys.pool("orphan", 1)) == idle.encode().encode()

    async def back_in_pool() -> bool:
        return await stack.pool_entries("orphan", 1) == [idle.encode()]

    assert await wait_for(back_in_pool, timeout_s=10)
    assert time.monotonic() - lost_at >= FAST_REAPER["orphan_grace_s"]
    assert stack.client.app[REAPER].counters["orphans_returned"] == 1
    assert await nothing_leaked(stack, "orphan")


@pytest.mark.integration
async def test_expired_lease_of_a_hung_container_removes_it(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "hung")
    await Pool(stack.redis).acquire("hung", 1, lease_s=0.1)
    # the process lives on but answers nothing: only the reaper's health check can tell
    pid = stack.manager._backend._procs[idle.container_id].pid
    os.killpg(pid, signal.SIGSTOP)

    async def removed() -> bool:
        return idle.container_id not in stack.live_containers()

    assert await wait_for(removed, timeout_s=10)
    assert await stack.pool_entries("hung", 1) == []
    assert await stack.leases() == []
    registered = keys.containers(stack.manager.manager_id)
    assert await stack.redis.hget(registered, idle.container_id) is None
    assert stack.client.app[REAPER].counters["reclaimed_remove"] == 1


@pytest.mark.integration
async def test_expired_lease_of_a_killed_container_removes_it(hotpool_stack, monkeypatch):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "killed")
    # the Manager misses the death (its exit listener is what would normally evict it)
    monkeypatch.setattr(stack.manager._backend, "_listeners", [])
    await Pool(stack.redis).acquire("killed", 1, lease_s=0.1)
    os.killpg(stack.manager._backend._procs[idle.container_id].pid, signal.SIGKILL)

    async def removed() -> bool:
        return idle.container_id not in stack.live_containers()

    assert await wait_for(removed, timeout_s=10)
    assert await stack.pool_entries("killed", 1) == [] and await stack.leases() == []
    assert stack.client.app[REAPER].counters["reclaimed_remove"] == 1
    # the next call starts a fresh container rather than reaching the dead one
    resp = await stack.invoke("killed", {})
    assert resp.status == 200 and resp.headers["X-Hotpool-Cold-Start"] == "true"


@pytest.mark.integration
async def test_dead_manager_is_purged_and_calls_fail_fast(hotpool_stack):
    # drain_timeout_s: its containers are gone from the pool, so the drain at teardown waits
    stack = await hotpool_stack(heartbeat_interval_s=60, drain_timeout_s=0.2, **FAST_REAPER)
    await warm(stack, "stranded")
    manager_id = stack.manager.manager_id
    # its heartbeat stops: the alive key lapses and is not set again
    await stack.redis.pexpire(keys.manager_alive(manager_id), 100)

    async def purged() -> bool:
        return (
            await stack.redis.exists(keys.containers(manager_id)) == 0
            and await stack.pool_entries("stranded", 1) == []
            and await stack.redis.hget(keys.MANAGERS, manager_id) is None
        )

    assert await wait_for(purged, timeout_s=10)
    status = await (await stack.client.get("/system/status")).json()
    assert status["managers_online"] == 0 and status["status"] == "offline"
    assert not any(m["alive"] for m in status["managers"] if m["id"] == manager_id)
    assert status["counters"]["dead_managers"] == 1

    begun = time.monotonic()
    resp = await stack.invoke("stranded", {})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "NoCapacity"
    assert time.monotonic() - begun < 5  # no hang waiting for a Manager


@pytest.mark.integration
async def test_exactly_one_reaper_runs_across_main_replicas(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    other = TestClient(
        TestServer(
            create_app(stack.settings, redis=fakeredis.FakeAsyncRedis(server=stack.fake_server))
        )
    )
    await other.start_server()
    try:
        reapers = [stack.client.app[REAPER], other.app[REAPER]]
        owners = {r.owner for r in reapers}
        assert len(owners) == 2
        passes = {r.owner: 0 for r in reapers}
        for reaper in reapers:
            _count_passes(reaper, passes)

        async def one_took_passes() -> bool:
            return any(n >= 5 for n in passes.values())

        assert await wait_for(one_took_passes, timeout_s=10)
        holder = (await stack.redis.get(keys.REAPER_LOCK)).decode()
        assert holder in owners
        # several intervals on, the same one holds it and the other never ran a pass
        start = passes[holder]

        async def more_passes() -> bool:
            return passes[holder] >= start + 5

        assert await wait_for(more_passes, timeout_s=10)
        assert (await stack.redis.get(keys.REAPER_LOCK)).decode() == holder
        assert [n for owner, n in passes.items() if owner != holder] == [0]

        # the holder goes away: it gives the lock up and the other takes over
        holder_client = stack.client if reapers[0].owner == holder else other
        await holder_client.close()
        (survivor,) = owners - {holder}

        async def taken_over() -> bool:
            return passes[survivor] > 0

        assert await wait_for(taken_over, timeout_s=10)
        assert (await stack.redis.get(keys.REAPER_LOCK)).decode() == survivor
    finally:
        await other.close()


def _count_passes(reaper, passes: dict[str, int]) -> None:
    """Count the passes ``reaper`` actually runs (those taken under the lock)."""
    reclaim = reaper.reclaim_expired

    async def counted(alive: set[str]) -> None:
        passes[reaper.owner] += 1
        await reclaim(alive)

    reaper.reclaim_expired = counted


@pytest.mark.integration
async def test_busy_orphan_is_not_returned_to_the_pool(hotpool_stack):
    stack = await hotpool_stack(**FAST_REAPER)
    idle = await warm(stack, "busyorphan", SLEEPY)
    assert await Pool(stack.redis).acquire("busyorphan", 1, lease_s=30) == idle
    call = asyncio.create_task(_call_container(idle, {"s": 2.0}))
    await asyncio.sleep(0.2)
    # Redis restarts and loses the lease; the Manager's heartbeat re-registers the container
    await stack.redis.zrem(keys.LEASES, idle.encode())
    seen_in_pool_while_busy = False

    async def watch() -> bool:
        nonlocal seen_in_pool_while_busy
        if not call.done() and await stack.pool_entries("busyorphan", 1):
            seen_in_pool_while_busy = True
        return call.done()

    assert await wait_for(watch, timeout_s=10)
    assert (await call)["status"] == "success"
    print("orphans_returned", stack.client.app[REAPER].counters["orphans_returned"])
    assert not seen_in_pool_while_busy, "a busy container was put back into the pool"

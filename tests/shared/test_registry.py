"""The Manager registry (shared.registry), on fakeredis and on real Redis: a Manager's heartbeat
and containers as Main reads them, and the purge of a dead Manager, which must leave a Manager
that came back under the same id whole."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Pool
from hotpool.shared.registry import ManagerInfo, ManagerRegistration, ManagerRegistry
from tests.stack import wait_for

pytestmark = pytest.mark.contract

TTL_S = 30.0


def registration(**fields) -> bytes:
    info = {
        "url": "http://x:8081",
        "capacity": 8,
        "running": 1,
        "accepting": True,
        "heartbeat_at": 1000.5,
    }
    info.update(fields)
    return orjson.dumps(info)


def info(manager_id: str, **fields) -> dict[str, object]:
    """What a Manager's heartbeat publishes (as ManagerService.heartbeat builds it)."""
    return {
        "id": manager_id,
        "url": f"http://{manager_id}:8081",
        "backend": "process",
        "capacity": 8,
        "running": 0,
        "accepting": True,
        "healthy": True,
        "heartbeat_at": 1000.5,
        **fields,
    }


def entry(manager_id: str, container_id: str, function: str = "fn", version: int = 1) -> PoolEntry:
    return PoolEntry(function, version, manager_id, container_id, "127.0.0.1:9000")


async def dump(redis) -> dict[str, object]:
    """Every key and its value, to show that something changed nothing."""
    found: dict[str, object] = {}
    async for raw in redis.scan_iter():
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "list":
            found[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            found[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            found[key] = await redis.hgetall(key)
        else:
            found[key] = (await redis.get(key), await redis.pttl(key) > 0)
    return found


# --- what Main reads ---------------------------------------------------------------------------


async def test_snapshot_marks_only_managers_with_a_heartbeat_alive(redis_client):
    await redis_client.hset(
        keys.MANAGERS,
        mapping={
            "m1": registration(url="http://one:8081", capacity=4, running=2, accepting=True),
            "m2": registration(url="http://two:8081", capacity=16, running=0, accepting=False),
        },
    )
    await redis_client.set(keys.manager_alive("m1"), b"1", px=10_000)

    snapshot = await ManagerRegistry(redis_client).snapshot()

    by_id = {m.id: m for m in snapshot}
    assert set(by_id) == {"m1", "m2"}
    assert by_id["m1"] == ManagerInfo(
        id="m1",
        url="http://one:8081",
        capacity=4,
        running=2,
        accepting=True,
        heartbeat_at=1000.5,
        alive=True,
    )
    assert by_id["m2"].alive is False
    assert by_id["m2"].accepting is False
    assert by_id["m2"].capacity == 16


async def test_snapshot_of_no_registrations_is_empty(redis_client):
    assert await ManagerRegistry(redis_client).snapshot() == []


async def test_registration_without_accepting_counts_as_accepting(redis_client):
    fields = orjson.loads(registration())
    del fields["accepting"]
    await redis_client.hset(keys.MANAGERS, "m1", orjson.dumps(fields))

    (manager,) = await ManagerRegistry(redis_client).snapshot()

    assert manager.accepting is True


async def test_first_snapshot_reads_redis_whatever_the_cache_time(redis_client):
    # regression: the cache stamp started at monotonic 0, so on a host up for less than
    # cache_s the first snapshot answered the empty initial list without reading
    await redis_client.hset(keys.MANAGERS, "m1", registration())

    snapshot = await ManagerRegistry(redis_client, cache_s=10**9).snapshot()

    assert [m.id for m in snapshot] == ["m1"]


async def test_snapshot_is_cached_until_fresh_is_asked(redis_client):
    registry = ManagerRegistry(redis_client, cache_s=3600)
    await redis_client.hset(keys.MANAGERS, "m1", registration())
    assert [m.id for m in await registry.snapshot()] == ["m1"]

    await redis_client.hset(keys.MANAGERS, "m2", registration())

    assert [m.id for m in await registry.snapshot()] == ["m1"]
    assert sorted(m.id for m in await registry.snapshot(fresh=True)) == ["m1", "m2"]


async def test_url_of_rereads_for_a_manager_not_in_the_cache(redis_client):
    registry = ManagerRegistry(redis_client, cache_s=3600)
    await registry.snapshot()
    await redis_client.hset(keys.MANAGERS, "late", registration(url="http://late:8081"))

    assert await registry.url_of("late") == "http://late:8081"
    assert await registry.url_of("never") is None


# --- what a Manager writes ---------------------------------------------------------------------


async def test_a_heartbeat_registers_the_manager_as_main_reads_it(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)

    await own.heartbeat(
        info("m1", capacity=6, running=4, accepting=False), [], is_known=lambda cid: False
    )

    (manager,) = await ManagerRegistry(redis_client).snapshot()
    assert manager == ManagerInfo(
        id="m1",
        url="http://m1:8081",
        capacity=6,
        running=4,
        accepting=False,
        heartbeat_at=1000.5,
        alive=True,
    )
    assert 0 < await redis_client.pttl(keys.manager_alive("m1")) <= TTL_S * 1000
    assert await ManagerRegistry(redis_client).registered_ids() == ["m1"]


async def test_a_manager_whose_alive_key_lapses_is_dead_but_still_registered(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)
    await own.heartbeat(info("m1"), [], is_known=lambda cid: False)
    registry = ManagerRegistry(redis_client)

    await redis_client.pexpire(keys.manager_alive("m1"), 1)  # its beats stopped

    async def dead() -> bool:
        return [m.alive for m in await registry.snapshot(fresh=True)] == [False]

    assert await wait_for(dead)
    assert await registry.registered_ids() == ["m1"]  # the reaper purges it, not the lapse


async def test_containers_are_registered_and_forgotten(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)
    a, b = entry("m1", "a"), entry("m1", "b")

    await own.register(a)
    await own.register(b)
    await own.forget("a")
    await own.forget("never-registered")

    assert await own.registered() == {"b": b}
    assert await ManagerRegistry(redis_client).live_entries(["m1", "m2"]) == {b.encode()}


async def test_a_heartbeat_rebuilds_the_containers_redis_lost(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)
    a, b = entry("m1", "a"), entry("m1", "b")
    await own.heartbeat(info("m1"), [a, b], is_known={"a", "b"}.__contains__)
    await redis_client.flushdb()  # a Redis restart without persistence

    await own.heartbeat(info("m1"), [a, b], is_known={"a", "b"}.__contains__)

    assert await own.registered() == {"a": a, "b": b}
    assert [m.id for m in await ManagerRegistry(redis_client).snapshot()] == ["m1"]


async def test_a_heartbeat_drops_containers_the_manager_no_longer_has(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)
    ready, starting, gone = entry("m1", "ready"), entry("m1", "starting"), entry("m1", "gone")
    for e in (ready, starting, gone):
        await own.register(e)

    # "starting" is still the Manager's (not ready yet), "gone" is not
    await own.heartbeat(info("m1"), [ready], is_known={"ready", "starting"}.__contains__)

    assert await own.registered() == {"ready": ready, "starting": starting}


async def test_deregister_withdraws_the_manager(redis_client):
    own = ManagerRegistration(redis_client, "m1", alive_ttl_s=TTL_S)
    other = ManagerRegistration(redis_client, "m2", alive_ttl_s=TTL_S)
    await own.heartbeat(info("m1"), [], is_known=lambda cid: False)
    await other.heartbeat(info("m2"), [], is_known=lambda cid: False)

    await own.deregister()

    assert [m.id for m in await ManagerRegistry(redis_client).snapshot()] == ["m2"]
    assert await redis_client.exists(keys.manager_alive("m1")) == 0


# --- the purge of a dead Manager ---------------------------------------------------------------


async def two_managers(redis) -> dict[str, PoolEntry]:
    """m1 and m2, each with an idle and a leased container of one function version and an idle
    one of another; then m1's heartbeat stops. Returns the entries by container id."""
    pool = Pool(redis, clock=lambda: 1000.0)
    made = {}
    for manager_id in ("m1", "m2"):
        own = ManagerRegistration(redis, manager_id, alive_ttl_s=TTL_S)
        idle, busy = (
            entry(manager_id, f"{manager_id}-idle"),
            entry(manager_id, f"{manager_id}-busy"),
        )
        other = entry(manager_id, f"{manager_id}-v7", function="ns.other-fn", version=7)
        for e in (idle, busy, other):
            await own.register(e)
            await pool.lease(e, 30)
        for e in (idle, other):
            assert await pool.release(e) == 1
        mine = [idle, busy, other]
        known = {e.container_id for e in mine}
        await own.heartbeat(info(manager_id), mine, is_known=known.__contains__)
        made.update({e.container_id: e for e in (idle, busy, other)})
    await redis.delete(keys.manager_alive("m1"))
    return made


async def test_the_purge_removes_a_dead_manager_and_its_containers_everywhere(redis_client):
    made = await two_managers(redis_client)
    m2_before = {
        key: value
        for key, value in (await dump(redis_client)).items()
        if "m2" in key or key == keys.manager_alive("m2")
    }

    purged = await ManagerRegistry(redis_client).purge("m1")

    assert {e.container_id for e in purged} == {"m1-idle", "m1-busy", "m1-v7"}
    placed = await Pool(redis_client).placed()
    assert placed == {made[c].encode() for c in ("m2-idle", "m2-busy", "m2-v7")}
    # the lease counters stay exact: m2's lease alone is counted
    assert await redis_client.hget(keys.fv("fn", 1), "leased") == b"1"
    assert await redis_client.hget(keys.fv("ns.other-fn", 7), "leased") == b"0"
    for gone in (keys.containers("m1"), keys.idle("m1")):
        assert await redis_client.exists(gone) == 0
    assert await ManagerRegistry(redis_client).registered_ids() == ["m2"]
    after = await dump(redis_client)
    assert {key: after[key] for key in m2_before} == m2_before


async def test_a_manager_that_came_back_before_its_purge_is_left_whole(redis_client):
    await two_managers(redis_client)
    # the reaper saw m1 dead; m1 restarts under its stable id and beats before the purge runs
    await redis_client.set(keys.manager_alive("m1"), b"1", px=int(TTL_S * 1000))
    before = await dump(redis_client)

    purged = await ManagerRegistry(redis_client).purge("m1")

    assert purged is None
    assert await dump(redis_client) == before


async def test_purging_an_unknown_manager_changes_nothing(redis_client):
    await two_managers(redis_client)
    before = await dump(redis_client)

    assert await ManagerRegistry(redis_client).purge("never-registered") == []
    assert await dump(redis_client) == before


# --- the Lua key builder is the Python one -----------------------------------------------------

ENTRY_KEYS = keys.ENTRY_KEYS_FN + "return {entry_keys(ARGV[1], ARGV[2], ARGV[3])}\n"
names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z")


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    namespace=st.none() | names,
    name=names,
    version=st.integers(0, 2**63 - 1),
    manager_id=st.from_regex(r"\A[A-Za-z0-9_.:-]{1,30}\Z"),
)
@example(namespace=None, name="f", version=0, manager_id="m")
@example(namespace="team-a", name="fn_1", version=10**15, manager_id="node.example:8081")
async def test_lua_builds_the_same_entry_keys_as_python(
    redis_client, namespace, name, version, manager_id
):
    function = name if namespace is None else f"{namespace}.{name}"
    e = PoolEntry(function, version, manager_id, "c1", "10.0.0.1:9000")

    got = await redis_client.eval(ENTRY_KEYS, 0, e.encode(), keys.POOL_PREFIX, keys.FV_PREFIX)

    assert [k.decode() for k in got] == [keys.pool(function, version), keys.fv(function, version)]

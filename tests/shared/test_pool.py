"""Contract tests of the Redis warm pool (shared.pool.Pool), on fakeredis and on real Redis.

The oracle is BRIEF.md §3: a container is held by at most one caller (invariant 1), and every
container is in exactly one place — its pool list, a lease, or gone (invariant 2).
"""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Pool, PoolCounts

FN = "echo"
VERSION = 3


def entry(container_id: str, *, manager_id: str = "m1", version: int = VERSION) -> PoolEntry:
    return PoolEntry(FN, version, manager_id, container_id, "127.0.0.1:9000")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def pool_list(redis, function: str = FN, version: int = VERSION) -> list[PoolEntry]:
    return [
        PoolEntry.decode(raw) for raw in await redis.lrange(keys.pool(function, version), 0, -1)
    ]


async def leased(redis) -> dict[PoolEntry, float]:
    return {
        PoolEntry.decode(raw): score
        for raw, score in await redis.zrange(keys.LEASES, 0, -1, withscores=True)
    }


async def idle_set(redis, manager_id: str = "m1") -> dict[PoolEntry, float]:
    return {
        PoolEntry.decode(raw): score
        for raw, score in await redis.zrange(keys.idle(manager_id), 0, -1, withscores=True)
    }


async def put_idle(pool: Pool, *entries: PoolEntry) -> None:
    """Bring containers into the pool the way a cold start does: lease, then release."""
    for e in entries:
        await pool.lease(e, 30)
        assert await pool.release(e) == 1


# --- acquire -----------------------------------------------------------------------------------


@pytest.mark.contract
async def test_acquire_on_empty_list_returns_none_and_leases_nothing(redis_client):
    pool = Pool(redis_client)

    assert await pool.acquire(FN, VERSION, 30) is None
    assert await leased(redis_client) == {}


@pytest.mark.contract
async def test_acquire_records_lease_with_deadline_clock_plus_lease_s(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    a = entry("c1")
    await put_idle(pool, a)

    clock.now = 2000.0
    got = await pool.acquire(FN, VERSION, 42.5)

    assert got == a
    assert await leased(redis_client) == {a: 2042.5}
    assert await pool_list(redis_client) == []


@pytest.mark.contract
async def test_acquire_only_takes_from_its_own_version(redis_client):
    pool = Pool(redis_client)
    await put_idle(pool, entry("c1", version=1))

    assert await pool.acquire(FN, 2, 30) is None
    assert await pool.acquire(FN, 1, 30) == entry("c1", version=1)


# --- release -----------------------------------------------------------------------------------


@pytest.mark.contract
async def test_release_puts_entries_back_in_fifo_order(redis_client):
    pool = Pool(redis_client)
    a, b, c = entry("a"), entry("b"), entry("c")
    for e in (a, b, c):
        await pool.lease(e, 30)

    assert [await pool.release(e) for e in (a, b, c)] == [1, 1, 1]

    assert await pool_list(redis_client) == [a, b, c]
    assert await leased(redis_client) == {}
    assert [await pool.acquire(FN, VERSION, 30) for _ in range(3)] == [a, b, c]


@pytest.mark.contract
async def test_release_of_acquired_entry_puts_it_back(redis_client):
    pool = Pool(redis_client)
    a = entry("c1")
    await put_idle(pool, a)

    got = await pool.acquire(FN, VERSION, 30)
    assert await pool.release(got) == 1

    assert await pool_list(redis_client) == [a]
    assert await leased(redis_client) == {}


@pytest.mark.contract
async def test_release_records_idle_time_for_its_manager(redis_client):
    clock = Clock(500.0)
    pool = Pool(redis_client, clock=clock)
    a = entry("c1", manager_id="m7")
    await pool.lease(a, 30)

    clock.now = 777.0
    await pool.release(a)

    assert await idle_set(redis_client, "m7") == {a: 777.0}
    assert await idle_set(redis_client, "m1") == {}


@pytest.mark.contract
async def test_release_twice_returns_minus_one_and_pushes_once(redis_client):
    pool = Pool(redis_client)
    a = entry("c1")
    await pool.lease(a, 30)

    assert await pool.release(a) == 1
    assert await pool.release(a) == -1

    assert await pool_list(redis_client) == [a]


@pytest.mark.contract
async def test_release_without_lease_returns_minus_one_and_does_not_push(redis_client):
    pool = Pool(redis_client)

    assert await pool.release(entry("never-leased")) == -1

    assert await pool_list(redis_client) == []
    assert await idle_set(redis_client) == {}


# --- retire ------------------------------------------------------------------------------------


@pytest.mark.contract
async def test_retire_returns_idle_entries_and_empties_the_list(redis_client):
    pool = Pool(redis_client)
    a, b = entry("a"), entry("b")
    await put_idle(pool, a, b)

    removed = await pool.retire(FN, VERSION)

    assert removed == [a, b]
    assert await pool_list(redis_client) == []
    assert await pool.acquire(FN, VERSION, 30) is None
    # the marker expires by itself, long after any lease could
    ttl = await redis_client.ttl(keys.retired(FN, VERSION))
    assert 0 < ttl <= keys.retired_marker_ttl_s


@pytest.mark.contract
async def test_retire_of_empty_version_returns_nothing(redis_client):
    pool = Pool(redis_client)

    assert await pool.retire(FN, VERSION) == []


@pytest.mark.contract
async def test_release_after_retire_returns_zero_and_does_not_push(redis_client):
    pool = Pool(redis_client)
    a, b = entry("a"), entry("b")
    await put_idle(pool, b)
    await pool.lease(a, 30)

    assert await pool.retire(FN, VERSION) == [b]
    assert await pool.release(a) == 0

    assert await pool_list(redis_client) == []
    assert await leased(redis_client) == {}
    assert a not in await idle_set(redis_client)


@pytest.mark.contract
async def test_retire_leaves_other_versions_alone(redis_client):
    pool = Pool(redis_client)
    old, new = entry("old", version=1), entry("new", version=2)
    await put_idle(pool, old, new)

    assert await pool.retire(FN, 1) == [old]

    assert await pool_list(redis_client, FN, 2) == [new]
    await pool.lease(entry("new2", version=2), 30)
    assert await pool.release(entry("new2", version=2)) == 1


@pytest.mark.contract
async def test_unretire_makes_release_push_again(redis_client):
    pool = Pool(redis_client)
    a = entry("a")
    await pool.retire(FN, VERSION)
    await pool.unretire(FN, VERSION)
    await pool.lease(a, 30)

    assert await pool.release(a) == 1

    assert await pool_list(redis_client) == [a]
    assert await redis_client.exists(keys.retired(FN, VERSION)) == 0


# --- remove_idle, evict ------------------------------------------------------------------------


@pytest.mark.contract
async def test_remove_idle_takes_an_entry_that_is_in_the_list(redis_client):
    pool = Pool(redis_client)
    a, b = entry("a"), entry("b")
    await put_idle(pool, a, b)

    assert await pool.remove_idle(a) is True

    assert await pool_list(redis_client) == [b]
    assert set(await idle_set(redis_client)) == {b}


@pytest.mark.contract
async def test_remove_idle_refuses_a_leased_entry(redis_client):
    pool = Pool(redis_client)
    a = entry("a")
    await put_idle(pool, a)
    assert await pool.acquire(FN, VERSION, 30) == a

    assert await pool.remove_idle(a) is False

    # the caller still holds it, and may give it back
    assert a in await leased(redis_client)
    assert await pool.release(a) == 1
    assert await pool_list(redis_client) == [a]


@pytest.mark.contract
async def test_remove_idle_of_unknown_entry_is_false(redis_client):
    pool = Pool(redis_client)

    assert await pool.remove_idle(entry("ghost")) is False


@pytest.mark.contract
async def test_evict_removes_from_list_and_idle_set(redis_client):
    pool = Pool(redis_client)
    a, b = entry("a"), entry("b")
    await put_idle(pool, a, b)

    await pool.evict(a)

    assert await pool_list(redis_client) == [b]
    assert set(await idle_set(redis_client)) == {b}
    assert await leased(redis_client) == {}


@pytest.mark.contract
async def test_evict_removes_lease_so_release_does_not_push(redis_client):
    pool = Pool(redis_client)
    a = entry("a")
    await put_idle(pool, a)
    assert await pool.acquire(FN, VERSION, 30) == a

    await pool.evict(a)

    assert await leased(redis_client) == {}
    assert await idle_set(redis_client) == {}
    assert await pool.release(a) == -1
    assert await pool_list(redis_client) == []


# --- queries -----------------------------------------------------------------------------------


@pytest.mark.contract
async def test_idle_since_returns_entries_released_before_cutoff_per_manager(redis_client):
    clock = Clock(100.0)
    pool = Pool(redis_client, clock=clock)
    old_m1, new_m1, old_m2 = entry("old1"), entry("new1"), entry("old2", manager_id="m2")
    for e in (old_m1, new_m1, old_m2):
        await pool.lease(e, 30)
    await pool.release(old_m1)
    await pool.release(old_m2)
    clock.now = 200.0
    await pool.release(new_m1)

    assert await pool.idle_since("m1", 150.0) == [old_m1]
    assert await pool.idle_since("m2", 150.0) == [old_m2]
    assert set(await pool.idle_since("m1", 200.0)) == {old_m1, new_m1}
    assert await pool.idle_since("m1", 99.0) == []
    assert await pool.idle_since("unknown", 1e12) == []


@pytest.mark.contract
async def test_expired_leases_are_those_past_their_deadline(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    short, long_ = entry("short"), entry("long")
    await pool.lease(short, 10)
    await pool.lease(long_, 100)

    assert await pool.expired_leases(1005.0) == []
    assert await pool.expired_leases(1010.0) == [short]
    assert await pool.expired_leases(2000.0) == [short, long_]


@pytest.mark.contract
async def test_is_placed_while_in_the_list_or_leased_only(redis_client):
    pool = Pool(redis_client)
    idle, busy, gone = entry("idle"), entry("busy"), entry("gone")
    await put_idle(pool, idle, gone)
    await pool.lease(busy, 30)
    assert await pool.remove_idle(gone)

    assert [await pool.is_placed(e) for e in (idle, busy, gone)] == [True, True, False]


@pytest.mark.contract
async def test_counts_reports_idle_and_leased_per_version(redis_client):
    pool = Pool(redis_client)
    await put_idle(pool, entry("a", version=1), entry("b", version=1), entry("c", version=2))
    await pool.lease(entry("d", version=1), 30)
    assert await pool.acquire(FN, 2, 30) == entry("c", version=2)

    counts = await pool.counts()

    assert counts == PoolCounts(
        idle={f"{FN}:1": 2}, leased={f"{FN}:1": 1, f"{FN}:2": 1}, starting={}
    )


@pytest.mark.contract
async def test_counts_of_empty_pool(redis_client):
    assert await Pool(redis_client).counts() == PoolCounts(idle={}, leased={}, starting={})


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.contract
async def test_concurrent_acquire_release_never_shares_a_container(redis_client):
    pool = Pool(redis_client)
    entries = [entry(f"c{i}") for i in range(5)]
    await put_idle(pool, *entries)
    holders: dict[PoolEntry, int] = {}
    served = {i: 0 for i in range(50)}
    rounds = 8

    async def worker(task_id: int) -> None:
        while served[task_id] < rounds:
            got = await pool.acquire(FN, VERSION, 30)
            if got is None:
                await asyncio.sleep(0)
                continue
            # invariant 1: nobody else holds this container right now
            assert got not in holders, f"{got} held by {holders[got]} and {task_id}"
            holders[got] = task_id
            await asyncio.sleep(0)
            assert holders.pop(got) == task_id
            assert await pool.release(got) == 1
            served[task_id] += 1

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(50))), timeout=20)

    assert all(n == rounds for n in served.values())
    final = await pool_list(redis_client)
    assert sorted(final, key=lambda e: e.container_id) == entries
    assert await leased(redis_client) == {}


# --- property: every entry is in exactly one place ---------------------------------------------

VERSIONS = [1, 2]
GHOST = entry("ghost", version=1)  # never started: every operation on it must change nothing

# release, evict and remove_idle pick their target among the known entries (and the ghost)
pick = st.integers(min_value=0, max_value=31)
operation = st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("cold_start"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("release"), pick),
    st.tuples(st.just("evict"), pick),
    st.tuples(st.just("remove_idle"), pick),
    st.tuples(st.just("retire"), st.sampled_from(VERSIONS)),
    st.tuples(st.just("unretire"), st.sampled_from(VERSIONS)),
)


async def _places(redis) -> tuple[dict[int, list[PoolEntry]], set[PoolEntry]]:
    lists = {version: await pool_list(redis, FN, version) for version in VERSIONS}
    return lists, set(await leased(redis))


def _check_places(
    lists: dict[int, list[PoolEntry]],
    leases: set[PoolEntry],
    known: set[PoolEntry],
    removed: set[PoolEntry],
) -> None:
    in_lists = [e for listed in lists.values() for e in listed]
    assert all(e.version == v for v, listed in lists.items() for e in listed), "wrong list"
    assert len(in_lists) == len(set(in_lists)), f"duplicated in a list: {in_lists}"
    assert set(in_lists) | leases <= known, "a container nobody started"
    for e in known:
        places = [e in in_lists, e in leases, e in removed]
        assert sum(places) == 1, f"{e.container_id}: list/lease/removed = {places}"


async def _run_operations(ops: list[tuple]) -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        pool = Pool(redis)
        known: set[PoolEntry] = set()  # every container ever started
        removed: set[PoolEntry] = set()  # handed out for removal, or evicted
        retired: set[int] = set()
        for version in VERSIONS:
            for cid in ("a", "b"):
                known.add(entry(cid, version=version))
                await put_idle(pool, entry(cid, version=version))
        for n, op in enumerate(ops):
            kind, arg = op
            lists, leases = await _places(redis)
            targets = sorted(known | {GHOST}, key=lambda e: (e.version, e.container_id))
            picks = kind in ("release", "evict", "remove_idle")
            target = targets[arg % len(targets)] if picks else GHOST
            if kind == "acquire":
                got = await pool.acquire(FN, arg, 30)
                assert got == (lists[arg][0] if lists[arg] else None)  # FIFO
            elif kind == "cold_start":
                e = entry(f"new{n}", version=arg)
                known.add(e)
                await pool.lease(e, 30)
            elif kind == "retire":
                handed_out = await pool.retire(FN, arg)
                assert handed_out == lists[arg]
                removed.update(handed_out)
                retired.add(arg)
            elif kind == "unretire":
                await pool.unretire(FN, arg)
                retired.discard(arg)
            elif kind == "release":
                # callers release what they hold, but also stale copies (after an evict, a
                # reclaimed lease, a double release): those must change nothing
                outcome = await pool.release(target)
                if target not in leases:
                    assert outcome == -1
                elif target.version in retired:
                    assert outcome == 0
                    removed.add(target)
                else:
                    assert outcome == 1
            elif kind == "evict":
                await pool.evict(target)
                if target in known:
                    removed.add(target)
            elif kind == "remove_idle":
                taken = await pool.remove_idle(target)
                assert taken == (target in lists[target.version])
                if taken:
                    removed.add(target)
            _check_places(*await _places(redis), known, removed)
    finally:
        await redis.aclose()


@pytest.mark.unit
@settings(max_examples=50, deadline=None)
@given(st.lists(operation, max_size=40))
def test_every_entry_is_in_exactly_one_place(ops):
    asyncio.run(_run_operations(ops))

"""Herd control and the pool's bookkeeping scripts, on fakeredis and on real Redis.

The ACQUIRE_OR_PLAN Lua script is held to ``plan_miss``, its pure twin. The ``leased``
counter it reads must stay exact under every script that touches a lease, or herd control
drifts (BRIEF.md §2: never more than max_concurrency containers per function).
"""

from __future__ import annotations

import asyncio
import random

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Plan, Pool, plan_miss
from tests.stack import wait_for

FN = "herd"
VERSION = 1


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(container_id: str, *, version: int = VERSION) -> PoolEntry:
    return PoolEntry(FN, version, "m1", container_id, "127.0.0.1:9000")


async def leased_counter(redis, version: int = VERSION) -> int:
    raw = await redis.hget(keys.fv(FN, version), "leased")
    return int(raw) if raw is not None else 0


async def leases_of(redis, version: int = VERSION) -> list[PoolEntry]:
    found = [PoolEntry.decode(raw) for raw in await redis.zrange(keys.LEASES, 0, -1)]
    return [e for e in found if e.function == FN and e.version == version]


async def zmembers(redis, key: str) -> set[str]:
    return {raw.decode() for raw in await redis.zrange(key, 0, -1)}


# --- ACQUIRE_OR_PLAN is plan_miss --------------------------------------------------------------


@pytest.mark.unit
@settings(max_examples=60, deadline=None)
@given(
    starting=st.integers(0, 8),
    waiting=st.integers(0, 40),
    leased=st.integers(0, 20),
    max_concurrency=st.integers(1, 30),
    waiters_per_start=st.integers(0, 6),
    retired=st.booleans(),
)
def test_acquire_or_plan_decides_exactly_like_plan_miss(
    starting, waiting, leased, max_concurrency, waiters_per_start, retired
):
    expected = plan_miss(
        starting=starting,
        waiting=waiting,
        leased=leased,
        max_concurrency=max_concurrency,
        waiters_per_start=waiters_per_start,
        retired=retired,
    )

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        clock = Clock(1000.0)
        pool = Pool(redis, clock=clock)
        await redis.hset(keys.fv(FN, VERSION), "leased", leased)
        if starting:
            await redis.zadd(
                keys.starting(FN, VERSION), {f"s{i}": 1000.0 + 60 for i in range(starting)}
            )
        if waiting:
            await redis.zadd(
                keys.waiting(FN, VERSION), {f"w{i}": 1000.0 + 60 for i in range(waiting)}
            )
        if retired:
            await redis.set(keys.retired(FN, VERSION), "1")

        planned = await pool.acquire_or_plan(
            FN, VERSION, lease_s=30, token="me", max_concurrency=max_concurrency,
            waiters_per_start=waiters_per_start, start_s=20, wait_s=40,
        )  # fmt: skip
        plan, got = planned.plan, planned.entry

        assert plan is expected and got is None
        starters = await redis.zrange(keys.starting(FN, VERSION), 0, -1, withscores=True)
        waiters = await redis.zrange(keys.waiting(FN, VERSION), 0, -1, withscores=True)
        if plan is Plan.START:
            assert (b"me", 1020.0) in starters and len(starters) == starting + 1
            assert len(waiters) == waiting
        elif plan is Plan.RETIRED:  # it moves on, registered nowhere
            assert (len(starters), len(waiters)) == (starting, waiting)
        else:  # WAIT and QUEUE both wait on the list
            assert (b"me", 1040.0) in waiters and len(waiters) == waiting + 1
            assert len(starters) == starting
        # deciding never touches the lease counter
        assert await leased_counter(redis) == leased
        await redis.aclose()

    asyncio.run(scenario())


@pytest.mark.contract
async def test_acquire_or_plan_leases_an_idle_container_first(redis_client):
    clock = Clock()
    pool = Pool(redis_client, clock=clock)
    a = entry("c1")
    await pool.lease(a, 30)
    await pool.release(a)
    # even with a herd of starts under way, an idle container is simply taken
    await redis_client.zadd(keys.starting(FN, VERSION), {"s": clock.now + 60})

    planned = await pool.acquire_or_plan(
        FN, VERSION, lease_s=30, token="me", max_concurrency=1, waiters_per_start=4,
        start_s=20, wait_s=40,
    )  # fmt: skip
    plan, got = planned.plan, planned.entry

    assert plan is Plan.LEASE and got == a
    assert [e for e in await leases_of(redis_client)] == [a]
    assert await leased_counter(redis_client) == 1
    assert "me" not in await zmembers(redis_client, keys.waiting(FN, VERSION))
    assert "me" not in await zmembers(redis_client, keys.starting(FN, VERSION))


@pytest.mark.contract
async def test_expired_start_and_wait_tokens_are_ignored_and_purged(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    # a Main that died mid-start left three starts and two waiters behind, long expired
    await redis_client.zadd(keys.starting(FN, VERSION), {"dead1": 900, "dead2": 950, "dead3": 999})
    await redis_client.zadd(keys.waiting(FN, VERSION), {"deadw1": 990, "deadw2": 1000})

    planned = await pool.acquire_or_plan(
        FN, VERSION, lease_s=30, token="me", max_concurrency=10, waiters_per_start=4,
        start_s=20, wait_s=40,
    )  # fmt: skip
    plan, _ = planned.plan, planned.entry

    # counted, the dead starts would have made this request wait for nothing
    assert plan is Plan.START
    assert await zmembers(redis_client, keys.starting(FN, VERSION)) == {"me"}
    assert await zmembers(redis_client, keys.waiting(FN, VERSION)) == set()
    # nor do they count against max_concurrency
    await pool.start_failed(FN, VERSION, "me")
    await redis_client.zadd(keys.starting(FN, VERSION), {f"old{i}": 500 for i in range(5)})
    planned = await pool.acquire_or_plan(
        FN, VERSION, lease_s=30, token="me2", max_concurrency=1, waiters_per_start=0,
        start_s=20, wait_s=40,
    )  # fmt: skip
    plan, _ = planned.plan, planned.entry
    assert plan is Plan.START
    assert await zmembers(redis_client, keys.starting(FN, VERSION)) == {"me2"}


@pytest.mark.contract
async def test_live_start_token_makes_the_next_misses_wait(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)

    async def plan(token: str) -> Plan:
        planned = await pool.acquire_or_plan(
            FN, VERSION, lease_s=30, token=token, max_concurrency=100, waiters_per_start=2,
            start_s=20, wait_s=40,
        )  # fmt: skip
        decided, _ = planned.plan, planned.entry
        return decided

    assert [await plan(f"r{i}") for i in range(7)] == [
        Plan.START, Plan.WAIT, Plan.WAIT, Plan.START, Plan.WAIT, Plan.WAIT, Plan.START,
    ]  # fmt: skip
    # once the start tokens expire (their Mains died), the next miss starts again
    clock.now += 21
    assert await plan("late") is Plan.START


# --- the leased counter ------------------------------------------------------------------------


async def assert_counter_exact(redis) -> None:
    for version in (1, 2):
        assert await leased_counter(redis, version) == len(await leases_of(redis, version))


@pytest.mark.contract
async def test_leased_counter_stays_exact_over_a_scripted_lifecycle(redis_client):
    clock = Clock()
    pool = Pool(redis_client, clock=clock)
    a, b, c = entry("a"), entry("b"), entry("c")

    await pool.lease(a, 5)  # cold start
    await pool.lease(a, 5)  # leased again (the reaper's extension): counted once
    await assert_counter_exact(redis_client)
    assert await leased_counter(redis_client) == 1
    await pool.lease(b, 5)
    await pool.lease(c, 5)
    assert await pool.release(a) == 1
    assert await pool.release(a) == -1  # a second release changes nothing
    await assert_counter_exact(redis_client)
    assert await pool.acquire(FN, VERSION, 5) == a
    await pool.evict(a)  # a dead container under a lease
    await pool.evict(a)
    await assert_counter_exact(redis_client)
    clock.now += 10
    assert await pool.reclaim(b)
    assert not await pool.reclaim(b)
    await assert_counter_exact(redis_client)
    await pool.retire(FN, VERSION)
    assert await pool.release(c) == 0  # retired: removed, no longer leased
    await assert_counter_exact(redis_client)
    assert await leased_counter(redis_client) == 0


@pytest.mark.contract
async def test_leased_counter_stays_exact_over_random_operations(redis_client):
    """A random walk over every script that changes a lease, checked after each step."""
    clock = Clock()
    pool = Pool(redis_client, clock=clock)
    entries = [entry(f"c{i}") for i in range(6)] + [entry(f"v2-{i}", version=2) for i in range(2)]

    async def step(rng: random.Random, n: int) -> None:
        e = rng.choice(entries)
        op = rng.randrange(9)
        if op == 0:
            # a cold start's container, or one a waiter took off the list: never one in a list
            if await redis_client.lpos(keys.pool(e.function, e.version), e.encode()) is None:
                await pool.lease(e, rng.choice([1, 5]), token=f"t{n}")
        elif op == 1:
            await pool.release(e)
        elif op == 2:
            await pool.acquire(e.function, e.version, rng.choice([1, 5]))
        elif op == 3:
            await pool.acquire_or_plan(
                e.function, e.version, lease_s=rng.choice([1, 5]), token=f"t{n}",
                max_concurrency=3, waiters_per_start=1, start_s=2, wait_s=2,
            )  # fmt: skip
        elif op == 4:
            await pool.evict(e)
        elif op == 5:
            await pool.reclaim(e)
        elif op == 6 and e.encode() not in await pool.placed():
            await pool.put_back(e)
        elif op == 7:
            if rng.random() < 0.2:
                await pool.retire(e.function, e.version)
            else:
                await pool.unretire(e.function, e.version)
        else:
            clock.now += rng.choice([0.5, 2, 6])

    for seed in range(3):
        rng = random.Random(seed)
        for n in range(120):
            await step(rng, n)
            await assert_counter_exact(redis_client)


# --- waiting for a release ---------------------------------------------------------------------


@pytest.mark.contract
async def test_waiter_gets_a_container_released_by_another_task(redis_client):
    pool = Pool(redis_client)
    a = entry("a")
    await pool.add_waiting(FN, VERSION, "waiter", 30)
    waiter = asyncio.create_task(pool.wait_for(FN, VERSION, timeout_s=5))
    await asyncio.sleep(0.05)  # let it block on the empty list
    assert not waiter.done()

    await pool.lease(a, 30)  # another request's cold start
    assert await pool.release(a) == 1
    got = await asyncio.wait_for(waiter, 5)

    assert got == a
    # between BLPOP and lease the container is in neither place; lease makes it leased
    await pool.lease(got, 30, token="waiter")
    assert await zmembers(redis_client, keys.waiting(FN, VERSION)) == set()
    assert await leases_of(redis_client) == [a]
    assert await redis_client.llen(keys.pool(FN, VERSION)) == 0
    await assert_counter_exact(redis_client)


@pytest.mark.contract
async def test_retiring_a_version_wakes_each_of_its_waiters(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    await redis_client.zadd(keys.waiting(FN, VERSION), {"w1": 1060, "w2": 1060, "gone": 990})
    waiters = [asyncio.create_task(pool.wait_for(FN, VERSION, timeout_s=5)) for _ in range(2)]
    await asyncio.sleep(0.05)  # let them block on the empty list
    assert not any(w.done() for w in waiters)

    assert await pool.retire(FN, VERSION) == []
    woken = await asyncio.wait_for(asyncio.gather(*waiters), 5)

    assert woken == [Plan.RETIRED, Plan.RETIRED]
    assert await redis_client.llen(keys.wake(FN, VERSION)) == 0  # none for the expired waiter
    # a request that plans on the retired version is told so, and registered nowhere
    planned = await pool.acquire_or_plan(
        FN, VERSION, lease_s=30, token="late", max_concurrency=5, waiters_per_start=4,
        start_s=20, wait_s=40,
    )  # fmt: skip
    assert planned.plan is Plan.RETIRED
    assert "late" not in await zmembers(redis_client, keys.waiting(FN, VERSION))
    assert "late" not in await zmembers(redis_client, keys.starting(FN, VERSION))
    assert await pool.is_retired(FN, VERSION)


@pytest.mark.contract
async def test_a_version_made_current_again_forgets_its_wake_ups(redis_client):
    pool = Pool(redis_client)
    await pool.add_waiting(FN, VERSION, "w1", 30)
    await pool.retire(FN, VERSION)  # w1 left before it read its sentinel
    await pool.unretire(FN, VERSION)  # a function deleted and created again

    assert not await pool.is_retired(FN, VERSION)
    assert await pool.wait_for(FN, VERSION, timeout_s=0.1) is None


@pytest.mark.contract
async def test_wait_for_times_out_with_none(redis_client):
    pool = Pool(redis_client)
    assert await pool.wait_for(FN, VERSION, timeout_s=0.1) is None


# --- the reaper lock ---------------------------------------------------------------------------


@pytest.mark.contract
async def test_lock_is_held_by_one_owner_at_a_time(redis_client):
    pool = Pool(redis_client)
    name = keys.REAPER_LOCK

    assert await pool.hold_lock(name, "A", 30)
    assert not await pool.hold_lock(name, "B", 30)
    assert await pool.hold_lock(name, "A", 30)  # renewal
    await pool.release_lock(name, "B")  # not B's to give up
    assert await redis_client.get(name) == b"A"
    assert not await pool.hold_lock(name, "B", 30)
    await pool.release_lock(name, "A")
    assert await redis_client.get(name) is None
    assert await pool.hold_lock(name, "B", 30)
    assert await redis_client.get(name) == b"B"


@pytest.mark.contract
async def test_renewal_extends_the_lock_ttl(redis_client):
    pool = Pool(redis_client)
    assert await pool.hold_lock("lock", "A", 1)
    assert 0 < await redis_client.pttl("lock") <= 1000
    assert await pool.hold_lock("lock", "A", 60)
    assert await redis_client.pttl("lock") > 1000


@pytest.mark.contract
async def test_lapsed_lock_is_taken_by_another_owner(redis_client):
    pool = Pool(redis_client)
    assert await pool.hold_lock("lock", "A", 0.05)  # A dies without giving it up

    async def lapsed() -> bool:
        return await redis_client.exists("lock") == 0

    assert await wait_for(lapsed, timeout_s=5)
    assert await pool.hold_lock("lock", "B", 30)
    assert not await pool.hold_lock("lock", "A", 30)


# --- reclaim and put_back ----------------------------------------------------------------------


@pytest.mark.contract
async def test_reclaim_takes_only_expired_leases(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    a = entry("a")
    await pool.lease(a, 10)

    clock.now = 1005.0
    assert not await pool.reclaim(a)  # its caller is still within its lease
    assert await leases_of(redis_client) == [a]
    assert await leased_counter(redis_client) == 1

    clock.now = 1010.5
    assert await pool.reclaim(a)
    assert await leases_of(redis_client) == []
    assert await leased_counter(redis_client) == 0
    assert not await pool.reclaim(a)  # claimed once only
    assert await leased_counter(redis_client) == 0
    # a late release by the caller that "died" does not push it a second time
    assert await pool.release(a) == -1
    assert await redis_client.llen(keys.pool(FN, VERSION)) == 0


@pytest.mark.contract
async def test_reclaim_of_released_lease_is_false(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    a = entry("a")
    await pool.lease(a, 10)
    await pool.release(a)
    clock.now = 2000.0
    assert not await pool.reclaim(a)
    assert await leased_counter(redis_client) == 0


@pytest.mark.contract
async def test_put_back_pushes_exactly_once(redis_client):
    pool = Pool(redis_client)
    a, b = entry("a"), entry("b")
    await pool.lease(b, 30)
    await pool.release(b)

    assert await pool.put_back(a)
    assert await pool.put_back(a)  # a second reaper pass: still one copy

    raw = await redis_client.lrange(keys.pool(FN, VERSION), 0, -1)
    assert [PoolEntry.decode(x) for x in raw] == [b, a]
    assert await redis_client.zscore(keys.idle("m1"), a.encode()) is not None


@pytest.mark.contract
async def test_put_back_refuses_a_retired_version(redis_client):
    pool = Pool(redis_client)
    a = entry("a")
    await pool.retire(FN, VERSION)

    assert not await pool.put_back(a)
    assert await redis_client.llen(keys.pool(FN, VERSION)) == 0
    assert await redis_client.zscore(keys.idle("m1"), a.encode()) is None

"""Admission in the pool's first script (ENTER), on fakeredis and on real Redis.

An invocation takes a token from its key's rate bucket, then a slot among its namespace's
calls in flight, then leases or plans, all in one round trip; RELEASE (or ``exit``) gives the
slot back. Refused requests change nothing but the bucket, and a namespace never has more
slots taken than its limit, nor slots of callers that finished or died long ago.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Admission, Plan, Planned, Pool, plan_miss

pytestmark = pytest.mark.contract

FN = "team-a.fn"
VERSION = 1
NS = "team-a"
KEY = "k1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admission(
    namespace: str = NS, *, limit: int = 10, rate: float = 0.0, burst: int = 1, hold_s: float = 60
) -> Admission:
    return Admission(
        key_id=KEY, rate_per_s=rate, burst=burst, namespace=namespace, namespace_limit=limit,
        hold_s=hold_s,
    )  # fmt: skip


async def enter(
    pool: Pool, token: str, admitted: Admission | None, *, version: int = VERSION, **herd: int
) -> Planned:
    return await pool.acquire_or_plan(
        FN, version, lease_s=30, token=token, max_concurrency=herd.get("max_concurrency", 100),
        waiters_per_start=herd.get("waiters_per_start", 0), start_s=20, wait_s=40,
        admission=admitted,
    )  # fmt: skip


async def idle(pool: Pool, container_id: str) -> PoolEntry:
    """A container of FN idle in its list."""
    entry = PoolEntry(FN, VERSION, "m1", container_id, "127.0.0.1:9000")
    await pool.lease(entry, 30)
    assert await pool.release(entry) == 1
    return entry


async def slots(redis, namespace: str = NS) -> dict[str, float]:
    """The namespace's slots: token -> deadline."""
    held = await redis.zrange(keys.ns_inflight(namespace), 0, -1, withscores=True)
    return {token.decode(): deadline for token, deadline in held}


async def snapshot(redis) -> dict[str, object]:
    """Every key and its contents but the rate buckets, to see that nothing changed."""
    state: dict[str, object] = {}
    for raw in await redis.keys("*"):
        name = raw.decode()
        kind = (await redis.type(name)).decode()
        if name.startswith(keys.BUCKET_PREFIX):
            continue
        if kind == "list":
            state[name] = await redis.lrange(name, 0, -1)
        elif kind == "zset":
            state[name] = await redis.zrange(name, 0, -1, withscores=True)
        elif kind == "hash":
            state[name] = await redis.hgetall(name)
        else:
            state[name] = await redis.get(name)
    return state


# --- slots ---------------------------------------------------------------------------------------


async def test_a_lease_holds_a_slot_until_its_release(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    a = await idle(pool, "a")

    assert await enter(pool, "req", admission(hold_s=45)) == Planned(Plan.LEASE, a)
    assert await slots(redis_client) == {"req": 1045.0}

    assert await pool.release(a, namespace=NS, token="req") == 1
    assert await slots(redis_client) == {}
    assert await redis_client.lrange(keys.pool(FN, VERSION), 0, -1) == [a.encode().encode()]


async def test_a_release_frees_the_slot_even_when_the_lease_is_gone(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    a = await idle(pool, "a")
    assert (await enter(pool, "req", admission())).plan is Plan.LEASE
    clock.now += 31
    assert await pool.reclaim(a)  # the reaper took the container of a caller it thought dead

    assert await pool.release(a, namespace=NS, token="req") == -1
    assert await slots(redis_client) == {}


async def test_a_release_without_a_namespace_leaves_the_slots_alone(redis_client):
    pool = Pool(redis_client, clock=Clock())
    a = await idle(pool, "a")
    assert (await enter(pool, "req", admission())).plan is Plan.LEASE

    assert await pool.release(a) == 1
    assert set(await slots(redis_client)) == {"req"}


@pytest.mark.parametrize("idle_left", [True, False], ids=["would lease", "would plan"])
async def test_a_full_namespace_is_refused_and_nothing_else_changes(redis_client, idle_left):
    pool = Pool(redis_client, clock=Clock())
    for name in ("a", "b", "c")[: 3 if idle_left else 2]:
        await idle(pool, name)
    for token in ("r1", "r2"):
        assert (await enter(pool, token, admission(limit=2))).plan is Plan.LEASE
    before = await snapshot(redis_client)

    assert await enter(pool, "r3", admission(limit=2)) == Planned(Plan.NAMESPACE_FULL)
    # no lease, no starting or waiting token, the list and the slots as they were
    assert await snapshot(redis_client) == before


async def test_exit_frees_its_own_slot_only(redis_client):
    pool = Pool(redis_client, clock=Clock())
    for token in ("r1", "r2"):
        assert (await enter(pool, token, admission(limit=2))).plan is Plan.START
    assert (await enter(pool, "r3", admission(limit=2))).plan is Plan.NAMESPACE_FULL

    await pool.exit(NS, "r1")
    await pool.exit(NS, "r1")  # twice changes nothing
    await pool.exit(NS, "stranger")
    assert set(await slots(redis_client)) == {"r2"}
    assert (await enter(pool, "r3", admission(limit=2))).plan is Plan.START


async def test_the_slot_of_a_caller_that_died_expires_after_hold_s(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    assert (await enter(pool, "dead", admission(limit=1, hold_s=30))).plan is Plan.START

    clock.now = 1029.9
    assert (await enter(pool, "r2", admission(limit=1))).plan is Plan.NAMESPACE_FULL
    clock.now = 1030.0
    assert (await enter(pool, "r2", admission(limit=1))).plan is not Plan.NAMESPACE_FULL
    assert set(await slots(redis_client)) == {"r2"}  # the dead caller's slot is purged


async def test_namespaces_have_slots_of_their_own(redis_client):
    pool = Pool(redis_client, clock=Clock())
    team_a, team_b = admission("team-a", limit=1), admission("team-b", limit=1)
    assert (await enter(pool, "a1", team_a)).plan is Plan.START
    assert (await enter(pool, "b1", team_b)).plan is not Plan.NAMESPACE_FULL
    assert (await enter(pool, "a2", team_a)).plan is Plan.NAMESPACE_FULL

    await pool.exit("team-b", "b1")
    await pool.exit("team-b", "a1")  # a token is only ever looked for in its own namespace
    assert (await enter(pool, "a2", team_a)).plan is Plan.NAMESPACE_FULL
    assert (await enter(pool, "b2", team_b)).plan is not Plan.NAMESPACE_FULL
    assert set(await slots(redis_client, "team-a")) == {"a1"}


async def test_concurrent_callers_never_take_more_slots_than_the_limit(redis_client):
    pool = Pool(redis_client, clock=Clock())
    planned = await asyncio.gather(*(enter(pool, f"r{n}", admission(limit=5)) for n in range(30)))

    refused = [p for p in planned if p.plan is Plan.NAMESPACE_FULL]
    assert (len(planned) - len(refused), len(refused)) == (5, 25)
    assert len(await slots(redis_client)) == 5


# --- the rate bucket -----------------------------------------------------------------------------


async def test_over_the_rate_is_refused_with_retry_after_and_nothing_leased(redis_client):
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    for name in ("a", "b", "c", "d"):
        await idle(pool, name)
    limited = admission(rate=4, burst=2)
    for token in ("r1", "r2"):
        assert (await enter(pool, token, limited)).plan is Plan.LEASE
    before = await snapshot(redis_client)

    refused = await enter(pool, "r3", limited)

    assert (refused.plan, refused.entry) == (Plan.OVER_RATE, None)
    assert refused.retry_after_s == pytest.approx(0.25)  # one token at 4 per second
    assert await snapshot(redis_client) == before  # no slot, no lease, no plan
    assert await redis_client.ttl(keys.bucket(KEY)) > 0  # a bucket of a key gone quiet expires
    clock.now += 0.25
    assert (await enter(pool, "r3", limited)).plan is Plan.LEASE


async def test_the_rate_is_checked_first_and_a_namespace_refusal_still_costs_a_token(
    redis_client,
):
    pool = Pool(redis_client, clock=Clock())
    limited = admission(limit=1, rate=1, burst=2)
    assert (await enter(pool, "r1", limited)).plan is Plan.START
    assert (await enter(pool, "r2", limited)).plan is Plan.NAMESPACE_FULL
    over = await enter(pool, "r3", limited)
    assert over.plan is Plan.OVER_RATE and over.retry_after_s == pytest.approx(1.0)


async def test_rate_zero_skips_the_bucket(redis_client):
    pool = Pool(redis_client, clock=Clock())
    for n in range(20):
        planned = await enter(pool, f"r{n}", admission(rate=0, burst=1))
        assert planned.plan is Plan.START
        await pool.exit(NS, f"r{n}")
    assert await redis_client.exists(keys.bucket(KEY)) == 0


# --- herd control is unchanged by admission ------------------------------------------------------


@pytest.mark.parametrize(
    ("starting", "waiting", "leased", "max_concurrency", "waiters_per_start"),
    [(0, 0, 0, 10, 2), (1, 0, 0, 10, 2), (1, 2, 0, 10, 2), (0, 0, 3, 3, 2), (2, 5, 1, 3, 2)],
)
async def test_a_miss_plans_the_same_with_admission_and_holds_a_slot(
    redis_client, starting, waiting, leased, max_concurrency, waiters_per_start
):
    """Two versions in the same state: one asked with an admission, one without."""
    pool = Pool(redis_client, clock=Clock(1000.0))
    for version in (1, 2):
        await redis_client.hset(keys.fv(FN, version), "leased", leased)
        for n in range(starting):
            await redis_client.zadd(keys.starting(FN, version), {f"s{n}": 1060})
        for n in range(waiting):
            await redis_client.zadd(keys.waiting(FN, version), {f"w{n}": 1060})
    herd = {"max_concurrency": max_concurrency, "waiters_per_start": waiters_per_start}

    without = await enter(pool, "me", None, version=1, **herd)
    admitted = await enter(pool, "me", admission(hold_s=45), version=2, **herd)

    assert without == admitted == Planned(plan_miss(
        starting=starting, waiting=waiting, leased=leased, **herd
    ))  # fmt: skip
    for zset in (keys.starting, keys.waiting):
        one = await redis_client.zrange(zset(FN, 1), 0, -1, withscores=True)
        assert await redis_client.zrange(zset(FN, 2), 0, -1, withscores=True) == one
    assert await slots(redis_client) == {"me": 1045.0}


# --- a property over any sequence of callers -----------------------------------------------------

steps = st.lists(
    st.one_of(
        st.just(("enter", 0.0)),
        st.tuples(st.just("finish"), st.floats(0, 1, exclude_max=True)),
        st.tuples(st.just("tick"), st.sampled_from([1.0, 4.0, 11.0])),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.integers(1, 4), idle_containers=st.integers(0, 3), script=steps)
async def test_slots_are_exactly_those_of_live_unfinished_callers(
    redis_client, limit, idle_containers, script
):
    """Callers enter, finish (release or exit) or die; a slot frees itself after hold_s."""
    await redis_client.flushdb()  # one fixture serves every example
    clock = Clock(1000.0)
    pool = Pool(redis_client, clock=clock)
    for n in range(idle_containers):
        await idle(pool, f"c{n}")
    rules = admission(limit=limit, hold_s=10)
    held: dict[str, tuple[float, PoolEntry | None]] = {}  # unfinished callers: deadline, lease

    for n, (op, arg) in enumerate(script):
        live = {token for token, (deadline, _) in held.items() if deadline > clock.now}
        if op == "enter":
            planned = await enter(pool, f"r{n}", rules)
            assert (planned.plan is Plan.NAMESPACE_FULL) == (len(live) >= limit)
            if planned.plan is not Plan.NAMESPACE_FULL:
                held[f"r{n}"] = (clock.now + 10, planned.entry)
        elif op == "finish" and held:
            token = sorted(held)[int(arg * len(held))]
            _, entry = held.pop(token)
            if entry is not None:
                await pool.release(entry, namespace=NS, token=token)
            else:
                await pool.exit(NS, token)
        elif op == "tick":
            clock.now += arg
        live = {token for token, (deadline, _) in held.items() if deadline > clock.now}
        in_redis = await slots(redis_client)
        assert {token for token, deadline in in_redis.items() if deadline > clock.now} == live
        assert len(live) <= limit
        assert set(in_redis) <= set(held)  # a finished caller's slot is gone at once

"""The scheduler's scripts (shared.schedule_keys through shared.tick_claims), on fakeredis and on
the real Redis: the lease and its fencing token, the claim that checks the fence, the end of a
tick counted once, and the compare-and-set skip of ticks too old to fire."""

from __future__ import annotations

import pytest

from hotpool.shared import schedule_keys as k
from hotpool.shared.tick_claims import TickClaims, fence_of

pytestmark = pytest.mark.contract

LEASE_S = 5.0
TICK = 1_800_000_000.0


def expire_lease(redis):
    """The leader's lease runs out (what its TTL does after a crash or a long pause)."""
    return redis.delete(k.LEADER)


async def test_the_lease_is_taken_once_kept_by_its_holder_and_each_term_has_a_bigger_token(
    redis_client,
):
    claims = TickClaims(redis_client, catch_up_s=300)

    first = await claims.acquire("a", 0, LEASE_S)
    assert (first.outcome, first.token) == ("acquired", 1)
    other = await claims.acquire("b", 0, LEASE_S)
    assert (other.outcome, other.holder, other.leading) == ("held", "a:1", False)
    assert (await claims.acquire("a", 1, LEASE_S)).outcome == "renewed"
    assert 0 < await redis_client.pttl(k.LEADER) <= LEASE_S * 1000

    await expire_lease(redis_client)
    taken = await claims.acquire("b", 0, LEASE_S)
    assert (taken.outcome, taken.token) == ("acquired", 2)
    # the old holder cannot renew a term that ended: it learns who leads instead
    stale = await claims.acquire("a", 1, LEASE_S)
    assert (stale.outcome, stale.holder) == ("held", "b:2")
    assert await claims.leader() == "b:2"
    # a release only lets go of one's own term
    assert not await claims.release(fence_of("a", 1))
    assert await claims.release(fence_of("b", 2))
    assert (await claims.acquire("a", 1, LEASE_S)).token == 3


async def test_a_claim_is_refused_to_a_process_whose_lease_another_took(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    await expire_lease(redis_client)  # "a" is paused past its lease, and still thinks it leads
    await claims.acquire("b", 0, LEASE_S)

    assert (await claims.claim(fence_of("a", 1), "s1", TICK, "rid-a")).outcome == "fenced"
    mine = await claims.claim(fence_of("b", 2), "s1", TICK, "rid-b")
    assert (mine.outcome, mine.request_id) == ("new", "rid-b")
    assert await redis_client.get(k.fire("s1", k.tick_ms(TICK))) == b"pending:rid-b"


async def test_a_pending_claim_goes_to_the_next_leader_with_its_request_id(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    assert (await claims.claim("a:1", "s1", TICK, "rid-a")).outcome == "new"
    await expire_lease(redis_client)  # "a" died between the claim and queueing its event
    await claims.acquire("b", 0, LEASE_S)

    again = await claims.claim("b:2", "s1", TICK, "rid-b")
    assert (again.outcome, again.request_id) == ("pending", "rid-a")
    assert await claims.done("s1", TICK, request_id="rid-a", late_s=1.5)
    # counted once, whoever says so first
    assert not await claims.done("s1", TICK, request_id="rid-a", late_s=2.0)
    assert (await claims.claim("b:2", "s1", TICK, "rid-c")).outcome == "done"

    state = (await claims.states(["s1"]))["s1"]
    assert (state.last_tick, state.fires, state.missed) == (TICK, 1, 0)
    assert (state.last_request_id, state.last_late_s) == ("rid-a", 1.5)
    assert 0 < await redis_client.ttl(k.fire("s1", k.tick_ms(TICK))) <= k.claim_ttl_s(300)


async def test_the_last_tick_only_moves_forward_and_guards_ticks_whose_claims_are_gone(
    redis_client,
):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    for tick in (TICK + 1, TICK + 2):
        assert (await claims.claim("a:1", "s1", tick, f"r{tick}")).outcome == "new"
    for tick in (TICK + 2, TICK + 1):  # ended out of order
        await claims.done("s1", tick, request_id=f"r{tick}", late_s=0.0)
    state = (await claims.states(["s1"]))["s1"]
    assert (state.last_tick, state.fires) == (TICK + 2, 2)

    await redis_client.delete(k.fire("s1", k.tick_ms(TICK)))
    assert (await claims.claim("a:1", "s1", TICK, "late")).outcome == "done"


async def test_a_tick_whose_function_is_gone_is_counted_missed(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    await claims.claim("a:1", "s1", TICK, "r1")
    assert await claims.done("s1", TICK, request_id="r1", late_s=0.0, fired=False)
    assert (await claims.claim("a:1", "s1", TICK, "r2")).outcome == "done"
    await redis_client.hdel(k.state("s1"), "last_tick_ms")
    assert (await claims.claim("a:1", "s1", TICK, "r2")).outcome == "missed"
    state = (await claims.states(["s1"]))["s1"]
    assert (state.fires, state.missed) == (0, 1)


async def test_skipping_old_ticks_is_fenced_and_lands_once(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    before = (await claims.states(["s1"]))["s1"]
    assert before.last_tick is None

    assert await claims.skip("a:1", "s1", before, TICK, 7)
    # the same count from the same reading does not land twice
    assert not await claims.skip("a:1", "s1", before, TICK, 7)
    after = (await claims.states(["s1"]))["s1"]
    assert (after.last_tick, after.missed) == (TICK, 7)

    await expire_lease(redis_client)
    await claims.acquire("b", 0, LEASE_S)
    assert not await claims.skip("a:1", "s1", after, TICK + 10, 3)
    assert (await claims.states(["s1"]))["s1"].missed == 7


async def test_pausing_marks_a_schedule_once_and_the_next_fire_clears_it(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    await claims.acquire("a", 0, LEASE_S)
    await claims.pause(["s1"], 100.0)
    await claims.pause(["s1"], 200.0)
    assert (await claims.states(["s1"]))["s1"].paused_at == 100.0

    await claims.claim("a:1", "s1", TICK, "r1")
    await claims.done("s1", TICK, request_id="r1", late_s=0.0)
    assert (await claims.states(["s1"]))["s1"].paused_at is None


async def test_the_epoch_is_set_once(redis_client):
    claims = TickClaims(redis_client, catch_up_s=300)
    assert await claims.epoch(1000.5) == 1000.5
    assert await claims.epoch(2000.0) == 1000.5

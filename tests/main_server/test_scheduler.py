"""The scheduler (main_server.scheduler) with a fake clock, on fakeredis and on the real Redis:
each tick fires once into the asynchronous queue, as EventBridge's Scheduled Event; two
schedulers that both believe they lead never fire a tick twice; a leader that dies between
claim and queue leaves its tick to the next; old ticks are counted as missed."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from hotpool.main_server.scheduler import Fenced, Scheduler, request_id_of
from hotpool.shared import async_keys, schedule_keys
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.errors import NotFound
from hotpool.shared.models import FunctionConfig, FunctionVersion
from hotpool.shared.schedules import Schedule, event_id
from hotpool.shared.settings import Settings

pytestmark = pytest.mark.contract

T0 = 1_800_000_000.0  # a whole minute
SETTINGS = Settings(scheduler_lease_s=5.0, schedule_catch_up_s=60.0)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Store:
    """The enabled schedules, as SqlScheduleStore.enabled() gives them."""

    def __init__(self, *schedules: Schedule) -> None:
        self.schedules = list(schedules)

    async def enabled(self) -> list[Schedule]:
        return [s for s in self.schedules if s.enabled]

    async def ids(self) -> set[str]:
        return {s.id for s in self.schedules}


class Functions:
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    async def get(self, name: str) -> FunctionVersion:
        if name not in self.names:
            raise NotFound(f"function {name!r} not found")
        return FunctionVersion(name, 1, "sha", "key", FunctionConfig(), datetime.now(UTC))


class CrashingQueue(AsyncQueue):
    """A queue whose next accept never happens: the leader dies between claim and queue."""

    crash_next = False

    async def accept(self, *args, **kwargs):
        if self.crash_next:
            self.crash_next = False
            raise ConnectionError("the leader died here")
        return await super().accept(*args, **kwargs)


@pytest.fixture
async def redis(redis_client):
    """The Redis the schedulers share, its scheduler state begun before T0 (as when Main ran
    before the schedules were made)."""
    await redis_client.set(schedule_keys.EPOCH, repr(T0 - 3600))
    return redis_client


def schedule(expression: str = "rate(1 second)", *, function: str = "fn", **extra) -> Schedule:
    fields = {
        "id": uuid.uuid4().hex, "namespace": "default", "function": function, "name": "tick",
        "expression": expression, "timezone": "UTC", "event": None, "enabled": True,
        "created_at": T0, "updated_at": T0,
    } | extra  # fmt: skip
    return Schedule(**fields)


def scheduler(redis, store, clock, owner, functions=None, queue=None) -> Scheduler:
    return Scheduler(
        SETTINGS,
        redis,
        store,
        queue or AsyncQueue(redis, clock=clock),
        functions or Functions("fn"),
        clock=clock,
        owner=owner,
    )


async def queued(redis) -> list[dict[str, str]]:
    """Every event in the queue's state (one hash per request id)."""
    states = []
    async for key in redis.scan_iter(match=f"{async_keys.INV_PREFIX}*"):
        raw = await redis.hgetall(key)
        states.append({a.decode(): b.decode() for a, b in raw.items()})
    return states


async def stream_entries(redis, namespace: str = "default") -> int:
    return await redis.xlen(async_keys.stream(namespace))


async def test_the_leader_fires_each_tick_once_as_a_scheduled_event(redis):
    clock = Clock(T0 + 3.2)
    every = schedule()
    leader = scheduler(redis, Store(every), clock, "a")

    await leader.turn()
    await leader.turn()  # again at the same time: nothing new is due

    events = sorted(await queued(redis), key=lambda e: float(e["scheduled_time"]))
    assert [float(e["scheduled_time"]) for e in events] == [T0 + 1, T0 + 2, T0 + 3]
    assert await stream_entries(redis) == 3
    first = events[0]
    assert first["trigger"] == "schedule" and first["function"] == "fn"
    assert first["request_id"] == request_id_of(every.id, T0 + 1)
    body = orjson.loads(first["event"])
    assert body["detail-type"] == "Scheduled Event" and body["source"] == "aws.events"
    assert body["time"] == "2027-01-15T08:00:01Z" and body["id"] == event_id(every.id, T0 + 1)
    assert leader.stats.leading and leader.stats.fencing_token == 1
    assert leader.stats.fires == {("default", "fn"): 3}
    assert leader.stats.max_late_s == pytest.approx(2.2)
    state = await leader.state_of(every.id)
    assert (state.last_tick, state.fires, state.missed) == (T0 + 3, 3, 0)


async def test_the_next_turn_is_due_at_the_next_tick_not_after_a_fixed_sleep(redis):
    clock = Clock(T0 + 0.4)
    leader = scheduler(redis, Store(schedule("rate(1 minute)")), clock, "a")
    wait = await leader.turn()
    # the lease is renewed before the tick at T0 + 60 is due
    assert wait == pytest.approx(SETTINGS.scheduler_lease_s / 3)
    clock.now = T0 + 59.5
    assert await leader.turn() == pytest.approx(0.5)


async def test_a_follower_fires_nothing_and_a_fixed_event_is_sent_as_it_is(redis):
    clock = Clock(T0 + 1.5)
    fixed = schedule(event='{"job": "report"}')
    store = Store(fixed)
    leader, follower = (scheduler(redis, store, clock, o) for o in ("a", "b"))
    await leader.turn()
    assert await follower.turn() == pytest.approx(1.0)
    assert not follower.stats.leading and follower.stats.fires == {}
    (event,) = await queued(redis)
    assert event["event"] == '{"job": "report"}'
    assert (await follower.status())["leader"] == "a"


async def test_two_schedulers_that_both_believe_they_lead_never_fire_a_tick_twice(redis):
    clock, clock_a = Clock(T0 + 2.5), Clock(T0 + 2.5)
    store = Store(schedule(), schedule("cron(* * * * ? *)"))
    a, b = scheduler(redis, store, clock_a, "a"), scheduler(redis, store, clock, "b")
    await a.turn()
    # "a" is paused past its lease; "b" takes over and fires on
    await redis.delete(schedule_keys.LEADER)
    clock.now = T0 + 70.5
    await b.turn()
    assert b.stats.fencing_token == 2
    # "a" wakes in the middle of its turn, sure it still leads, its clock 5 s ahead: the ticks
    # it finds due are not claimed yet, and the fence alone refuses them
    clock_a.now = T0 + 75.5
    a._next_at.clear()
    with pytest.raises(Fenced):
        await a._serve_due(clock_a.now)
    # and its next turn finds out who leads
    await a.turn()
    assert not a.stats.leading

    events = await queued(redis)
    ticks = sorted(float(e["scheduled_time"]) for e in events)
    assert len(ticks) == await stream_entries(redis)
    assert max(ticks) == T0 + 70
    assert ticks.count(T0 + 60) == 2  # one per schedule
    clock.now = T0 + 75.5
    await b.turn()
    assert sorted(float(e["scheduled_time"]) for e in await queued(redis))[-5:] == [
        T0 + s for s in range(71, 76)
    ]


async def test_a_leader_cut_off_from_redis_past_its_lease_no_longer_says_it_leads(redis):
    clock = Clock(T0 + 0.5)
    leader = scheduler(redis, Store(), clock, "a")
    await leader.turn()
    leader._unreachable(ConnectionError("a short outage"))
    assert leader.stats.leading
    leader._renewed_at -= SETTINGS.scheduler_lease_s + 0.1
    leader._unreachable(ConnectionError("past the lease"))
    assert not leader.stats.leading and leader.stats.fencing_token == 0


async def test_a_tick_claimed_by_a_leader_that_died_before_queueing_it_fires_once(redis):
    clock = Clock(T0 + 1.5)
    every = schedule()
    store = Store(every)
    crashing = CrashingQueue(redis, clock=clock)
    crashing.crash_next = True
    dying = scheduler(redis, store, clock, "a", queue=crashing)
    with pytest.raises(ConnectionError):
        await dying.turn()
    claim = await redis.get(schedule_keys.fire(every.id, schedule_keys.tick_ms(T0 + 1)))
    assert claim == f"pending:{request_id_of(every.id, T0 + 1)}".encode()
    assert await queued(redis) == []

    await redis.delete(schedule_keys.LEADER)  # its lease runs out
    clock.now = T0 + 3.2
    heir = scheduler(redis, store, clock, "b")
    await heir.turn()
    # a late accept by the dead leader (it was only paused) is a duplicate, not a second event
    again = await AsyncQueue(redis).accept(
        request_id_of(every.id, T0 + 1),
        {"function": "fn", "namespace": "default", "event": "{}"},
        limit=0,
        idempotency_key=f"schedule:{every.id}:{schedule_keys.tick_ms(T0 + 1)}",
    )
    assert again[0].value == "duplicate"

    ticks = sorted(float(e["scheduled_time"]) for e in await queued(redis))
    assert ticks == [T0 + 1, T0 + 2, T0 + 3]
    assert await stream_entries(redis) == 3


async def test_ticks_older_than_the_catch_up_window_are_counted_missed(redis):
    clock = Clock(T0 + 100.5)  # no leader for 100 s; the window is 60 s
    every = schedule()
    leader = scheduler(redis, Store(every), clock, "a")
    await leader.turn()

    ticks = sorted(float(e["scheduled_time"]) for e in await queued(redis))
    assert ticks == [T0 + s for s in range(41, 101)]
    state = await leader.state_of(every.id)
    assert (state.fires, state.missed) == (60, 40)
    assert leader.stats.missed == {("default", "fn"): 40}
    status = await leader.status()
    assert (status["fires"], status["missed"], status["schedules"]) == (60, 40, 1)


async def test_a_tick_of_a_deleted_function_is_counted_missed(redis):
    clock = Clock(T0 + 2.5)
    orphan = schedule(function="gone")
    leader = scheduler(redis, Store(orphan), clock, "a")
    await leader.turn()
    assert await queued(redis) == []
    assert (await leader.state_of(orphan.id)).missed == 2
    assert leader.stats.missed == {("default", "gone"): 2}


async def test_a_disabled_schedule_resumes_from_its_enabling_without_firing_the_gap(redis):
    clock = Clock(T0 + 2.5)
    every = schedule()
    store = Store(every)
    leader = scheduler(redis, store, clock, "a")
    await leader.turn()
    store.schedules = [dataclasses.replace(every, enabled=False)]
    clock.now = T0 + 5
    await leader.turn()
    store.schedules = [dataclasses.replace(every, updated_at=T0 + 20.5)]
    clock.now = T0 + 22.5
    await leader.turn()

    ticks = sorted(float(e["scheduled_time"]) for e in await queued(redis))
    assert ticks == [T0 + 1, T0 + 2, T0 + 21, T0 + 22]
    assert (await leader.state_of(every.id)).missed == 0


async def test_a_redis_that_lost_its_data_fires_nothing_a_second_time(redis, caplog):
    clock = Clock(T0 + 2.5)
    every = schedule()
    leader = scheduler(redis, Store(every), clock, "a")
    await leader.turn()
    await redis.flushdb()  # every claim, state and queued event is gone
    clock.now = T0 + 5.5
    await leader.turn()  # its lease is gone too: a new term
    clock.now = T0 + 7.5
    await leader.turn()

    ticks = sorted(float(e["scheduled_time"]) for e in await queued(redis))
    assert ticks == [T0 + 6, T0 + 7]
    assert "Redis came back without the schedules' state" in caplog.text


async def test_random_pauses_deaths_and_takeovers_fire_every_tick_exactly_once(redis):
    rng = random.Random(16)
    clock = Clock(T0 + 0.5)
    store = Store(schedule(), schedule("rate(3 seconds)"), schedule("* * * * *"))
    queues = [CrashingQueue(redis, clock=clock) for _ in range(3)]
    replicas = [scheduler(redis, store, clock, f"r{i}", queue=q) for i, q in enumerate(queues)]
    for _ in range(300):
        # fakeredis answers without suspending: let the loop (and its guard's heartbeat) run
        await asyncio.sleep(0)
        clock.now += rng.uniform(0.0, 1.5)
        pick = rng.randrange(len(replicas))
        action = rng.random()
        if action < 0.1:
            await redis.delete(schedule_keys.LEADER)  # the leader pauses past its lease
        elif action < 0.2:
            queues[pick].crash_next = True  # dies between a claim and its accept
        elif action < 0.3:
            replicas[pick]._next_at.clear()
            try:  # wakes from a pause mid-turn, sure it leads
                await replicas[pick]._serve_due(clock.now)
            except (Fenced, ConnectionError):
                pass
            continue
        try:
            await replicas[pick].turn()
        except ConnectionError:
            pass
    for replica in replicas:  # settle: whoever leads catches up
        queues[replicas.index(replica)].crash_next = False
        await replica.turn()
    await redis.delete(schedule_keys.LEADER)
    await replicas[0].turn()

    for every in store.schedules:
        expected = list(every.parsed(1).ticks(T0, clock.now))
        fired = sorted(
            float(e["scheduled_time"])
            for e in await queued(redis)
            if e["request_id"] in {request_id_of(every.id, t) for t in expected}
        )
        assert fired == expected
    assert await stream_entries(redis) == len(await queued(redis))


async def test_the_leader_drops_the_state_deleted_schedules_left_and_keeps_the_others(redis):
    clock = Clock(T0 + 2.5)
    kept, disabled, deleted = schedule(), schedule(), schedule()
    store = Store(kept, disabled, deleted)
    leader = scheduler(redis, store, clock, "a")
    await leader.turn()  # all three fire their two ticks: each has a state
    store.schedules = [kept, dataclasses.replace(disabled, enabled=False)]
    clock.now += 2.0  # the next reload pauses the two gone from enabled()
    await leader.turn()
    assert (await leader.claims.states([deleted.id]))[deleted.id].fires == 2

    clock.now += 60.0  # a sweep is due
    await leader.turn()

    states = await leader.claims.states([kept.id, disabled.id, deleted.id])
    assert states[deleted.id].fires == 0 and not await redis.exists(schedule_keys.state(deleted.id))
    assert states[disabled.id].fires == 2  # disabled, not deleted: its state stays
    assert states[kept.id].fires > 2

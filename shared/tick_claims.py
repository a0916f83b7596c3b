"""The scheduler's state in Redis: the leader's lease, the claims of ticks and each schedule's
progress. Every change is one script of ``shared.schedule_keys``; this module runs them and
turns their answers into data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from hotpool.shared import schedule_keys as k
from hotpool.shared.redis_conn import text
from hotpool.shared.schedules import iso_time


@dataclass(frozen=True)
class Lease:
    """The answer to taking or keeping the lease: ``leading`` with ``token``, or the holder."""

    outcome: str  # acquired | renewed | held
    token: int = 0
    holder: str = ""  # owner:token of whoever leads, when held

    @property
    def leading(self) -> bool:
        return self.outcome != "held"


@dataclass(frozen=True)
class Claim:
    """A tick's claim: ``new`` (mine to fire), ``pending`` (claimed before, perhaps by a leader
    that died before queueing its event: fire it again with ``request_id``), ``done``,
    ``missed``, or ``fenced`` (the lease is not mine: stop)."""

    outcome: str
    request_id: str = ""


@dataclass(frozen=True)
class ScheduleState:
    """A schedule's progress as Redis holds it (``hp:sched:state:{id}``)."""

    last_tick: float | None = None
    paused_at: float | None = None
    fires: int = 0
    missed: int = 0
    last_fired: float | None = None
    last_request_id: str = ""
    last_late_s: float = 0.0
    raw_last_tick_ms: str = ""  # as stored, for SKIP's compare-and-set

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> ScheduleState:
        last_ms = raw.get("last_tick_ms", "")
        paused = raw.get("paused_at")
        fired_ms = raw.get("last_fired_ms")
        return cls(
            last_tick=int(last_ms) / 1000 if last_ms else None,
            paused_at=float(paused) if paused else None,
            fires=int(raw.get("fires", "0")),
            missed=int(raw.get("missed", "0")),
            last_fired=int(fired_ms) / 1000 if fired_ms else None,
            last_request_id=raw.get("last_request_id", ""),
            last_late_s=float(raw.get("last_late_s", "0")),
            raw_last_tick_ms=last_ms,
        )

    def progress(self) -> dict[str, Any]:
        """What the schedules API shows of it: the latest tick fired, fires and misses."""
        last = iso_time(self.last_fired) if self.last_fired is not None else None
        return {"last_fired": last, "fires": self.fires, "missed": self.missed}


def fence_of(owner: str, token: int) -> str:
    """The lease's value while ``owner`` leads with ``token``: what CLAIM and SKIP compare."""
    return f"{owner}:{token}"


class TickClaims:
    """The scheduler's scripts over one Redis (shared by every Main replica)."""

    def __init__(self, redis: Redis, *, catch_up_s: float) -> None:
        self._redis = redis
        self._claim_ttl_s = k.claim_ttl_s(catch_up_s)
        register = redis.register_script
        self._acquire = register(k.ACQUIRE)
        self._release = register(k.RELEASE)
        self._claim = register(k.CLAIM)
        self._done = register(k.DONE)
        self._skip = register(k.SKIP)

    async def acquire(self, owner: str, token: int, lease_s: float) -> Lease:
        """Take the lease, or keep it when ``token`` (0: none) is the one it holds."""
        answer = await self._acquire(
            keys=[k.LEADER, k.FENCE],
            args=[owner, str(token) if token else "", max(1, int(lease_s * 1000))],
        )
        outcome = text(answer[0])
        if outcome == "held":
            holder = text(answer[1])
            return Lease("held", int(holder.rsplit(":", 1)[1]), holder)
        return Lease(outcome, int(text(answer[1])))

    async def release(self, fence: str) -> bool:
        return bool(await self._release(keys=[k.LEADER], args=[fence]))

    async def leader(self) -> str | None:
        """``owner:token`` of the replica that leads now, if any."""
        raw = await self._redis.get(k.LEADER)
        return text(raw) if raw is not None else None

    async def claim(self, fence: str, schedule_id: str, tick: float, request_id: str) -> Claim:
        tick_ms = k.tick_ms(tick)
        answer = await self._claim(
            keys=[k.LEADER, k.fire(schedule_id, tick_ms), k.state(schedule_id)],
            args=[fence, request_id, self._claim_ttl_s, tick_ms],
        )
        return Claim(text(answer[0]), text(answer[1]) if len(answer) > 1 else "")

    async def done(
        self, schedule_id: str, tick: float, *, request_id: str, late_s: float, fired: bool = True
    ) -> bool:
        """Record that the tick's event is queued (``fired``) or that it could not be (missed);
        False when it had ended already."""
        tick_ms = k.tick_ms(tick)
        outcome = "done" if fired else "missed"
        return bool(
            await self._done(
                keys=[k.fire(schedule_id, tick_ms), k.state(schedule_id)],
                args=[outcome, tick_ms, request_id, round(late_s, 3), self._claim_ttl_s],
            )
        )

    async def skip(
        self, fence: str, schedule_id: str, state: ScheduleState, until: float, missed: int
    ) -> bool:
        """Move the schedule past ``until``, counting ``missed`` ticks; False when the lease is
        not mine or the state moved since it was read."""
        return bool(
            await self._skip(
                keys=[k.LEADER, k.state(schedule_id)],
                args=[fence, state.raw_last_tick_ms, k.tick_ms(until), missed],
            )
        )

    async def states(self, schedule_ids: Iterable[str]) -> dict[str, ScheduleState]:
        ids = list(schedule_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for schedule_id in ids:
                pipe.hgetall(k.state(schedule_id))
            answers = await pipe.execute()
        return {
            schedule_id: ScheduleState.from_hash({text(a): text(b) for a, b in raw.items()})
            for schedule_id, raw in zip(ids, answers, strict=True)
        }

    async def pause(self, schedule_ids: Iterable[str], now: float) -> None:
        """Note that these schedules are no longer enabled (disabled or deleted): their ticks
        up to their enabling again are not due."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for schedule_id in schedule_ids:
                pipe.hsetnx(k.state(schedule_id), "paused_at", now)
            await pipe.execute()

    async def forget_all_but(self, keep: set[str]) -> int:
        """Drop the state of every schedule not in ``keep`` (deleted ones); how many."""
        gone = []
        async for key in self._redis.scan_iter(match=f"{k.STATE_PREFIX}*", count=1000):
            if text(key).removeprefix(k.STATE_PREFIX) not in keep:
                gone.append(key)
        for start in range(0, len(gone), 500):
            await self._redis.delete(*gone[start : start + 500])
        return len(gone)

    async def epoch(self, now: float) -> float:
        """When the scheduler's state in this Redis began; ``now`` if it begins now."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(k.EPOCH, repr(now), nx=True)
            pipe.get(k.EPOCH)
            _, raw = await pipe.execute()
        return float(text(raw))

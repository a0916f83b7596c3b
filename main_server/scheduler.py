"""The schedule trigger: every Main replica runs a ``Scheduler``; the one holding the Redis lease
fires each tick of each enabled schedule exactly once, into the asynchronous path.

Exactly once, across replicas (the keys and scripts are in ``shared.schedule_keys``):

- the lease carries a fencing token that grows with every new term; a tick is claimed (SET NX
  on its schedule and scheduled time) only while the lease still holds *this* term's token, in
  one script. A replica that still believes it leads after another took over (it was paused, its
  clock is off) is refused the claim: it cannot fire a tick twice.
- a claim is ``pending:{request_id}`` until the event is in the queue, then ``done``. A leader
  that dies in between leaves it pending; the next one queues it again with the same request id
  and idempotency key, so the queue takes it once: no second event, no lost tick.
- ticks come from the expression (``main_server.schedule_ticks``): the clock only says which are
  due. A new leader fires the ticks missed while no one led, as far back as
  ``schedule_catch_up_s``; older ones are counted as missed.

A fire is an asynchronous event with trigger ``schedule`` (retries, dead letters, records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from hotpool.main_server.async_outcome import new_event
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.schedule_ticks import (
    Ticking,
    due_ticks,
    lateness_s,
    max_ticks_per_turn,
    start_of,
)
from hotpool.shared import schedule_keys
from hotpool.shared.async_queue import Accepted, AsyncQueue, new_epoch
from hotpool.shared.errors import HotpoolError, NotFound
from hotpool.shared.models import split_qualified
from hotpool.shared.redis_conn import REDIS_ERRORS
from hotpool.shared.schedules import Schedule, event_body
from hotpool.shared.settings import Settings
from hotpool.shared.tick_claims import ScheduleState, TickClaims, fence_of

log = logging.getLogger(__name__)

# how often the leader reads the enabled schedules again (the API publishes no change)
reload_interval_s = 2.0
# the leader renews its lease this often, as a fraction of the lease
renew_fraction = 1 / 3
# a follower tries to take the lease this often (a fraction of it, at most follow_poll_max_s):
# a dead leader is replaced within its lease plus this
follow_fraction = 1 / 5
follow_poll_max_s = 1.0
# after an error nobody foresaw, or while Redis is unreachable
retry_s = 0.5
# a tick whose event the full queue refused is offered again this much later
queue_full_retry_s = 1.0
# the leader drops the state deleted schedules left in Redis this often
sweep_interval_s = 60.0
# schedules served at once in one turn
max_parallel_schedules = 32
# request ids of fires are derived from the schedule and the tick: one tick, one request id
REQUEST_ID_NAMESPACE = uuid.UUID("5b0e6c0e-6a47-4a59-9f0e-7d1f3c1d0a16")


class EnabledSchedules(Protocol):
    """Where the schedules are (``shared.schedule_store.SqlScheduleStore``)."""

    async def enabled(self) -> list[Schedule]: ...

    async def ids(self) -> set[str]: ...


class Fenced(Exception):
    """The lease went to another replica during this turn."""


@dataclass
class SchedulerStats:
    """What this replica's scheduler did since it started (Prometheus reads it at scrape time)."""

    leading: bool = False
    fencing_token: int = 0  # this replica's term while it leads; 0 otherwise
    schedules: int = 0  # enabled schedules, as the leader last read them
    fires: Counter[tuple[str, str]] = field(default_factory=Counter)  # (namespace, function)
    missed: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_late_s: float = 0.0  # how late the last fire was (fire - tick)
    max_late_s: float = 0.0
    leader_changes: int = 0  # terms this replica began

    def fired(self, key: tuple[str, str], late_s: float) -> None:
        self.fires[key] += 1
        self.last_late_s = late_s
        self.max_late_s = max(self.max_late_s, late_s)


def request_id_of(schedule_id: str, tick: float) -> str:
    """The request id of a tick's event: the same for every leader that fires it."""
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, f"{schedule_id}:{schedule_keys.tick_ms(tick)}"))


class Scheduler:
    """Fires the enabled schedules' ticks while this replica leads."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        store: EnabledSchedules,
        queue: AsyncQueue,
        functions: FunctionService,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        self._functions = functions
        self._clock = clock
        self._notice = notice or (lambda namespace: None)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{new_epoch()[:6]}"
        self.claims = TickClaims(redis, catch_up_s=settings.schedule_catch_up_s)
        self.stats = SchedulerStats()
        self._token = 0
        self._schedules: dict[str, Schedule] = {}
        self._parsed: dict[str, tuple[Schedule, Ticking | None]] = {}
        self._next_at: dict[str, float] = {}  # when each schedule has a tick due, as last seen
        self._loaded_at = -math.inf
        self._swept_at = -math.inf
        self._renewed_at = -math.inf  # monotonic time of the last lease taken or kept
        self._epoch: float | None = None
        self._stopping = False

    @property
    def fence(self) -> str:
        return fence_of(self.owner, self._token)

    async def run_forever(self) -> None:
        """Take turns until ``stop``: lead or follow, fire what is due, sleep until the next."""
        while not self._stopping:
            try:
                delay = await self.turn()
            except REDIS_ERRORS as exc:
                delay = self._unreachable(exc)
            except Exception:
                log.exception("scheduler turn failed; trying again")
                delay = retry_s
            await asyncio.sleep(delay)

    def _unreachable(self, exc: Exception) -> float:
        """Redis is away: past its lease this replica no longer leads (another may by now)."""
        log.warning("scheduler: Redis unreachable (%s); retrying", exc)
        if self._token and time.monotonic() - self._renewed_at > self._settings.scheduler_lease_s:
            log.warning("scheduler: the lease of %s ran out while Redis was away", self.owner)
            self._step_down()
        return retry_s

    async def stop(self, running: asyncio.Task[None]) -> None:
        """Stop firing, and hand the lease back so another replica takes over at once."""
        self._stopping = True
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        if self._token:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.claims.release(self.fence)
            self._step_down()

    async def turn(self) -> float:
        """One turn; how long to wait before the next."""
        lease_s = self._settings.scheduler_lease_s
        asked_at = time.monotonic()
        lease = await self.claims.acquire(self.owner, self._token, lease_s)
        if not lease.leading:
            if self._token:
                log.warning("scheduler: the lease went to %s; following", lease.holder)
            self._step_down()
            return min(lease_s * follow_fraction, follow_poll_max_s)
        self._renewed_at = asked_at  # the lease runs from before it was asked for
        if lease.outcome == "acquired":
            self._begin_term(lease.token)
        now = self._clock()
        if now - self._loaded_at >= reload_interval_s:
            await self._reload(now)
        if now - self._swept_at >= sweep_interval_s:
            await self._sweep(now)
        try:
            next_at = await self._serve_due(now)
        except Fenced:
            self._step_down()
            return 0.0
        wait = min(next_at, self._loaded_at + reload_interval_s) - self._clock()
        return max(0.0, min(wait, lease_s * renew_fraction))

    def _begin_term(self, token: int) -> None:
        self._token = token
        self._next_at.clear()  # what the last leader did is read from Redis, not assumed
        self._loaded_at = -math.inf
        self.stats.leading, self.stats.fencing_token = True, token
        self.stats.leader_changes += 1
        log.info("scheduler: %s leads (fencing token %d)", self.owner, token)

    def _step_down(self) -> None:
        self._token = 0
        self.stats.leading, self.stats.fencing_token = False, 0

    async def _reload(self, now: float) -> None:
        """Read the enabled schedules; the ones gone since the last read are paused."""
        try:
            enabled = {s.id: s for s in await self._store.enabled()}
        except HotpoolError as exc:  # the metadata store is away: fire the ones known
            log.warning("scheduler: could not read the schedules (%s); using the last read", exc)
            self._loaded_at = now
            return
        gone = [i for i in self._schedules if i not in enabled]
        if gone:
            await self.claims.pause(gone, now)
        for schedule_id, schedule in enabled.items():
            known = self._schedules.get(schedule_id)
            if known is None or known.updated_at != schedule.updated_at:
                self._next_at.pop(schedule_id, None)
        self._schedules = enabled
        self._parsed = {i: p for i, p in self._parsed.items() if i in enabled}
        self._next_at = {i: t for i, t in self._next_at.items() if i in enabled}
        self._loaded_at = now
        self.stats.schedules = len(enabled)
        epoch = await self.claims.epoch(now)
        if self._epoch is not None and epoch != self._epoch:
            log.error(
                "scheduler: Redis came back without the schedules' state (no persistence, or a "
                "failover to a replica that had not synced): schedules resume from now; ticks "
                "since the loss are not fired (see the README's exactly-once section)"
            )
        self._epoch = epoch

    async def _sweep(self, now: float) -> None:
        """Drop the Redis state of deleted schedules: a tenant creating and deleting schedules
        again and again must not grow Redis (a state written after the sweep by a fire racing
        the delete goes at the next one)."""
        self._swept_at = now
        try:
            keep = await self._store.ids()
        except HotpoolError as exc:
            log.warning("scheduler: could not read the schedules to sweep (%s)", exc)
            return
        if dropped := await self.claims.forget_all_but(keep):
            log.info("scheduler: dropped the state of %d deleted schedules", dropped)

    async def _serve_due(self, now: float) -> float:
        """Fire every due tick; when the next one is due."""
        due = [s for i, s in self._schedules.items() if self._next_at.get(i, -math.inf) <= now]
        states = await self.claims.states(s.id for s in due)
        gate = asyncio.Semaphore(max_parallel_schedules)

        async def serve(schedule: Schedule) -> None:
            async with gate:
                try:
                    next_at = await self._serve(schedule, states[schedule.id], now)
                except HotpoolError as exc:  # the metadata store is away, say: its claim waits
                    log.warning("schedule %s not fired yet: %s", schedule.name, exc)
                    next_at = self._clock() + retry_s
            self._next_at[schedule.id] = math.inf if next_at is None else next_at

        results = await asyncio.gather(*(serve(s) for s in due), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return min(self._next_at.values(), default=math.inf)

    def _expression(self, schedule: Schedule) -> Ticking | None:
        cached = self._parsed.get(schedule.id)
        if cached is not None and cached[0] is schedule:
            return cached[1]
        try:
            # what the API accepted fires, even if the minimum interval was raised since
            expr: Ticking | None = schedule.parsed(0.0)
        except HotpoolError as exc:
            log.error("schedule %s of %s cannot fire: %s", schedule.name, schedule.function, exc)
            expr = None
        self._parsed[schedule.id] = (schedule, expr)
        return expr

    async def _serve(self, schedule: Schedule, state: ScheduleState, now: float) -> float | None:
        """Fire one schedule's due ticks in order; when to look at it again (None: never)."""
        expr = self._expression(schedule)
        if expr is None:
            return None
        since = start_of(
            last_tick=state.last_tick, paused_at=state.paused_at, created_at=schedule.created_at,
            updated_at=schedule.updated_at, epoch=self._epoch or now,
        )  # fmt: skip
        due = due_ticks(expr, since, now, self._settings.schedule_catch_up_s)
        if due.missed or state.paused_at is not None:
            until = due.last_missed if due.last_missed is not None else since
            if not await self.claims.skip(self.fence, schedule.id, state, until, due.missed):
                return now  # fenced, or the state moved: the next turn reads it again
            if due.missed:
                self.stats.missed[_labels(schedule)] += due.missed
                log.warning(
                    "schedule %s of %s: %d ticks older than the catch-up window "
                    "(HOTPOOL_SCHEDULE_CATCH_UP_S) counted as missed", schedule.name,
                    schedule.function, due.missed,
                )  # fmt: skip
        for tick in due.fire:
            if not await self._fire(schedule, tick):
                return self._clock() + queue_full_retry_s
        if len(due.fire) + due.missed >= max_ticks_per_turn:
            return now  # far behind: the rest next turn
        last = due.fire[-1] if due.fire else due.last_missed
        return expr.next_after(since if last is None else last)

    async def _fire(self, schedule: Schedule, tick: float) -> bool:
        """Claim a tick and queue its event; False when the queue is full (it stays claimed,
        and is offered again)."""
        claim = await self.claims.claim(
            self.fence, schedule.id, tick, request_id_of(schedule.id, tick)
        )
        if claim.outcome == "fenced":
            raise Fenced
        if claim.outcome not in ("new", "pending"):
            return True  # done already
        now = self._clock()
        try:
            fv = await self._functions.get(schedule.function)
        except NotFound:
            await self.claims.done(
                schedule.id, tick, request_id=claim.request_id, late_s=0.0, fired=False
            )
            self.stats.missed[_labels(schedule)] += 1
            log.warning("schedule %s: function %s is gone", schedule.name, schedule.function)
            return True
        fields = new_event(
            fv, event_body(schedule, tick, region=self._settings.function_region).decode(), now,
            trigger="schedule",
            request_id=claim.request_id, schedule=schedule.name, scheduled_time=tick,
        )  # fmt: skip
        settings = self._settings
        outcome, first, _ = await self._queue.accept(
            claim.request_id, fields, limit=settings.async_max_queued_per_namespace,
            idempotency_key=f"schedule:{schedule.id}:{schedule_keys.tick_ms(tick)}",
            # a pending claim may be queued again as long as its tick can still fire
            idempotency_ttl_s=max(
                settings.async_idempotency_ttl_s,
                schedule_keys.claim_ttl_s(settings.schedule_catch_up_s),
            ),
        )  # fmt: skip
        if outcome is Accepted.FULL:
            log.warning(
                "schedule %s: namespace %s has its limit of asynchronous events queued; "
                "tick %s is offered again", schedule.name, fv.namespace, tick,
            )  # fmt: skip
            return False
        late_s = lateness_s(tick, now)
        if await self.claims.done(schedule.id, tick, request_id=first, late_s=late_s):
            self.stats.fired((fv.namespace, fv.short_name), late_s)
        self._notice(fv.namespace)
        return True

    async def state_of(self, schedule_id: str) -> ScheduleState:
        """A schedule's progress (last tick, fires, missed), for its API answer."""
        return (await self.claims.states([schedule_id]))[schedule_id]

    async def status(self) -> dict[str, Any]:
        """The scheduler's part of /system/status: who leads, the schedules and their totals."""
        leader = await self.claims.leader()
        owner, _, token = (leader or "").rpartition(":")
        try:
            schedules = await self._store.enabled()
        except HotpoolError:  # the metadata store is away: the ones this replica last read
            schedules = list(self._schedules.values())
        states = await self.claims.states(s.id for s in schedules)
        return {
            "leader": owner or None,
            "fencing_token": int(token) if token else None,
            "leading_here": self.stats.leading,
            "schedules": len(schedules),
            "fires": sum(s.fires for s in states.values()),
            "missed": sum(s.missed for s in states.values()),
            "fires_here": sum(self.stats.fires.values()),
            "missed_here": sum(self.stats.missed.values()),
            "max_late_s_here": round(self.stats.max_late_s, 3),
            "leader_changes_here": self.stats.leader_changes,
        }


def _labels(schedule: Schedule) -> tuple[str, str]:
    namespace, name = split_qualified(schedule.function)
    return namespace, name

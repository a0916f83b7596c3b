"""Scheduled functions in the chaos run: schedules made through the API before the load, and
the check, from the function's ledger, that every tick of the fault window fired exactly once.

``SCHEDULES`` (config) fire into quick chaos functions, whose handler writes one start and one
end line per Scheduled Event (``"kind": "schedule"``, token = the event id, the schedule's name
and the tick's ``time``). After the load the run waits until the scheduler has fired the last
tick of the window, disables the schedules, and drains their events with the others. Then:

- a tick is *fired* when the ledger has a run of it; *missing* when it has none and its event
  is not in the dead letters (the asynchronous path gave up on it with a reason, which says the
  tick fired but no attempt reached a container);
- a tick fired *twice* has runs with more than one event or request id (a second fire of one
  tick: never allowed); a second run of one event is a *re-delivery* by the asynchronous path,
  allowed only when a fault explains it (``checks.explain_rerun``: a killed container, Manager
  or consumer). The run's Redis restarts from its AOF after a graceful stop and loses nothing,
  so a restart explains no re-run and no missing tick;
- a fire is *late* when the event was accepted more than the lease + ``SCHEDULE_SLACK_S`` after
  its tick, plus the time Redis was away meanwhile (nothing fires without it);
- a succeeded event has exactly one success record with trigger ``schedule``.

The three-replica test (tests/main_server/test_scheduler_replicas.py) uses ``findings``,
``accepted_states``, ``leading_main`` and the same function.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import redis.asyncio

from hotpool.benchmarks.chaos.checks import (
    extra_executions,
    runs_by_token,
    success_records,
    wrong_success_records,
)
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import (
    MAINS,
    SCHEDULE_CATCH_UP_WAIT_S,
    SCHEDULE_SLACK_S,
    SCHEDULER_LEASE_S,
    SCHEDULES,
    HarnessError,
)
from hotpool.main_server.scheduler import request_id_of
from hotpool.shared import async_keys, schedule_keys
from hotpool.shared.redis_conn import REDIS_ERRORS

Tick = tuple[str, float]  # (schedule name, scheduled time)

# ---------------------------------------------------------------------------------------------
# the checks (pure)


def tick_of(iso: str) -> float:
    """A Scheduled Event's ``time`` as unix seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def expected_ticks(name: str, created_at: float, interval_s: float, until: float) -> list[Tick]:
    """The ticks of ``rate(interval_s)`` made at ``created_at``, up to ``until``: anchored at the
    whole second of its creation, the first strictly after it."""
    anchor = math.floor(created_at)
    k = math.floor((created_at - anchor) / interval_s) + 1
    ticks = []
    while anchor + k * interval_s <= until:
        ticks.append((name, anchor + k * interval_s))
        k += 1
    return ticks


def schedule_runs(executions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's start lines of Scheduled Events."""
    return [e for e in executions if e.get("kind") == "schedule" and e.get("phase") == "start"]


@dataclass
class Findings:
    """What the ledger and the queue's states show about the ticks in the window."""

    fired: dict[Tick, list[dict]]  # each expected tick's deliveries
    missing: list[Tick]
    fired_twice: list[Tick]  # ticks delivered as more than one event
    redelivered: list[Tick]  # one event, run again by the asynchronous path
    attempt_twice: list[Tick]  # one attempt of one event delivered twice (never allowed)
    fire_late: dict[Tick, float]  # accepted into the queue - tick
    arrival_late: dict[Tick, float]  # first delivery - tick
    reclaimed: set[Tick]  # events taken from a killed replica's consumer


def findings(
    runs: list[dict], expected: Iterable[Tick], states: Mapping[str, Mapping[str, Any] | None]
) -> Findings:
    """``runs``: the ledger's start lines (``schedule_runs``); ``states``: each event's queue
    state by request id (``accepted_at``; ``reclaimed`` when read from Redis)."""
    by_tick: dict[Tick, list[dict]] = defaultdict(list)
    for run in runs:
        by_tick[(run["schedule"], tick_of(run["time"]))].append(run)
    expected = set(expected)
    fired = {tick: by_tick[tick] for tick in expected if tick in by_tick}

    def state(deliveries: list[dict]) -> Mapping[str, Any]:
        return states.get(deliveries[0]["request_id"]) or {}

    return Findings(
        fired=fired,
        missing=sorted(expected - set(fired)),
        fired_twice=[
            t for t, rs in fired.items() if len({(r["event_id"], r["request_id"]) for r in rs}) > 1
        ],
        redelivered=[t for t, rs in fired.items() if len(rs) > 1],
        attempt_twice=[
            t
            for t, rs in fired.items()
            if len({(r["event_id"], r["request_id"], r["attempt"]) for r in rs}) < len(rs)
        ],
        fire_late={
            t: float(state(rs)["accepted_at"]) - t[1]
            for t, rs in fired.items()
            if "accepted_at" in state(rs)
        },
        arrival_late={t: min(r["start"] for r in rs) - t[1] for t, rs in fired.items()},
        reclaimed={t for t, rs in fired.items() if state(rs).get("reclaimed")},
    )


def redis_outages(events: list[dict[str, Any]], t0: float) -> list[tuple[float, float]]:
    """When Redis was away (unix times): from each stop to the restart that followed it."""
    outages, began = [], None
    for e in events:
        if e["kind"] == "stop_redis":
            began = t0 + e["t"]
        elif e["kind"] == "restarted" and e.get("service") == "redis" and began is not None:
            outages.append((began, t0 + e["t"]))
            began = None
    if began is not None:
        outages.append((began, math.inf))
    return outages


def late_fires(
    fire_late: Mapping[Tick, float],
    outages: list[tuple[float, float]],
    lease_s: float,
    slack_s: float,
) -> dict[Tick, dict[str, float]]:
    """Fires later than allowed: the lease + ``slack_s``, plus every Redis outage that began
    before the fire and ended after the lease before the tick (the leader could not renew)."""
    late = {}
    for (name, tick), delay in fire_late.items():
        fire = tick + delay
        away = sum(b - a for a, b in outages if a <= fire and b >= tick - lease_s)
        allowed = lease_s + slack_s + away
        if delay > allowed:
            late[(name, tick)] = {"late_s": round(delay, 3), "allowed_s": round(allowed, 3)}
    return late


def unfired(
    missing: Iterable[Tick],
    request_ids: Mapping[Tick, str],
    statuses: Mapping[str, dict[str, Any] | None],
    dead_letters: Mapping[str, dict[str, Any]],
) -> tuple[dict[Tick, str], dict[Tick, str]]:
    """The ticks without a run: (dead-lettered -> the reason, missing -> what is known)."""
    dead, lost = {}, {}
    for tick in missing:
        request_id = request_ids[tick]
        letter = dead_letters.get(request_id)
        status = statuses.get(request_id, {"status": "unknown"})
        if letter is not None and letter.get("reason"):
            dead[tick] = letter["reason"]
        else:
            lost[tick] = "never accepted" if status is None else f"event {status.get('status')}"
    return dead, lost


def leading_main(cluster: Cluster, leader: bytes | str | None) -> str | None:
    """The Main whose scheduler holds the lease (its owner is ``host-pid-random:token``)."""
    if leader is None:
        return None
    text = leader.decode() if isinstance(leader, bytes) else leader
    pid = int(text.rsplit(":", 1)[0].rsplit("-", 2)[1])
    return next((n for n, p in cluster.procs.items() if p.pid == pid and cluster.up(n)), None)


async def accepted_states(shared: redis.asyncio.Redis, ids: Iterable[str]) -> dict[str, dict]:
    """The queue's state of each event (accepted_at, reclaimed) by request id, from Redis."""
    states = {}
    for request_id in ids:
        raw = await shared.hgetall(async_keys.inv(request_id))
        states[request_id] = {a.decode(): b.decode() for a, b in raw.items()}
    return states


# ---------------------------------------------------------------------------------------------
# the schedules of the run


class ScheduleLoad:
    """The run's schedules: made before the load, disabled after its last tick fired."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.created_at: dict[str, float] = {}
        self.ids: dict[str, str] = {}  # schedule name -> id (the scheduler's keys name it)
        self.fence_before = 0
        self.fence_after = 0
        self.wait_s = 0.0

    def _url(self, main: int, name: str, function: str) -> str:
        return f"{self.cluster.main_url(main)}/v1/functions/{function}/schedules/{name}"

    async def create(self, http: aiohttp.ClientSession, shared: redis.asyncio.Redis) -> None:
        self.fence_before = int(await shared.get(schedule_keys.FENCE) or 0)
        for name, function, expression, _ in SCHEDULES:
            async with http.put(self._url(0, name, function), json={"expression": expression},
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:  # fmt: skip
                body = await resp.json()
                if resp.status not in (200, 201):
                    raise HarnessError(f"creating schedule {name} failed ({resp.status}): {body}")
            self.created_at[name] = tick_of(body["created_at"])
        # the API shows no id; the scheduler's request ids derive from it
        db = sqlite3.connect(f"file:{self.cluster.run_dir / 'hotpool.db'}?mode=ro", uri=True)
        try:
            self.ids = dict(db.execute("SELECT name, id FROM schedules").fetchall())
        finally:
            db.close()

    def expected(self, until: float) -> list[Tick]:
        return [
            tick
            for name, _, _, interval_s in SCHEDULES
            for tick in expected_ticks(name, self.created_at[name], interval_s, until)
        ]

    def request_ids(self, ticks: Iterable[Tick]) -> dict[Tick, str]:
        """The request id each tick's event has (or would have had)."""
        return {(n, t): request_id_of(self.ids[n], t) for n, t in ticks}

    async def _last_fired(self, http: aiohttp.ClientSession, name: str, function: str) -> float:
        for main in range(MAINS):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                async with http.get(self._url(main, name, function),
                                    timeout=aiohttp.ClientTimeout(total=5)) as resp:  # fmt: skip
                    if resp.status == 200:
                        last = (await resp.json())["last_fired"]
                        return tick_of(last) if last else -math.inf
        return -math.inf

    async def finish(
        self, http: aiohttp.ClientSession, shared: redis.asyncio.Redis, until: float
    ) -> None:
        """Wait (bounded) until every schedule fired its last tick up to ``until``, then
        disable them all, so nothing fires while the run drains and settles."""
        began = time.monotonic()
        last = {name: max((t for n, t in self.expected(until) if n == name), default=-math.inf)
                for name, *_ in SCHEDULES}  # fmt: skip
        pending = list(SCHEDULES)
        while pending and time.monotonic() - began < SCHEDULE_CATCH_UP_WAIT_S:
            fired = await asyncio.gather(*(self._last_fired(http, n, f) for n, f, *_ in pending))
            pending = [s for s, at in zip(pending, fired, strict=True) if at < last[s[0]]]
            if pending:
                await asyncio.sleep(0.5)
        self.wait_s = round(time.monotonic() - began, 2)
        for name, function, expression, _ in SCHEDULES:
            body = {"expression": expression, "enabled": False}
            for main in range(MAINS):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.put(self._url(main, name, function), json=body) as resp:
                        if resp.status == 200:
                            break
        with contextlib.suppress(*REDIS_ERRORS):
            self.fence_after = int(await shared.get(schedule_keys.FENCE) or 0)


# ---------------------------------------------------------------------------------------------
# the report


def schedule_report(
    load: ScheduleLoad,
    *,
    until: float,
    executions: list[dict[str, Any]],
    statuses: Mapping[str, dict[str, Any] | None],
    dead_letters: Mapping[str, dict[str, Any]],
    records: Mapping[str, dict[str, Any]],
    events: list[dict[str, Any]],
    faults: list[dict[str, Any]],
    t0: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary's sched_* counts and the details behind them. ``faults``: the kills that can
    make an event run again (``async_audit.fault_windows``)."""
    expected = load.expected(until)
    request_ids = load.request_ids(expected)
    found = findings(schedule_runs(executions), expected, statuses)
    dead, lost = unfired(found.missing, request_ids, statuses, dead_letters)
    tokens = {rs[0]["event_id"] for rs in found.fired.values()}
    runs = {t: rs for t, rs in runs_by_token(executions).items() if t in tokens}
    explained, unexplained = extra_executions(runs, faults)
    by_cause = Counter(why for reasons in explained.values() for why in reasons)
    outages = redis_outages(events, t0)
    late = late_fires(found.fire_late, outages, SCHEDULER_LEASE_S, SCHEDULE_SLACK_S)
    calm = [v for t, v in found.fire_late.items() if not _near(t, v, outages)]
    succeeded = {
        request_ids[t]: rs[0]["event_id"] for t, rs in found.fired.items()
        if (statuses.get(request_ids[t]) or {}).get("status") == "succeeded"
    }  # fmt: skip
    counts = success_records(records.values(), trigger="schedule")
    records_wrong = wrong_success_records(succeeded, counts, explained)
    summary = {
        "sched_schedules": len(SCHEDULES),
        "sched_ticks": len(expected),
        "sched_fired": len(found.fired),
        "sched_dead_lettered": len(dead),
        "sched_missing": len(lost),
        "sched_duplicates": len(found.fired_twice),
        "sched_redeliveries": sum(by_cause.values()),
        "sched_redeliveries_by_cause": dict(by_cause),
        "sched_unexplained": len(unexplained),
        "sched_attempt_twice": len(found.attempt_twice),
        "sched_fires_unseen": len(found.fired) - len(found.fire_late),
        "sched_late": len(late),
        "sched_lease_s": SCHEDULER_LEASE_S,
        "sched_fire_delay_max_s": round(max(found.fire_late.values(), default=0.0), 3),
        "sched_fire_delay_max_s_redis_up": round(max(calm, default=0.0), 3),
        "sched_arrival_delay_max_s": round(max(found.arrival_late.values(), default=0.0), 3),
        "sched_records_wrong": len(records_wrong),
        "sched_leader_terms": load.fence_after - load.fence_before,
        "sched_leader_kills": len([e for e in events if e["kind"] == "kill_main" and e["leader"]]),
        "sched_wait_s": load.wait_s,
    }
    details = {
        "sched_missing": {f"{n} {t}": why for (n, t), why in list(lost.items())[:20]},
        "sched_dead_lettered": {f"{n} {t}": why for (n, t), why in list(dead.items())[:20]},
        "sched_duplicates": {f"{n} {t}": found.fired[(n, t)] for n, t in found.fired_twice[:10]},
        "sched_unexplained": unexplained[:20],
        "sched_late": {f"{n} {t}": v for (n, t), v in list(late.items())[:20]},
        "sched_records_wrong": records_wrong,
        "sched_worst_fires": [
            {
                "schedule": n,
                "tick_t": round(t - t0, 2),
                "late_s": round(v, 3),
                "redis_away": _near((n, t), v, outages),
            }
            for (n, t), v in sorted(found.fire_late.items(), key=lambda item: -item[1])[:5]
        ],
        # the asynchronous path's share: the queue under the run's async load, reclaims
        "sched_worst_arrivals": [
            {
                "schedule": n,
                "tick_t": round(t - t0, 2),
                "late_s": round(v, 3),
                "runs": len(found.fired[(n, t)]),
            }
            for (n, t), v in sorted(found.arrival_late.items(), key=lambda item: -item[1])[:3]
        ],
    }
    return summary, details


def _near(tick: Tick, delay: float, outages: list[tuple[float, float]]) -> bool:
    """Redis was away between the lease before the tick and its fire."""
    return any(a <= tick[1] + delay and b >= tick[1] - SCHEDULER_LEASE_S for a, b in outages)

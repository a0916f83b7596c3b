"""The run's report: the invariant counts over the load, the ledger, the records and the
pool, and the summary printed for people."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hotpool.benchmarks.chaos.checks import (
    find_duplicates,
    find_overlaps,
    killed_under,
    runs_by_token,
)
from hotpool.benchmarks.chaos.cluster import Bootstrap
from hotpool.benchmarks.chaos.config import BREAKS, Fault
from hotpool.benchmarks.chaos.faults import Chaos
from hotpool.benchmarks.chaos.load import Load, Outcome
from hotpool.benchmarks.chaos.observe import Observer, PoolState
from hotpool.benchmarks.chaos.stream_load import StreamLoad, stream_report
from hotpool.benchmarks.chaos.ws_load import WsLoad, ws_report

# ---------------------------------------------------------------------------------------------
# the report


def build_report(
    *, seed: int, t0: float, load_done: float, settle_s: float, load: Load,
    observer: Observer, chaos: Chaos, faults: list[Fault], versions: dict[str, int],
    state: PoolState | None, analysis: dict, records: dict[str, dict],
    orphans: list[Bootstrap], untracked: dict[str, list[str]],
    executions: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    outcomes = load.outcomes
    by_token = {o.token: o for o in outcomes}
    failed = Counter(o.cause for o in outcomes if not o.ok)
    # a start line is a delivery (even if the container died under it); an end line a call
    # that ran to completion. "Never run twice" is the synchronous calls' rule; an asynchronous
    # event may run again when a fault explains it (async_audit)
    async_tokens = {s.token for s in load.async_sent}
    every_start = [e for e in executions if e.get("phase") == "start"]
    starts = [
        e for e in every_start if e["token"] not in async_tokens and e.get("kind") != "schedule"
    ]
    ends = [e for e in executions if e.get("phase") == "end"]
    duplicates = find_duplicates(starts)
    overlaps = find_overlaps(ends)
    cut_short = {e["token"] for e in starts} - {e["token"] for e in ends}
    wrong_version = [
        e for e in every_start
        if str(versions.get(e["function"])) != e["version"]
        or (e["token"] in by_token and by_token[e["token"]].function != e["function"])
    ]  # fmt: skip
    records_missing = [o for o in outcomes if o.answered_by_container
                       and o.request_id not in records]  # fmt: skip
    missing_ids = {o.request_id for o in records_missing}
    lost_with_main, unrecorded = [], []
    for e in starts:
        if e.get("kind") or e["request_id"] in records or e["request_id"] in missing_ids:
            continue  # a stream's or a WebSocket event's: stream_load and ws_load check those
        outcome = by_token.get(e["token"])
        if outcome is not None and killed_under(outcome, observer.events, t0):
            lost_with_main.append(e)
        else:
            unrecorded.append(e)
    # the pool handed out a container that was still running a call: the bootstrap refused
    # it (409 Busy), so invariant 1 held only thanks to the container's own guard
    handed_busy = [o for o in outcomes if "answered 409" in o.message]
    counters = observer.counters.total()
    containers = set(observer.seen_containers)
    containers.update(r["container_id"] for r in records.values() if r.get("container_id"))
    containers.update(e["container"] for e in every_start)
    broken = {
        "leaked": len(analysis.get("leaked", [])) if state is not None else -1,
        "stale_entries": len(analysis.get("stale_entries", [])) if state is not None else -1,
        "double_placed": len(analysis.get("double_placed", [])),
        "duplicates": len(duplicates),
        "overlaps": len(overlaps),
        "records_missing": len(records_missing),
        "executed_unrecorded": len(unrecorded),
        "wrong_version": len(wrong_version),
        "wrong_result": failed.get("wrong_result", 0),
        "orphan_processes": len(orphans),
        "untracked_processes": sum(int(v[0].split()[0]) for v in untracked.values()),
        "handed_busy": len(handed_busy),
    }
    summary = {
        "sent": len(outcomes),
        "succeeded": sum(o.ok for o in outcomes),
        "failed_by_cause": dict(failed.most_common()),
        "containers_started": len(containers),
        **broken,
        "sent_to_dead": counters.get("sent_to_dead", 0),
        "lost_with_killed_main": len(lost_with_main),
        "executions": len(ends),
        "executions_cut_short": len(cut_short),
        "records": len(records),
        "cold_starts": counters.get("cold_starts", 0),
        "main_counters": dict(sorted(counters.items())),
        "faults": dict(chaos.done),
        "settle_s": settle_s,
        "seed": seed,
        "invariant_breaks": sorted(k for k in BREAKS if broken.get(k, 0) != 0),
        "harness_errors": chaos.harness_errors,
    }
    details = {
        "events": observer.events,
        "planned": [f.__dict__ for f in faults],
        "leaked": [_container_story(cid, observer, state) for cid in analysis.get("leaked", [])],
        "stale_entries": analysis.get("stale_entries", []),
        "double_placed": analysis.get("double_placed", []),
        "unregistered": analysis.get("unregistered", []),
        "duplicates": {t: es for t, es in list(duplicates.items())[:20]},
        "overlaps": overlaps[:20],
        "records_missing": [_outcome_story(o, t0) for o in records_missing[:20]],
        "executed_unrecorded": unrecorded[:20],
        "orphans": [b.__dict__ for b in orphans],
        "untracked": untracked,
        "handed_busy": [_outcome_story(o, t0) for o in handed_busy[:20]],
        "samples": _samples(outcomes, t0),
        "load_s": round(load_done - t0, 2),
        "managers_unreachable": state.unreachable if state else None,
    }
    details["t0"] = t0
    return {"summary": summary, "details": details}


def trigger_report(
    streams: StreamLoad, sockets: WsLoad, executions: list[dict[str, Any]],
    records: dict[str, dict], events: list[dict[str, Any]], t0: float, main_of: dict[str, int],
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The streamed calls' and the WebSocket messages' counts, and the details behind them."""
    runs = runs_by_token(executions)
    stream_summary, stream_details = stream_report(streams.sent, runs, records, events, t0)
    ws_summary, ws_details = ws_report(sockets, runs, records, events, t0, main_of)
    return {**stream_summary, **ws_summary}, {**stream_details, **ws_details}


def write_jsonl(path: Path, rows: Iterable[Any], t0: float) -> None:
    """Every request as its client saw it (dataclasses), for digging into a broken run."""
    with open(path, "w") as out:
        for o in rows:
            out.write(json.dumps({**o.__dict__, "sent_t": round(o.sent_at - t0, 3),
                                  "done_t": round(o.done_at - t0, 3)}) + "\n")  # fmt: skip


def _container_story(cid: str, observer: Observer, state: PoolState | None) -> dict[str, Any]:
    seen = observer.seen_containers.get(cid, {})
    described = state.described.get(cid, {}) if state else {}
    return {
        "container": cid,
        "manager": described.get("manager"),
        "entry": described.get("entry"),
        "first_seen_t": seen.get("first_seen_t"),
        "last_placed_t": observer.last_placed.get(cid),
        "in_hash": state is not None and cid in state.registered.get(described.get("manager"), ()),
    }


def _outcome_story(o: Outcome, t0: float) -> dict[str, Any]:
    return {
        "token": o.token, "request_id": o.request_id, "main": o.main, "status": o.status,
        "cause": o.cause, "sent_t": round(o.sent_at - t0, 2), "done_t": round(o.done_at - t0, 2),
    }  # fmt: skip


def _samples(outcomes: list[Outcome], t0: float) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if not o.ok and len(samples[o.cause]) < 3:
            sample = f"t={o.sent_at - t0:.2f}..{o.done_at - t0:.2f} main{o.main} {o.message}"
            samples[o.cause].append(sample[:240])
    return dict(samples)


def print_summary(report: dict[str, Any]) -> None:
    s, d = report["summary"], report["details"]
    out = print
    out(f"hotpool chaos run: seed {s['seed']}, load {d['load_s']} s, total {s['duration_s']} s")
    out("timeline (seconds since the load started):")
    for e in d["events"]:
        rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind"))
        out(f"  t={e['t']:>7.2f}  {e['kind']:<16} {rest}")
    out(f"requests: {s['sent']} sent, {s['succeeded']} succeeded")
    for cause, n in s["failed_by_cause"].items():
        out(f"  {n:>6}  {cause}")
        for sample in d["samples"].get(cause, []):
            out(f"            e.g. {sample}")
    out(
        f"calls completed: {s['executions']} (cut short: {s['executions_cut_short']}); "
        f"records: {s['records']}; containers seen: "
        f"{s['containers_started']}; cold starts: {s['cold_starts']}; "
        f"sent_to_dead: {s['sent_to_dead']}; lost with a killed Main: "
        f"{s['lost_with_killed_main']}; settled in {s['settle_s']} s"
    )
    out(f"Main counters (banked across restarts): {s['main_counters']}")
    out(
        f"async events: {s['async_accepted']} accepted of {s['async_sent']} "
        f"{s['async_not_accepted']}; {s['async_succeeded']} succeeded, "
        f"{s['async_dead_lettered']} dead-lettered, {s['async_lost']} lost; extra executions "
        f"{s['async_extra_executions']} {s['async_extra_by_cause']}; "
        f"drained in {s['async_drain_s']} s"
    )
    out(
        f"streams: {s['streams_sent']} sent, {s['streams_completed']} completed, "
        f"{s['streams_aborted_by_client']} left by their client (generator closed at most "
        f"{s['stream_abort_close_max_s']} s later); others {s['streams_failed_by_cause']}"
    )
    out(
        f"websocket: {s['ws_connections']} connections (refused {s['ws_connect_failures']}), "
        f"{s['ws_messages_answered']} of {s['ws_messages_sent']} messages answered, others "
        f"{s['ws_messages_failed_by_cause']}; {s['ws_drops']} drops, {s['ws_drops_after_kill']} "
        f"after a Main kill; reconnected elsewhere {s['ws_reconnects_elsewhere']} "
        f"(at most {s['ws_reconnect_max_s']} s later)"
    )
    out(
        f"schedules: {s['sched_ticks']} ticks of {s['sched_schedules']} schedules in the fault "
        f"window, {s['sched_fired']} fired, {s['sched_missing']} missing, "
        f"{s['sched_dead_lettered']} dead-lettered unrun, {s['sched_duplicates']} fired twice; "
        f"{s['sched_redeliveries']} re-deliveries {s['sched_redeliveries_by_cause']}, "
        f"{s['sched_unexplained']} unexplained; worst fire delay {s['sched_fire_delay_max_s']} s "
        f"({s['sched_fire_delay_max_s_redis_up']} s with Redis up; lease {s['sched_lease_s']} s), "
        f"worst arrival {s['sched_arrival_delay_max_s']} s; {s['sched_leader_terms']} leader "
        f"terms, {s['sched_leader_kills']} leaders killed"
    )
    out(f"  latest schedule fires: {d['sched_worst_fires']}")
    out(f"  latest schedule arrivals: {d['sched_worst_arrivals']}")
    out(f"runtimes ({s['killed_calls']} calls cut short by container kills):")
    for runtime, r in s["by_runtime"].items():
        out(
            f"  {runtime:<9} {r['sent']} sent, {r['succeeded']} succeeded, {r['executions']} "
            f"executions in {r['containers']} containers; kills {r['kills']}, calls they cut "
            f"short recorded as {r['killed_calls']}; pool {r['pool']}; others "
            f"{r['failed_by_cause']}"
        )
    for name in BREAKS:
        flag = "BROKEN" if s[name] else "ok"
        out(f"  {name:<27} {s[name]:>5}  {flag}")
    for key in ("leaked", "stale_entries", "double_placed", "records_missing",
                "executed_unrecorded", "orphans", "handed_busy"):  # fmt: skip
        for item in d[key][:10]:
            out(f"  {key}: {item}")
    for key in ("async_lost", "async_unexplained", "async_wrong_result",
                "async_success_records_wrong", "stream_records_wrong", "stream_bodies_wrong",
                "stream_aborts_ignored", "ws_records_missing", "ws_duplicates",
                "ws_wrong_replies", "ws_kills_unnoticed", "ws_drops_unexplained",
                "sched_missing", "sched_duplicates", "sched_unexplained", "sched_late",
                "sched_records_wrong", "killed_calls_wrong", "wrong_runtime"):  # fmt: skip
        found = d[key]
        for item in list(found.items() if isinstance(found, dict) else found)[:10]:
            out(f"  {key}: {item}")
    for manager_id, ids in d["untracked"].items():
        out(f"  untracked on {manager_id}: {ids}")
    if d["unregistered"]:
        out(f"  ready containers missing from hp:containers:* hashes: {len(d['unregistered'])}")
    for token, runs in list(d["duplicates"].items())[:10]:
        out(f"  duplicate {token}: {runs}")
    for a, b in d["overlaps"][:10]:
        out(f"  overlap: {a} / {b}")
    for error in s["harness_errors"]:
        out(f"  harness error: {error}")

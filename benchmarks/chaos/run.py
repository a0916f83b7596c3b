"""Deploy, run, settle, report: the whole chaos run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.async_audit import (
    async_report,
    drain,
    fetch_dead_letters,
    fetch_statuses,
    managers_of,
    merge_async,
)
from hotpool.benchmarks.chaos.checks import (
    find_duplicates,
    find_overlaps,
    gather_records,
    killed_under,
    read_executions,
    settle,
)
from hotpool.benchmarks.chaos.cluster import Bootstrap, Cluster, bootstrap_processes
from hotpool.benchmarks.chaos.config import (
    ALL_FUNCTIONS,
    ASYNC_DRAIN_MAX_S,
    BREAKS,
    FUNCTION_DIR,
    FUNCTION_TIMEOUT_S,
    FUNCTIONS,
    MAINS,
    MANAGERS,
    START_TIMEOUT_S,
    Fault,
    HarnessError,
    Profile,
    plan_faults,
    profile_for,
)
from hotpool.benchmarks.chaos.faults import Chaos
from hotpool.benchmarks.chaos.load import Load, Outcome
from hotpool.benchmarks.chaos.observe import Observer, PoolState
from hotpool.shared.packages import zip_directory

# ---------------------------------------------------------------------------------------------
# the run


async def deploy(cluster: Cluster, http: aiohttp.ClientSession) -> dict[str, int]:
    package = zip_directory(FUNCTION_DIR)
    versions = {}
    for function in ALL_FUNCTIONS:
        params = {
            "timeout_s": str(FUNCTION_TIMEOUT_S[function]),
            "env": json.dumps({"CHAOS_LOG": str(cluster.exec_log)}),
        }
        async with http.put(
            f"{cluster.main_url(0)}/v1/functions/{function}", data=package, params=params,
            headers={"Content-Type": "application/zip"}, timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:  # fmt: skip
            body = await resp.json()
            if resp.status not in (200, 201):
                raise HarnessError(f"deploying {function} failed ({resp.status}): {body}")
            versions[function] = int(body["version"])
    return versions


async def wait_managers_online(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with http.get(cluster.main_url(0) + "/system/status") as resp:
                if resp.status == 200 and (await resp.json())["managers_online"] == MANAGERS:
                    return
        await asyncio.sleep(0.2)
    raise HarnessError("the Managers did not all register within the start-up bound")


async def start_cluster(cluster: Cluster) -> None:
    await cluster.start_redis()
    await cluster.migrate()
    await asyncio.gather(
        *(cluster.start_manager(i) for i in range(MANAGERS)),
        *(cluster.start_main(i) for i in range(MAINS)),
    )


async def run(cluster: Cluster, seed: int, profile: Profile) -> dict[str, Any]:
    await start_cluster(cluster)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=cluster.headers) as http:
        await wait_managers_online(cluster, http)
        versions = await deploy(cluster, http)
        t0 = time.time()
        load = Load(cluster, seed, t0)
        observer = Observer(cluster, http, t0)
        chaos = Chaos(cluster, observer, load, t0)
        try:
            # one call per function and Main before any fault: the system works at all
            await asyncio.gather(*(load.one(http, f, m) for f in FUNCTIONS for m in range(MAINS)))
            if not any(o.ok for o in load.outcomes):
                raise HarnessError(f"no warm-up call succeeded: {load.outcomes[0]}")
            faults = plan_faults(seed, profile.load_s, profile.container_kills)
            stop_at = time.time() + profile.load_s
            stop_observing = asyncio.Event()
            observing = asyncio.create_task(observer.run(stop_observing))
            try:
                await asyncio.gather(load.run(http, stop_at), chaos.run(faults, stop_at))
            finally:
                stop_observing.set()
                await observing
            load_done = time.time()
            # the events still queued run on: they hold leases until they end
            accepted = [s.request_id for s in load.async_sent if s.accepted]
            _, drain_s = await drain(cluster, http, accepted, ASYNC_DRAIN_MAX_S)
            state, analysis, settle_s = await settle(observer, profile.settle_max_s)
            await asyncio.sleep(0.5)  # record flush interval (0.2 s) with margin
            await asyncio.gather(*(observer.poll_main(i) for i in range(MAINS)))
            records = await gather_records(cluster, http)
            orphans = [
                b for b in await asyncio.to_thread(bootstrap_processes, cluster.run_dir)
                if b.ppid not in cluster.manager_pids()
            ]  # fmt: skip
            untracked = await observer.untracked_processes()
            # every request as the client saw it, for digging into a broken run
            await asyncio.to_thread(_write_outcomes, cluster.run_dir / "outcomes.jsonl", load, t0)
            executions = read_executions(cluster.exec_log)
            report = build_report(
                seed=seed, t0=t0, load_done=load_done, settle_s=settle_s, load=load,
                observer=observer, chaos=chaos, faults=faults, versions=versions,
                state=state, analysis=analysis, records=records, orphans=orphans,
                untracked=untracked, executions=executions,
            )  # fmt: skip
            async_summary, async_details = async_report(
                sent=load.async_sent, statuses=await fetch_statuses(cluster, http, accepted),
                dead_letters=await fetch_dead_letters(cluster, http), executions=executions,
                records=records, events=observer.events, t0=t0, drain_s=drain_s,
                managers_of=managers_of(observer, records),
            )  # fmt: skip
            return merge_async(report, async_summary, async_details)
        finally:
            await observer.close()


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
    starts = [e for e in every_start if e["token"] not in async_tokens]
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
        if e["request_id"] in records or e["request_id"] in missing_ids:
            continue
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


def _write_outcomes(path: Path, load: Load, t0: float) -> None:
    with open(path, "w") as out:
        for o in load.outcomes:
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
    for name in BREAKS:
        flag = "BROKEN" if s[name] else "ok"
        out(f"  {name:<20} {s[name]:>5}  {flag}")
    for key in ("leaked", "stale_entries", "double_placed", "records_missing",
                "executed_unrecorded", "orphans", "handed_busy"):  # fmt: skip
        for item in d[key][:10]:
            out(f"  {key}: {item}")
    for key in ("async_lost", "async_unexplained", "async_wrong_result",
                "async_success_records_wrong"):  # fmt: skip
        for item in list(d[key])[:10]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 45 s in all")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration-s", type=float, default=None, help="load phase length")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    profile = profile_for(args.quick, args.duration_s)
    began = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="hotpool-chaos-"))
    # SIGTERM unwinds like Ctrl-C, so the finally below stops everything we started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cluster = Cluster(run_dir)
    report = None
    code = 2
    try:
        report = asyncio.run(run(cluster, seed, profile))
    except HarnessError as exc:
        print(f"chaos: harness failure: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("chaos: interrupted; stopping everything", file=sys.stderr)
        code = 130
    finally:
        cluster.teardown()
    if report is not None:
        summary = report["summary"]
        summary["duration_s"] = round(time.monotonic() - began, 2)
        code = 1 if summary["invariant_breaks"] else 0
        if summary["succeeded"] == 0 or summary["harness_errors"]:
            code = max(code, 2)
        if code or args.keep:
            (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
            summary["run_dir"] = str(run_dir)
        print_summary(report)
    if code == 0 and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif report is None:
        print(f"chaos: logs kept in {run_dir}", file=sys.stderr)
    if report is not None:
        print(json.dumps(report["summary"], sort_keys=False), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

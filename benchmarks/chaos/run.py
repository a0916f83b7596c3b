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
from pathlib import Path
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.async_audit import (
    async_report,
    drain,
    fault_windows,
    fetch_dead_letters,
    fetch_statuses,
    managers_of,
    merge_async,
)
from hotpool.benchmarks.chaos.checks import gather_records, read_executions, runs_by_token, settle
from hotpool.benchmarks.chaos.cluster import Cluster, orphan_processes
from hotpool.benchmarks.chaos.config import (
    ALL_FUNCTIONS,
    ASYNC_DRAIN_MAX_S,
    FUNCTION_DIR,
    FUNCTION_TIMEOUT_S,
    FUNCTIONS,
    MAINS,
    MANAGERS,
    RUNTIME_FUNCTIONS,
    RUNTIME_OF,
    RUNTIMES,
    START_TIMEOUT_S,
    HarnessError,
    Profile,
    plan_faults,
    profile_for,
)
from hotpool.benchmarks.chaos.faults import Chaos
from hotpool.benchmarks.chaos.load import Load
from hotpool.benchmarks.chaos.observe import Observer
from hotpool.benchmarks.chaos.report import build_report, print_summary, trigger_report, write_jsonl
from hotpool.benchmarks.chaos.runtime_audit import runtime_report, settled_pools
from hotpool.benchmarks.chaos.schedule_audit import ScheduleLoad, schedule_report
from hotpool.benchmarks.chaos.stream_load import StreamLoad
from hotpool.benchmarks.chaos.ws_load import WsLoad
from hotpool.shared.packages import zip_directory

# ---------------------------------------------------------------------------------------------
# the run


async def deploy(cluster: Cluster, http: aiohttp.ClientSession) -> dict[str, int]:
    packages = {FUNCTION_DIR: zip_directory(FUNCTION_DIR)}
    versions = {}
    for function in ALL_FUNCTIONS:
        runtime, folder, handler = RUNTIME_FUNCTIONS.get(function, ("python", FUNCTION_DIR, None))
        params = {
            "runtime": runtime,
            "timeout_s": str(FUNCTION_TIMEOUT_S.get(function, FUNCTION_TIMEOUT_S[FUNCTIONS[0]])),
            "env": json.dumps({"CHAOS_LOG": str(cluster.exec_log)}),
            "websocket": "key",  # the WebSocket clients connect with the admin key
            **({"handler": handler} if handler else {}),
        }
        package = packages.get(folder) or packages.setdefault(folder, zip_directory(folder))
        async with http.put(
            f"{cluster.main_url(0)}/v1/functions/{function}", data=package, params=params,
            headers={"Content-Type": "application/zip"}, timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:  # fmt: skip
            body = await resp.json()
            if resp.status not in (200, 201):
                raise HarnessError(f"deploying {function} failed ({resp.status}): {body}")
            versions[function] = int(body["version"])
    return versions


async def warm_up(load: Load, http: aiohttp.ClientSession) -> None:
    """One call per function and Main before any fault: every runtime works at all."""
    functions = (*FUNCTIONS, *RUNTIME_FUNCTIONS)
    await asyncio.gather(*(load.one(http, f, m) for f in functions for m in range(MAINS)))
    for runtime in RUNTIMES:
        tried = [o for o in load.outcomes if RUNTIME_OF[o.function] == runtime]
        if not any(o.ok for o in tried):
            raise HarnessError(f"no warm-up call of the {runtime} runtime succeeded: {tried[0]}")


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
        streams, sockets = StreamLoad(cluster, seed), WsLoad(cluster, seed)
        observer = Observer(cluster, http, t0)
        chaos = Chaos(cluster, observer, load, t0)
        schedules = ScheduleLoad(cluster)
        try:
            await schedules.create(http, observer.redis)
            await warm_up(load, http)
            faults = plan_faults(seed, profile.load_s, profile.container_kills)
            stop_at = time.time() + profile.load_s
            stop_observing = asyncio.Event()
            observing = asyncio.create_task(observer.run(stop_observing))
            try:
                await asyncio.gather(
                    load.run(http, stop_at), streams.run(http, stop_at),
                    sockets.run(http, stop_at), chaos.run(faults, stop_at),
                )  # fmt: skip
            finally:
                stop_observing.set()
                await observing
            load_done = time.time()
            await schedules.finish(http, observer.redis, until=load_done)
            # the events still queued run on: they hold leases until they end
            accepted = [s.request_id for s in load.async_sent if s.accepted]
            fires = list(schedules.request_ids(schedules.expected(load_done)).values())
            _, drain_s = await drain(cluster, http, accepted + fires, ASYNC_DRAIN_MAX_S)
            state, analysis, settle_s = await settle(observer, profile.settle_max_s)
            pools = await settled_pools(cluster, http, observer)
            await asyncio.sleep(0.5)  # record flush interval (0.2 s) with margin
            await asyncio.gather(*(observer.poll_main(i) for i in range(MAINS)))
            records = await gather_records(cluster, http)
            orphans = await asyncio.to_thread(
                orphan_processes, cluster.run_dir, cluster.manager_pids()
            )
            untracked = await observer.untracked_processes()
            # every request as the client saw it, for digging into a broken run
            for name, rows in (("outcomes", load.outcomes), ("streams", streams.sent),
                               ("ws_messages", sockets.messages)):  # fmt: skip
                await asyncio.to_thread(write_jsonl, cluster.run_dir / f"{name}.jsonl", rows, t0)
            executions = read_executions(cluster.exec_log)
            report = build_report(
                seed=seed, t0=t0, load_done=load_done, settle_s=settle_s, load=load,
                observer=observer, chaos=chaos, faults=faults, versions=versions,
                state=state, analysis=analysis, records=records, orphans=orphans,
                untracked=untracked, executions=executions,
            )  # fmt: skip
            dead_letters = await fetch_dead_letters(cluster, http)
            owners = managers_of(observer, records)
            async_summary, async_details = async_report(
                sent=load.async_sent, statuses=await fetch_statuses(cluster, http, accepted),
                dead_letters=dead_letters, executions=executions, records=records,
                events=observer.events, t0=t0, drain_s=drain_s, managers_of=owners,
            )  # fmt: skip
            sched_summary, sched_details = schedule_report(
                schedules, until=load_done, executions=executions,
                statuses=await fetch_statuses(cluster, http, fires), dead_letters=dead_letters,
                records=records, events=observer.events, t0=t0,
                faults=fault_windows(observer.events, t0, owners),
            )  # fmt: skip
            parts, part_details = trigger_report(
                streams, sockets, executions, records, observer.events, t0,
                main_of={f"127.0.0.1:{port}": i for i, port in enumerate(cluster.main_ports)},
            )  # fmt: skip
            runtime_summary, runtime_details = runtime_report(
                outcomes=load.outcomes, executions=executions, runs=runs_by_token(executions),
                records=records, events=observer.events, pools=pools, t0=t0,
            )  # fmt: skip
            parts.update({**async_summary, **sched_summary, **runtime_summary})
            details = {**part_details, **async_details, **sched_details, **runtime_details}
            return merge_async(report, parts, details)
        finally:
            await observer.close()


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

"""The runtimes' side of the report: each runtime's share of the synchronous load, what its
container kills did to the calls inside them, and its pool as ``/system/status`` counts it.

The Python, Node.js and custom-runtime functions write the same ledger lines (the latter two
with a ``runtime`` field), so the run's checks (duplicates, overlaps, records) cover them all;
this module splits those figures by runtime and adds three invariants of its own:

- ``killed_calls_wrong``: a synchronous call cut short by a container kill (its record names
  the killed container, it was sent before the kill, the ledger has no end line for it) whose
  record is not a failure the kill means: a killed container is ``RuntimeExited`` (its Manager
  saw it die by SIGKILL), a custom runtime killed alone Lambda's ``Runtime.ExitError`` (its
  relay answered for it, then ended) or ``RuntimeExited`` (the relay had ended first);
- ``wrong_runtime``: a ledger line written by another runtime than its function's;
- ``status_pool_wrong``: after the run settled, a runtime whose pool entries + leases in
  ``/system/status`` (``containers.by_runtime``: warm + busy) differ from its live (ready)
  containers as the Managers list them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.checks import find_duplicates, find_overlaps
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import MAINS, RUNTIME_OF, RUNTIMES
from hotpool.benchmarks.chaos.load import Outcome
from hotpool.benchmarks.chaos.observe import Observer

# the failures a killed call's record may show, by what the kill took (``Fault.part``): a
# killed container is seen dead by its Manager; a custom runtime killed alone is answered for
# by its relay, unless the relay had ended (it does once its runtime is gone) before it could
KILL_ERRORS = {"container": ("RuntimeExited",), "runtime": ("Runtime.ExitError", "RuntimeExited")}
# after the run settled: how often, and how far apart, /system/status and the Managers are
# compared before a runtime's pool counts as wrong (an idle container may be removed between
# the two reads)
POOL_TRIES = 6
POOL_RETRY_S = 0.5


def runtime_of(line: Mapping[str, Any]) -> str:
    """The runtime that wrote a ledger line (the Python function's lines name none)."""
    return str(line.get("runtime", "python"))


def wrong_runtime(executions: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Start lines written by another runtime than their function's."""
    return [
        e for e in executions
        if e.get("phase") == "start" and e.get("function") in RUNTIME_OF
        and runtime_of(e) != RUNTIME_OF[e["function"]]
    ]  # fmt: skip


def killed_calls(
    events: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Outcome],
    runs: Mapping[str, list[dict[str, Any]]],
    records: Mapping[str, Mapping[str, Any]],
    t0: float,
) -> list[dict[str, Any]]:
    """One row per synchronous call a container kill cut short: its record names the killed
    container, it was sent before the kill and never ran to its end line (``started``: it
    wrote its start line; it may have died on its way to the handler). With the failures its
    record may show (``expected``) and the one it shows (``recorded``). ``runs``:
    ``runs_by_token`` of the ledger; ``events``: the observer's timeline."""
    in_container: dict[str, list[tuple[Outcome, Mapping[str, Any]]]] = defaultdict(list)
    for o in outcomes:
        record = records.get(o.request_id or "")
        if record is not None and record.get("container_id"):
            in_container[record["container_id"]].append((o, record))
    rows = []
    for e in events:
        if e["kind"] != "kill_container" or not e.get("container"):
            continue
        part = e.get("part", "container")
        for o, record in in_container.get(e["container"], []):
            token_runs = runs.get(o.token, [])
            if o.sent_at > t0 + e["t"] or any(r["end"] is not None for r in token_runs):
                continue
            rows.append({
                "token": o.token, "request_id": o.request_id, "container": e["container"],
                "runtime": e.get("runtime", "python"), "part": part, "kill_t": e["t"],
                "started": bool(token_runs), "runs": len(token_runs),
                "expected": KILL_ERRORS[part], "status": record.get("status"),
                "recorded": (record.get("error") or {}).get("type"),
            })  # fmt: skip
    return rows


def misrecorded(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Killed calls whose record is not a failure the kill means."""
    return [r for r in rows if r["status"] != "error" or r["recorded"] not in r["expected"]]


def pool_by_runtime(
    status: Mapping[str, Any], described: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    """Per runtime: its pool entries + leases as ``/system/status`` counts them (``pool``) and
    its ready containers as the Managers list them (``live``)."""
    counted = status.get("containers", {}).get("by_runtime", {})
    live = Counter(c["runtime"] for c in described.values() if c["state"] == "ready")
    pools = {}
    for runtime in sorted({*RUNTIMES, *counted, *live}):
        figures = counted.get(runtime, {})
        pools[runtime] = {
            "pool": figures.get("warm", 0) + figures.get("busy", 0),
            "live": live[runtime],
        }
    return pools


async def settled_pools(
    cluster: Cluster, http: aiohttp.ClientSession, observer: Observer
) -> dict[str, dict[str, int]]:
    """``pool_by_runtime`` once the two sides agree, else its last reading (bounded)."""
    pools: dict[str, dict[str, int]] = {}
    for _ in range(POOL_TRIES):
        status = None
        for i in range(MAINS):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(
                    cluster.main_url(i) + "/system/status", timeout=aiohttp.ClientTimeout(total=5)
                ) as resp:
                    if resp.status == 200:
                        status = await resp.json()
                        break
        described, _ = await observer.managers()
        if status is not None:
            pools = pool_by_runtime(status, described)
            if all(p["pool"] == p["live"] for p in pools.values()):
                break
        await asyncio.sleep(POOL_RETRY_S)
    return pools


def runtime_report(
    *, outcomes: list[Outcome], executions: list[dict[str, Any]],
    runs: Mapping[str, list[dict[str, Any]]], records: Mapping[str, Mapping[str, Any]],
    events: list[dict[str, Any]], pools: dict[str, dict[str, int]], t0: float,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The runtimes' counts and invariants (summary), and the rows behind them (details)."""
    kills = killed_calls(events, outcomes, runs, records, t0)
    wrong_kills = misrecorded(kills)
    strays = wrong_runtime(executions)
    by_runtime = {}
    for runtime in RUNTIMES:
        mine = [o for o in outcomes if RUNTIME_OF.get(o.function) == runtime]
        tokens = {o.token for o in mine}
        starts = [e for e in executions if e.get("phase") == "start" and e["token"] in tokens]
        ends = [e for e in executions if e.get("phase") == "end" and e["token"] in tokens]
        killed = [k for k in kills if k["runtime"] == runtime]
        by_runtime[runtime] = {
            "sent": len(mine),
            "succeeded": sum(o.ok for o in mine),
            "failed_by_cause": dict(Counter(o.cause for o in mine if not o.ok).most_common(6)),
            "executions": len(ends),
            "containers": len({e.get("container") for e in starts}),
            "duplicates": len(find_duplicates(starts)),
            "overlaps": len(find_overlaps(ends)),
            "records_missing": sum(
                o.answered_by_container and o.request_id not in records for o in mine
            ),
            "kills": dict(Counter(
                e.get("part", "container") for e in events
                if e["kind"] == "kill_container" and e.get("container")
                and e.get("runtime", "python") == runtime
            )),
            # by recorded error, and whether the handler had begun (its start line)
            "killed_calls": dict(Counter(
                f"{k['recorded']}{'' if k['started'] else ' unstarted'}" for k in killed
            )),
            "pool": pools.get(runtime),
        }  # fmt: skip
    summary = {
        "by_runtime": by_runtime,
        "killed_calls": len(kills),
        "killed_calls_wrong": len(wrong_kills),
        "wrong_runtime": len(strays),
        "status_pool_wrong": sum(p["pool"] != p["live"] for p in pools.values()) if pools else -1,
    }
    details = {
        "killed_calls": kills,
        "killed_calls_wrong": wrong_kills[:20],
        "wrong_runtime": strays[:20],
    }
    return summary, details

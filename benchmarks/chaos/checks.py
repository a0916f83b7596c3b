"""The invariant checks over executions, records and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import ALL_FUNCTIONS, MAINS
from hotpool.benchmarks.chaos.load import Outcome
from hotpool.benchmarks.chaos.observe import Observer, PoolState, analyse_pool
from hotpool.shared.redis_conn import REDIS_ERRORS

# ---------------------------------------------------------------------------------------------
# the checks


def read_executions(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def find_duplicates(executions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Tokens executed more than once (invariant 3)."""
    by_token: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        by_token[e["token"]].append(e)
    return {t: es for t, es in by_token.items() if len(es) > 1}


def find_overlaps(executions: Iterable[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Pairs of executions one container process ran at the same time (invariant 1)."""
    by_process: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        by_process[(e.get("container", ""), e["pid"])].append(e)
    overlaps = []
    for runs in by_process.values():
        runs.sort(key=lambda e: e["start"])
        latest = runs[0] if runs else None
        for run in runs[1:]:
            if latest is not None and run["start"] < latest["end"]:
                overlaps.append((latest, run))
            if latest is None or run["end"] > latest["end"]:
                latest = run
    return overlaps


# ---------------------------------------------------------------------------------------------
# asynchronous events

# an attempt's end is written to Redis right after its handler returns; a fault this long after
# the handler's end line can still have stopped it being written
FINISH_MARGIN_S = 1.0
LIVE_STATUSES = ("queued", "running")


def classify_events(
    accepted: Iterable[str],
    statuses: Mapping[str, dict[str, Any] | None],
    dead_letters: Mapping[str, dict[str, Any]],
) -> dict[str, str]:
    """Where each accepted event ended, by request id: ``succeeded``, ``dead_lettered`` (failed
    or expired, in its function's dead letters with a reason) or ``lost: <why>``. ``statuses``
    holds GET /v1/invocations/{id}'s answer, None for a 404; an id missing from it is unknown."""
    verdicts = {}
    for request_id in accepted:
        status = statuses.get(request_id, {"status": "unknown"})
        letter = dead_letters.get(request_id)
        if status is None:
            verdict = "lost: 404"
        elif status.get("status") == "succeeded":
            verdict = "succeeded" if letter is None else "lost: succeeded and dead-lettered"
        elif status.get("status") in ("failed", "expired"):
            has_reason = letter is not None and letter.get("reason")
            verdict = "dead_lettered" if has_reason else "lost: ended without a dead letter"
        else:
            verdict = f"lost: {status.get('status')}"
        verdicts[request_id] = verdict
    return verdicts


def success_records(records: Iterable[dict[str, Any]], trigger: str = "async") -> Counter[str]:
    """Successful execution records of asynchronous attempts (``trigger``: async, or schedule
    for the fires of schedules), by the event's request id (the records of attempts after the
    first are named ``{request id}:{attempt}``)."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.get("trigger") == trigger and r.get("status") == "success":
            counts[r["request_id"].split(":")[0]] += 1
    return counts


def runs_by_token(executions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The ledger's runs of each token, oldest first: each start line with its end line's
    ``end``, ``failed`` and ``aborted`` (``end`` and ``aborted`` None when the run was cut
    short)."""
    ends = {}
    for e in executions:
        if e.get("phase") == "end":
            ends[(e["token"], e.get("attempt"), e["pid"], e["start"])] = e
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        if e.get("phase") == "start":
            end = ends.get((e["token"], e.get("attempt"), e["pid"], e["start"]), {})
            runs[e["token"]].append({
                **e, "end": end.get("end"), "failed": bool(end.get("failed")),
                "aborted": end.get("aborted"),
            })  # fmt: skip
    for token_runs in runs.values():
        token_runs.sort(key=lambda r: r["start"])
    return dict(runs)


def explain_rerun(
    before: dict[str, Any], run: dict[str, Any], faults: Iterable[dict[str, Any]]
) -> str | None:
    """Why an event ran again after ``before`` (its previous run), or None when nothing does:
    ``retry`` (the run before raised), ``container`` (its container was killed), ``manager``
    (its container's Manager was killed), ``consumer`` (a Main was killed before the run's end
    was written). ``faults``: ``{"kind": container | manager | main, "from", "until"}`` in unix
    time, with ``"containers"`` (the ids it killed) for the first two. A Redis restart explains
    nothing: nothing is lost, and an attempt that ran writes its end once Redis is back."""
    if before.get("failed"):
        return "retry"
    ended = before["end"] if before.get("end") is not None else run["start"]
    window = (before["start"], min(ended + FINISH_MARGIN_S, run["start"]))
    found = set()
    for f in faults:
        if f["from"] <= window[1] and f["until"] >= window[0]:
            if f["kind"] == "main" or before.get("container") in f.get("containers", ()):
                found.add(f["kind"])
    for kind, why in (("container", "container"), ("manager", "manager"), ("main", "consumer")):
        if kind in found:
            return why
    return None


def extra_executions(
    runs: Mapping[str, list[dict[str, Any]]], faults: list[dict[str, Any]]
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Every run of a token after its first: explained (token -> the reasons, in order) or not
    (the runs)."""
    explained: dict[str, list[str]] = defaultdict(list)
    unexplained = []
    for token, token_runs in runs.items():
        for before, run in itertools.pairwise(token_runs):
            why = explain_rerun(before, run, faults)
            if why is None:
                unexplained.append(run)
            else:
                explained[token].append(why)
    return dict(explained), unexplained


def wrong_success_records(
    succeeded: Mapping[str, str],
    counts: Mapping[str, int],
    reruns: Mapping[str, list[str]],
) -> dict[str, int]:
    """Succeeded events (request id -> token) without exactly one success record, by request id
    -> how many they have. Two are allowed only after a killed consumer (``consumer`` among the
    token's ``reruns``): a Main killed after the record was journaled, before the end was
    written."""
    wrong = {}
    for request_id, token in succeeded.items():
        n = counts.get(request_id, 0)
        if n == 0 or (n > 1 and "consumer" not in reruns.get(token, [])):
            wrong[request_id] = n
    return wrong


def read_records_db(path: Path) -> list[dict[str, Any]]:
    """Every execution record in one Main's SQLite log, read-only."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [json.loads(row[0]) for row in db.execute("SELECT doc FROM executions")]
    finally:
        db.close()


async def gather_records(cluster: Cluster, http: aiohttp.ClientSession) -> dict[str, dict]:
    """Execution records of both Mains: through the API (newest 1000 per function) and, as
    the API stops at 1000, straight from each Main's SQLite log too."""
    records: dict[str, dict[str, Any]] = {}
    for i in range(MAINS):
        for function in ALL_FUNCTIONS:
            url = f"{cluster.main_url(i)}/v1/functions/{function}/invocations?limit=1000"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        for r in (await resp.json())["invocations"]:
                            records[r["request_id"]] = {**r, "main": i}
        path = cluster.run_dir / f"main{i}" / "executions.db"
        for r in await asyncio.to_thread(read_records_db, path):
            records.setdefault(r["request_id"], {**r, "main": i})
    return records


def killed_under(outcome: Outcome, events: list[dict[str, Any]], t0: float) -> bool:
    """Its Main was killed while the request was in flight."""
    return any(
        e["kind"] == "kill_main" and e["main"] == outcome.main
        and outcome.sent_at - t0 <= e["t"] + 0.05 and e["t"] - 0.05 <= outcome.done_at - t0
        for e in events
    )  # fmt: skip


def main_killed(
    events: list[dict[str, Any]], t0: float, main: int, since: float, until: float
) -> bool:
    """Main ``main`` was killed between the unix times ``since`` and ``until``."""
    return any(
        e["kind"] == "kill_main" and e["main"] == main and since <= t0 + e["t"] <= until
        for e in events
    )


async def settle(observer: Observer, max_s: float) -> tuple[PoolState | None, dict, float]:
    """Poll until no lease is left and the pool analysis stops changing (bounded)."""
    began = time.monotonic()
    deadline = began + max_s
    previous = None
    stable_since = time.monotonic()
    state, analysis = None, {}
    while True:
        try:
            state = await observer.pool_state()
            analysis = analyse_pool(state)
        except REDIS_ERRORS:
            state, analysis = None, {}
        key = json.dumps(analysis, sort_keys=True) + str(state and sorted(state.leases))
        now = time.monotonic()
        if key != previous:
            stable_since, previous = now, key
        clean = state is not None and not state.leases and not any(analysis.values())
        # a non-clean state must outlast the orphan grace plus reaper passes before we judge
        if clean or (state is not None and not state.leases and now - stable_since >= 4.0):
            break
        if now >= deadline:
            break
        await asyncio.sleep(0.5)
    return state, analysis, round(time.monotonic() - began, 2)

"""The invariant checks over executions, records and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
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

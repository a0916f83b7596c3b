"""The asynchronous side of the run's report: wait until every accepted event has ended, then
check it against the function's ledger, the events' status and the dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.checks import (
    LIVE_STATUSES,
    classify_events,
    extra_executions,
    runs_by_token,
    success_records,
    wrong_success_records,
)
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import BREAKS, FUNCTIONS, MAINS
from hotpool.benchmarks.chaos.load import AsyncSent
from hotpool.benchmarks.chaos.observe import Observer

# ---------------------------------------------------------------------------------------------
# gathering

# how often the drain asks for the status of the events not yet ended
drain_poll_s = 0.5
# a Main and its Redis need not answer ~1000 status requests at once
status_fetches = 32


async def _get(cluster: Cluster, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    """GET from the first Main that answers: (status, JSON), or (0, None)."""
    for i in range(MAINS):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with http.get(
                cluster.main_url(i) + path, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status in (200, 404):
                    return resp.status, await resp.json()
    return 0, None


async def fetch_statuses(
    cluster: Cluster, http: aiohttp.ClientSession, request_ids: list[str]
) -> dict[str, dict[str, Any] | None]:
    """GET /v1/invocations/{id} of each: its JSON, None for a 404; left out when no Main
    answered."""
    limit = asyncio.Semaphore(status_fetches)
    statuses: dict[str, dict[str, Any] | None] = {}

    async def one(request_id: str) -> None:
        async with limit:
            code, body = await _get(cluster, http, f"/v1/invocations/{request_id}")
        if code == 200:
            statuses[request_id] = body
        elif code == 404:
            statuses[request_id] = None

    await asyncio.gather(*(one(r) for r in request_ids))
    return statuses


async def drain(
    cluster: Cluster, http: aiohttp.ClientSession, request_ids: list[str], max_s: float
) -> tuple[dict[str, dict[str, Any] | None], float]:
    """Poll until every event has ended (or is gone), within ``max_s``: the last statuses and
    how long it took."""
    began = time.monotonic()
    statuses: dict[str, dict[str, Any] | None] = {}
    pending = list(request_ids)
    while True:
        statuses.update(await fetch_statuses(cluster, http, pending))
        pending = [
            r for r in request_ids
            if r not in statuses
            or (statuses[r] is not None and statuses[r]["status"] in LIVE_STATUSES)
        ]  # fmt: skip
        if not pending or time.monotonic() - began >= max_s:
            return statuses, round(time.monotonic() - began, 2)
        await asyncio.sleep(drain_poll_s)


async def fetch_dead_letters(
    cluster: Cluster, http: aiohttp.ClientSession
) -> dict[str, dict[str, Any]]:
    """Every dead letter of the functions async events went to, by request id."""
    letters = {}
    for function in FUNCTIONS:
        code, body = await _get(cluster, http, f"/v1/functions/{function}/dead-letters?limit=1000")
        if code == 200:
            letters.update({d["request_id"]: d for d in body["dead_letters"]})
    return letters


def fault_windows(
    events: list[dict[str, Any]], t0: float, managers_of: dict[str, str]
) -> list[dict[str, Any]]:
    """The faults that can make an event run again, at unix times: a killed container, Manager
    (its containers may die with it; ``managers_of`` maps container ids to Manager ids) or Main
    (its consumer's events run again elsewhere)."""
    windows: list[dict[str, Any]] = []
    for e in events:
        at = t0 + e["t"]
        if e["kind"] == "kill_container" and e.get("container"):
            windows.append({"kind": "container", "from": at, "until": at,
                            "containers": [e["container"]]})  # fmt: skip
        elif e["kind"] == "kill_manager":
            ids = sorted(c for c, m in managers_of.items() if m == e["manager"])
            windows.append({"kind": "manager", "from": at, "until": at, "containers": ids})
        elif e["kind"] == "kill_main":
            windows.append({"kind": "main", "from": at, "until": at})
    return windows


# ---------------------------------------------------------------------------------------------
# the report


def managers_of(observer: Observer, records: dict[str, dict]) -> dict[str, str]:
    """Each container's Manager, as the Managers described it or a record names it."""
    owners = {cid: c["manager"] for cid, c in observer.seen_containers.items()}
    for r in records.values():
        if r.get("container_id") and r.get("manager_id"):
            owners.setdefault(r["container_id"], r["manager_id"])
    return owners


def async_report(
    *,
    sent: list[AsyncSent],
    statuses: dict[str, dict[str, Any] | None],
    dead_letters: dict[str, dict[str, Any]],
    executions: list[dict[str, Any]],
    records: dict[str, dict[str, Any]],
    events: list[dict[str, Any]],
    managers_of: dict[str, str],
    t0: float,
    drain_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary's async_* counts and the details behind them."""
    accepted = [s for s in sent if s.accepted]
    by_id = {s.request_id: s for s in accepted}
    verdicts = classify_events(by_id, statuses, dead_letters)
    outcome = Counter(v if not v.startswith("lost") else "lost" for v in verdicts.values())
    tokens = {s.token for s in accepted}
    runs = {t: rs for t, rs in runs_by_token(executions).items() if t in tokens}
    explained, unexplained = extra_executions(runs, fault_windows(events, t0, managers_of))
    by_cause = Counter(why for reasons in explained.values() for why in reasons)
    succeeded = [r for r, v in verdicts.items() if v == "succeeded"]
    records_wrong = wrong_success_records(
        {r: by_id[r].token for r in succeeded}, success_records(records.values()), explained
    )
    # a dead letter of an event that did not ask to fail: its every attempt met a fault
    unexpected_dead = [r for r, v in verdicts.items() if v == "dead_lettered" and not by_id[r].fail]
    wrong_result = [
        r for r in succeeded
        if (statuses[r] or {}).get("result") != by_id[r].token or by_id[r].fail
    ]  # fmt: skip
    summary = {
        "async_sent": len(sent),
        "async_accepted": len(accepted),
        "async_not_accepted": dict(Counter(s.cause for s in sent if not s.accepted)),
        "async_succeeded": outcome["succeeded"],
        "async_dead_lettered": outcome["dead_lettered"],
        "async_dead_lettered_unasked": len(unexpected_dead),
        "async_lost": outcome["lost"] + len(wrong_result),
        "async_never_ran": sum(1 for s in accepted if s.token not in runs),
        "async_extra_executions": sum(by_cause.values()) + len(unexplained),
        "async_extra_by_cause": dict(by_cause),
        "async_unexplained": len(unexplained),
        "async_success_records_wrong": len(records_wrong),
        "async_drain_s": drain_s,
    }
    details = {
        "async_lost": {r: v for r, v in verdicts.items() if v.startswith("lost")},
        "async_wrong_result": [{"request_id": r, "status": statuses[r]} for r in wrong_result[:20]],
        "async_unexplained": unexplained[:20],
        "async_dead_lettered_unasked": [dead_letters[r] for r in unexpected_dead[:10]],
        "async_success_records_wrong": records_wrong,
    }
    return summary, details


def merge_async(
    report: dict[str, Any], summary: dict[str, Any], details: dict[str, Any]
) -> dict[str, Any]:
    """The report with the asynchronous counts and their invariants added."""
    report["summary"].update(summary)
    report["details"].update(details)
    counters = report["summary"]["main_counters"]
    report["summary"]["async_redis_data_lost"] = counters.get("async_redis_data_lost", 0)
    report["summary"]["invariant_breaks"] = sorted(
        k for k in BREAKS if report["summary"].get(k, 0) != 0
    )
    return report

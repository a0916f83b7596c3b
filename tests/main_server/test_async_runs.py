"""Asynchronous events run through the one invoke path: retries of function errors with the
same request id, the attempt number the handler and the records see, throttles retried without
using a retry, and async calls held to their share of a function's concurrency."""

from __future__ import annotations

import asyncio

import pytest

from tests.main_server.async_events import (
    FAST,
    ledger,
    ledger_zip,
    records,
    send,
    status,
    wait_status,
)
from tests.stack import wait_for

pytestmark = pytest.mark.integration


# fails on its first two attempts, succeeds on the third
FLAKY = ledger_zip(
    "if context.attempt < 3:\n"
    "    raise RuntimeError(f'attempt {context.attempt} fails')\n"
    "return {'attempt': context.attempt}"
)


async def test_a_function_error_is_retried_with_the_same_request_id(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    path = tmp_path / "ledger"
    deployed = await stack.deploy("flaky", FLAKY, async_retries=2, env={"LEDGER": str(path)})
    assert deployed.status == 201, await deployed.text()

    request_id = await send(stack.client, "flaky", {"n": 1})
    done = await wait_status(stack.client, request_id)

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 3 and done["retries"] == 2
    assert done["result"] == {"attempt": 3}
    assert [e["attempt"] for e in done["errors"]] == [1, 2]
    assert all(e["kind"] == "function" and e["type"] == "RuntimeError" for e in done["errors"])
    assert "attempt 2 fails" in done["errors"][1]["message"]
    runs = ledger(path)
    assert [(r["id"], r["attempt"], r["event"]) for r in runs] == [
        (request_id, n, {"n": 1}) for n in (1, 2, 3)
    ]

    async def recorded() -> bool:
        return len(await records(stack.client, "flaky")) == 3

    assert await wait_for(recorded, timeout_s=10)
    by_attempt = {r["attempt"]: r for r in await records(stack.client, "flaky")}
    assert by_attempt[1]["request_id"] == request_id
    assert by_attempt[2]["request_id"] == f"{request_id}:2"
    assert by_attempt[3]["request_id"] == f"{request_id}:3"
    assert {r["trigger"] for r in by_attempt.values()} == {"async"}


async def test_no_retries_fails_at_once(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    path = tmp_path / "ledger"
    await stack.deploy("flaky", FLAKY, async_retries=0, env={"LEDGER": str(path)})

    request_id = await send(stack.client, "flaky", {"n": 2})
    done = await wait_status(stack.client, request_id)

    assert done["status"] == "failed" and done["reason"] == "RetriesExhausted"
    assert done["attempts"] == 1
    assert [e["attempt"] for e in done["errors"]] == [1]
    assert done["error"]["type"] == "RuntimeError"
    assert len(ledger(path)) == 1


# sleeps event["s"] seconds, then writes an "end" line to its ledger
SLEEPER = ledger_zip(
    "time.sleep((event or {}).get('s', 0))\n_ledger(event, context, 'end')\nreturn 'slept'"
)


async def test_a_throttled_event_is_retried_without_using_a_retry(hotpool_stack, tmp_path):
    # a waiting call gives up after queue_timeout_s: 429, the throttle under test
    stack = await hotpool_stack(**FAST, queue_timeout_s=0.2)
    path = tmp_path / "ledger"
    await stack.deploy(
        "single", SLEEPER, max_concurrency=1, async_retries=0, env={"LEDGER": str(path)}
    )
    sync_call = asyncio.create_task(stack.invoke("single", {"s": 3, "sync": True}))
    assert await wait_for(lambda: _started(path, 1), timeout_s=10)

    request_id = await send(stack.client, "single", {"s": 0})

    async def throttled() -> bool:
        return (await status(stack.client, request_id)).get("throttles", 0) >= 1

    assert await wait_for(throttled, timeout_s=10)
    assert len(ledger(path)) == 1  # the handler did not run for it while it was throttled
    assert (await sync_call).status == 200
    done = await wait_status(stack.client, request_id)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done.get("retries", 0) == 0
    assert done["throttles"] >= 1
    assert {e["kind"] for e in done["errors"]} == {"throttle"}
    assert {e["type"] for e in done["errors"]} == {"TooManyRequests"}
    assert [r["event"] for r in ledger(path)] == [{"s": 3, "sync": True}, {"s": 0}]


async def _started(path, n: int) -> bool:
    return len(ledger(path)) >= n


async def test_async_calls_hold_at_most_their_share_of_a_function(hotpool_stack, tmp_path):
    # every miss starts its own container (no waiting for another's cold start)
    stack = await hotpool_stack(**FAST, async_share=0.5, waiters_per_start=0)
    path = tmp_path / "ledger"
    await stack.deploy("shared", SLEEPER, max_concurrency=4, env={"LEDGER": str(path)})

    ids = [await send(stack.client, "shared", {"s": 3, "n": n}) for n in range(4)]
    assert await wait_for(lambda: _started(path, 2), timeout_s=10)
    # two async calls hold their share (half of 4); a synchronous one still gets through
    resp = await stack.invoke("shared", {"s": 0, "sync": True})
    assert resp.status == 200, await resp.text()
    for request_id in ids:
        assert (await wait_status(stack.client, request_id))["status"] == "succeeded"

    async_runs = [r for r in ledger(path) if "sync" not in r["event"]]
    ends = {r["event"]["n"]: r["at"] for r in ledger(path, "end") if "n" in r["event"]}
    spans = [(r["at"], ends[r["event"]["n"]]) for r in async_runs]
    assert sorted(r["event"]["n"] for r in async_runs) == [0, 1, 2, 3]
    assert _most_at_once(spans) == 2
    (sync_run,) = [r for r in ledger(path) if "sync" in r["event"]]
    assert sum(start < sync_run["at"] < end for start, end in spans) == 2


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of ``spans`` (start, end) that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


async def test_async_calls_hold_at_most_their_share_of_a_namespace(hotpool_stack, tmp_path):
    # two functions whose own shares (2 each) would let 4 run; the namespace's share is 2
    stack = await hotpool_stack(
        **FAST, async_share=0.5, waiters_per_start=0, namespace_max_concurrency=4
    )
    path = tmp_path / "ledger"
    for name in ("left", "right"):
        await stack.deploy(name, SLEEPER, max_concurrency=4, env={"LEDGER": str(path)})

    ids = [
        await send(stack.client, name, {"s": 1.5, "n": f"{name}{n}"})
        for name in ("left", "right")
        for n in range(2)
    ]
    for request_id in ids:
        assert (await wait_status(stack.client, request_id))["status"] == "succeeded"

    ends = {r["event"]["n"]: r["at"] for r in ledger(path, "end")}
    spans = [(r["at"], ends[r["event"]["n"]]) for r in ledger(path)]
    assert len(spans) == 4
    assert _most_at_once(spans) == 2

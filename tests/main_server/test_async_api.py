"""The asynchronous API's front door (issue 14, rule 1): an event is accepted with 202 once it is
queued and then runs; it passes the same auth, scopes, event limits and rate as a synchronous
call, and a refused request queues nothing; a namespace's queue has a limit; /system/status shows
the queue. Idempotency keys: test_async_idempotency.py; tenancy: tests/security/.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.async_calls import (
    EVENT,
    accepted,
    bearer,
    error_of,
    gated_stack,
    keyed,
    ledger_stack,
    queue_shot,
    runs,
    send,
    settled,
    status_of,
)
from tests.stack import wait_for

pytestmark = pytest.mark.integration


# -- 1. accepted at once, then run ----------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"X-Hotpool-Invocation-Type": "Event"}},
        {"headers": {"X-Amz-Invocation-Type": "Event"}},
        {"headers": {"X-Hotpool-Invocation-Type": "event"}},
        {"params": {"async": "true"}},
    ],
    ids=["hotpool-header", "amz-header", "lower-case", "query"],
)
async def test_an_accepted_event_answers_202_then_runs_once(any_redis_stack, tmp_path, how):
    stack = await ledger_stack(any_redis_stack, tmp_path)

    request_id = await accepted(await send(stack, "fn", {"n": 1}, **how))

    status = await settled(stack, request_id)
    assert status["status"] == "succeeded", status
    assert status["result"] == {"event": {"n": 1}, "attempt": 1}
    assert status["request_id"] == request_id and status["function"] == "fn"
    assert status["namespace"] == "default" and status["attempts"] == 1
    assert runs(tmp_path) == [{"id": request_id, "attempt": 1}]

    async def recorded() -> list[dict]:
        resp = await stack.client.get("/v1/functions/fn/invocations")
        assert resp.status == 200
        return [r for r in (await resp.json())["invocations"] if r["request_id"] == request_id]

    assert await wait_for(recorded)
    (record,) = await recorded()
    assert record["trigger"] == "async" and record["attempt"] == 1, record
    assert record["status"] == "success", record


async def test_ways_of_asking_that_agree_are_one_asynchronous_call(hotpool_stack, tmp_path):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    both = EVENT | {"X-Amz-Invocation-Type": "EVENT"}

    request_id = await accepted(await send(stack, "fn", {}, headers=both, params={"async": "1"}))

    assert (await settled(stack, request_id))["result"] == {"event": {}, "attempt": 1}
    assert runs(tmp_path) == [{"id": request_id, "attempt": 1}]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Hotpool-Invocation-Type": "RequestResponse"},
        {"X-Amz-Invocation-Type": "RequestResponse"},
    ],
)
async def test_request_response_and_async_false_stay_synchronous(hotpool_stack, tmp_path, headers):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    before = await queue_shot(stack)

    for how in ({"headers": headers}, {"params": {"async": "false"}}, {"headers": {}}):
        resp = await send(stack, "fn", {"n": 2}, **how)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"event": {"n": 2}, "attempt": 1}

    assert await queue_shot(stack) == before
    assert len(runs(tmp_path)) == 3


async def test_a_synchronous_calls_request_id_has_no_asynchronous_status(hotpool_stack, tmp_path):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    resp = await send(stack, "fn", {"n": 1}, headers={})
    assert resp.status == 200

    status = await stack.client.get(f"/v1/invocations/{resp.headers['X-Hotpool-Request-Id']}")

    assert (await error_of(status, 404))["code"] == "NotFound"


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ({"headers": {"X-Hotpool-Invocation-Type": "DryRun"}}, "X-Hotpool-Invocation-Type"),
        ({"headers": {"X-Amz-Invocation-Type": "later"}}, "X-Amz-Invocation-Type"),
        ({"headers": {"X-Hotpool-Invocation-Type": ""}}, "X-Hotpool-Invocation-Type"),
        ({"params": {"async": "maybe"}}, "async"),
        ({"params": {"async": ""}}, "async"),
        # one good way of asking does not excuse a bad other one
        ({"headers": EVENT, "params": {"async": "maybe"}}, "true or false"),
        ({"headers": EVENT | {"X-Amz-Invocation-Type": "Evnt"}}, "X-Amz-Invocation-Type"),
    ],
)
async def test_a_bad_invocation_type_is_a_400_that_names_the_fix(
    hotpool_stack, tmp_path, how, named
):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    before = await queue_shot(stack)

    error = await error_of(await send(stack, "fn", {"n": 3}, **how), 400)

    assert named in error["message"], error
    assert ("Event" in error["message"]) or ("true or false" in error["message"]), error
    assert await queue_shot(stack) == before
    assert runs(tmp_path) == []


# -- 2. the limits of a synchronous call, and a refused request queues nothing ------------------


DEEP = b"[" * 200 + b"]" * 200


@pytest.mark.parametrize(
    ("name", "raw", "key_scopes", "status", "code", "says"),
    [
        ("fn", b'{"n": ', None, 400, "InvalidEvent", "not valid JSON"),
        ("fn", orjson.dumps("x" * 2000), None, 413, "PayloadTooLarge", "event"),
        ("fn", DEEP, None, 400, "InvalidEvent", "deeper than 128"),
        ("nothing", b"{}", None, 404, "NotFound", "nothing"),
        ("fn", b"{}", "read", 403, "Forbidden", "'invoke' scope"),
        ("fn", b"{}", "deploy", 403, "Forbidden", "'invoke' scope"),
    ],
    ids=["bad-json", "too-big", "too-deep", "unknown-function", "read-key", "deploy-key"],
)
async def test_a_refused_event_gets_the_sync_error_and_queues_nothing(
    any_redis_stack, tmp_path, name, raw, key_scopes, status, code, says
):
    stack = await ledger_stack(any_redis_stack, tmp_path, max_event_bytes=1024)
    # one accepted event first, so that the stream and its group exist
    await settled(stack, await accepted(await send(stack, "fn", {"n": 0})))
    before = await queue_shot(stack)
    headers = EVENT | (bearer(await stack.key("default", key_scopes)) if key_scopes else {})

    for how in ({"headers": headers}, {"headers": headers, "params": {"async": "true"}}):
        error = await error_of(await send(stack, name, raw=raw, **how), status)
        assert error["code"] == code and says in error["message"], error

    assert await queue_shot(stack) == before
    assert len(runs(tmp_path)) == 1


async def test_an_event_over_the_keys_rate_is_a_429_and_queues_nothing(any_redis_stack, tmp_path):
    stack = await ledger_stack(any_redis_stack, tmp_path, rate_burst=3)
    key = await stack.key("default", "invoke,read", rate_per_s=0.01)
    sent = {"headers": EVENT | bearer(key)}
    ids = [await accepted(await send(stack, "fn", {"n": n}, **sent)) for n in range(3)]
    for request_id in ids:
        assert (await settled(stack, request_id))["status"] == "succeeded"
    before = await queue_shot(stack)

    resp = await send(stack, "fn", {"n": 3}, **sent)

    error = await error_of(resp, 429)
    assert error["code"] == "TooManyRequests" and "rate" in error["message"], error
    assert int(resp.headers["Retry-After"]) >= 1
    assert await queue_shot(stack) == before
    assert sorted(run["id"] for run in runs(tmp_path)) == sorted(ids)


# -- 3. the namespace's queue limit ---------------------------------------------------------------


async def test_a_full_namespace_queue_answers_429_with_retry_after(any_redis_stack, tmp_path):
    stack = await gated_stack(any_redis_stack, tmp_path, async_max_queued_per_namespace=3)
    first = await accepted(await send(stack, "gated", {"n": 0}, **keyed("k-0")))
    ids = [first] + [await accepted(await send(stack, "gated", {"n": n})) for n in (1, 2)]
    before = await queue_shot(stack)

    resp = await send(stack, "gated", {"n": 3}, **keyed("k-new"))

    error = await error_of(resp, 429)
    assert error["code"] == "TooManyRequests", error
    assert (
        "'default'" in error["message"]
        and "HOTPOOL_ASYNC_MAX_QUEUED_PER_NAMESPACE" in error["message"]
    )
    assert int(resp.headers["Retry-After"]) >= 1
    assert await queue_shot(stack) == before  # nor did it keep its idempotency key
    # a repeat of an accepted event is answered, full or not: it queues nothing
    replay = await send(stack, "gated", {"n": 0}, **keyed("k-0"))
    assert await accepted(replay) == first and replay.headers["X-Hotpool-Idempotent-Replay"]
    assert await queue_shot(stack) == before
    # another namespace has a queue of its own
    other = await send(stack, "gated", {"n": 4}, headers=EVENT, params={"namespace": "team-b"})
    other_id = await accepted(other)
    # held at the gate: queued or running, nothing finished
    statuses = [await (await status_of(stack, request_id)).json() for request_id in ids]
    assert all(st["status"] in ("queued", "running") for st in statuses), statuses
    assert not any("finished_at" in st or "result" in st for st in statuses), statuses

    async def one_running() -> bool:
        statuses = [await (await status_of(stack, request_id)).json() for request_id in ids]
        return any(st["status"] == "running" and st["attempts"] == 1 for st in statuses)

    assert await wait_for(one_running)

    (tmp_path / "gate").touch()
    for request_id in [*ids, other_id]:
        assert (await settled(stack, request_id))["result"] == "through"
    # the events that ended no longer count: the namespace takes new ones, the refused key too
    again = await send(stack, "gated", {"n": 3}, **keyed("k-new"))
    assert "X-Hotpool-Idempotent-Replay" not in again.headers
    assert await accepted(again) not in ids
    await settled(stack, again.headers["X-Hotpool-Request-Id"])


async def test_simultaneous_accepts_never_overfill_the_queue(any_redis_stack, tmp_path):
    stack = await gated_stack(any_redis_stack, tmp_path, async_max_queued_per_namespace=3)

    replies = await asyncio.gather(*(send(stack, "gated", {"n": n}) for n in range(8)))

    assert sorted(r.status for r in replies) == [202] * 3 + [429] * 5
    ids = [await accepted(r) for r in replies if r.status == 202]
    shot = await queue_shot(stack)
    assert shot.queued == {"default": 3} and len(shot.states) == 3 and shot.entries == 3
    (tmp_path / "gate").touch()
    for request_id in ids:
        assert (await settled(stack, request_id))["status"] == "succeeded"


# -- 4. /system/status ---------------------------------------------------------------------------


async def test_system_status_shows_each_namespaces_queue_to_admins_only(any_redis_stack, tmp_path):
    stack = await gated_stack(any_redis_stack, tmp_path)
    ids = [await accepted(await send(stack, "gated", {"n": n})) for n in range(3)]
    ids.append(
        await accepted(
            await send(stack, "gated", {}, headers=EVENT, params={"namespace": "team-b"})
        )
    )
    await asyncio.sleep(0.05)  # so that the oldest event has an age

    resp = await stack.client.get("/system/status")
    assert resp.status == 200, await resp.text()
    queues = (await resp.json())["async"]
    assert queues["namespaces"]["default"]["queued"] == 3
    assert queues["namespaces"]["team-b"]["queued"] == 1
    for namespace in ("default", "team-b"):
        assert queues["namespaces"][namespace]["oldest_age_s"] > 0
    # each live event is in the stream (pending while it runs) or waits in the delayed set
    assert queues["stream"] + queues["delayed"] == 4, queues
    assert queues["pending"] <= queues["stream"] and 0 <= queues["in_flight_here"] <= 4
    for scopes in ("deploy,invoke,read", "read"):
        key = await stack.key("default", scopes)
        error = await error_of(await stack.client.get("/system/status", headers=bearer(key)), 403)
        assert "admin" in error["message"]

    (tmp_path / "gate").touch()
    for request_id in ids:
        await settled(stack, request_id)
    resp = await stack.client.get("/system/status")
    queues = (await resp.json())["async"]["namespaces"]
    assert queues["default"] == {"queued": 0, "oldest_age_s": 0.0}
    assert queues["team-b"] == {"queued": 0, "oldest_age_s": 0.0}

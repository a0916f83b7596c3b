"""Idempotency-Key on an asynchronous invoke (issue 14, rule 1): a repeat within
HOTPOOL_ASYNC_IDEMPOTENCY_TTL_S returns the first request's id (X-Hotpool-Idempotent-Replay: true)
and queues nothing, so the handler runs once; a key belongs to one function; a bad key is a 400.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.async_calls import (
    EVENT,
    JSON,
    LEDGER,
    accepted,
    error_of,
    keyed,
    ledger_stack,
    queue_shot,
    runs,
    send,
    settled,
)
from tests.stack import wait_for

pytestmark = pytest.mark.integration


async def test_a_repeated_idempotency_key_returns_the_first_id_and_runs_once(
    any_redis_stack, tmp_path
):
    stack = await ledger_stack(any_redis_stack, tmp_path)
    first = await send(stack, "fn", {"n": 1}, **keyed("order-42"))
    request_id = await accepted(first)
    assert "X-Hotpool-Idempotent-Replay" not in first.headers

    repeat = await send(stack, "fn", {"n": 1}, **keyed("order-42"))
    assert await accepted(repeat) == request_id
    assert repeat.headers["X-Hotpool-Idempotent-Replay"] == "true"
    assert (await settled(stack, request_id))["status"] == "succeeded"
    # after it ended too, and whatever the repeat's body says
    late = await send(stack, "fn", {"n": 2}, **keyed("order-42"))
    assert await accepted(late) == request_id
    assert late.headers["X-Hotpool-Idempotent-Replay"] == "true"
    # another key is another event
    other_id = await accepted(await send(stack, "fn", {"n": 1}, **keyed("order-43")))
    assert other_id != request_id
    assert (await settled(stack, other_id))["status"] == "succeeded"

    assert sorted(run["id"] for run in runs(tmp_path)) == sorted([request_id, other_id])
    assert {k for k in (await queue_shot(stack)).states} == {
        f"hp:async:inv:{request_id}",
        f"hp:async:inv:{other_id}",
    }


async def test_simultaneous_repeats_of_an_idempotency_key_queue_one_event(
    any_redis_stack, tmp_path
):
    stack = await ledger_stack(any_redis_stack, tmp_path)

    replies = await asyncio.gather(
        *(send(stack, "fn", {"n": 1}, **keyed("once")) for _ in range(8))
    )

    ids = {await accepted(r) for r in replies}
    assert len(ids) == 1
    replays = [r.headers.get("X-Hotpool-Idempotent-Replay") for r in replies]
    assert sorted(replays, key=str) == [None] + ["true"] * 7
    (request_id,) = ids
    assert (await settled(stack, request_id))["status"] == "succeeded"
    assert runs(tmp_path) == [{"id": request_id, "attempt": 1}]
    assert (await queue_shot(stack)).states == {f"hp:async:inv:{request_id}"}


async def test_an_idempotency_key_belongs_to_one_function(hotpool_stack, tmp_path):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    ledger2 = tmp_path / "ledger-fn2"
    ledger2.touch()
    resp = await stack.deploy("fn2", LEDGER, env={"LEDGER": str(ledger2)})
    assert resp.status == 201, await resp.text()

    one = await accepted(await send(stack, "fn", {"n": 1}, **keyed("same")))
    two = await send(stack, "fn2", {"n": 1}, **keyed("same"))

    assert await accepted(two) != one and "X-Hotpool-Idempotent-Replay" not in two.headers
    for request_id, name in ((one, "fn"), (await accepted(two), "fn2")):
        status = await settled(stack, request_id)
        assert status["status"] == "succeeded" and status["function"] == name
        assert [run["id"] for run in runs(tmp_path, name)] == [request_id]


@pytest.mark.parametrize(
    "key",
    ["k" * 257, "", "with space", "tab\there", "caf\u00e9"],
    ids=["too-long", "empty", "space", "tab", "non-ascii"],
)
async def test_a_bad_idempotency_key_is_a_400(hotpool_stack, tmp_path, key):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    before = await queue_shot(stack)

    resp = await stack.client.post(
        "/v1/functions/fn/invoke",
        data=b"{}",
        headers=JSON | EVENT | {"Idempotency-Key": key.encode("utf-8").decode("latin-1")},
    )

    error = await error_of(resp, 400)
    assert "Idempotency-Key" in error["message"] and "256" in error["message"], error
    assert await queue_shot(stack) == before
    assert runs(tmp_path) == []


@pytest.mark.parametrize("char", [b"\x01", b"\x7f", b"\x1b"])
async def test_an_idempotency_key_with_a_control_character_is_a_400(hotpool_stack, tmp_path, char):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    before = await queue_shot(stack)
    # aiohttp's client refuses to send such a header: write the request by hand
    server = stack.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    auth = stack.client.session.headers["Authorization"].encode()
    writer.write(
        b"POST /v1/functions/fn/invoke HTTP/1.1\r\nHost: hotpool\r\nConnection: close\r\n"
        b"Authorization: " + auth + b"\r\nX-Hotpool-Invocation-Type: Event\r\n"
        b"Idempotency-Key: order" + char + b"42\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()

    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer
    assert await queue_shot(stack) == before
    assert runs(tmp_path) == []


async def test_the_longest_idempotency_key_is_accepted(hotpool_stack, tmp_path):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    key = "".join(chr(c) for c in range(0x21, 0x7F)) * 3  # every printable character, 282
    request_id = await accepted(await send(stack, "fn", {}, **keyed(key[:256])))
    assert await accepted(await send(stack, "fn", {}, **keyed(key[:256]))) == request_id
    assert (await settled(stack, request_id))["status"] == "succeeded"


async def test_an_idempotency_key_is_kept_for_its_ttl_only(any_redis_stack, tmp_path):
    stack = await ledger_stack(any_redis_stack, tmp_path, async_idempotency_ttl_s=1)
    first = await accepted(await send(stack, "fn", {"n": 1}, **keyed("short-lived")))
    assert (await settled(stack, first))["status"] == "succeeded"

    async def forgotten() -> bool:
        return not (await queue_shot(stack)).idempotency_keys

    assert await wait_for(forgotten, timeout_s=5)
    again = await send(stack, "fn", {"n": 1}, **keyed("short-lived"))

    assert await accepted(again) != first
    assert "X-Hotpool-Idempotent-Replay" not in again.headers
    assert (await settled(stack, again.headers["X-Hotpool-Request-Id"]))["status"] == "succeeded"
    assert len(runs(tmp_path)) == 2

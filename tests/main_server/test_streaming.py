"""Streamed results end to end over real HTTP, on the embedded stack (process backend) with the
real bootstrap: a generator's items reach the client as they are produced (/invoke raw and
SSE, /fn/ with the head's status and headers), errors after the first byte end the stream
with a marker, a client that leaves closes the handler's generator and the container serves
the next call, a slow client holds the handler back without growing Main's memory, and the
execution record tells what streamed. tests/main_server/test_streaming_docker.py runs the
same on Docker.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest

from tests.async_calls import FAST, accepted, send, settled
from tests.helpers import make_zip
from tests.main_server.test_streaming_relay import sse_events
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# one function, its behaviour chosen by the event's "mode"; markers go to the event's "path"
GENS = make_zip(
    {
        "main.py": """
import asyncio
import json
import time

def handler(event, context):
    if "requestContext" in event:  # a web request: the mode is in its body
        event = json.loads(event["body"])
    return globals()[event["mode"]](event)

def spaced(event):
    for n in range(4):
        yield {"n": n, "at": time.time()}
        time.sleep(0.3)

async def lines(event):
    yield "two\\nlines"
    await asyncio.sleep(0)
    yield {"n": 2}

def web(event):
    def body():
        yield "<p>"
        time.sleep(0.2)
        yield "hi</p>"
    return {"statusCode": 201, "headers": {"Content-Type": "text/html", "X-Kind": "stream"},
            "cookies": ["a=1"], "body": body()}

def fails(event):
    yield "first\\n"
    raise ValueError("broke after one")

async def endless(event):
    try:
        n = 0
        while True:
            yield f"{n}\\n"
            n += 1
            await asyncio.sleep(0.05)
    except BaseException as exc:  # GeneratorExit, or CancelledError of the awaited sleep
        if event.get("path"):
            with open(event["path"], "w") as f:
                f.write(type(exc).__name__)
        raise

def flood(event):
    chunk = b"x" * 65536
    for n in range(event["count"]):
        if event.get("path") and n % 8 == 0:
            with open(event["path"], "w") as f:
                f.write(str(n))
        yield chunk

def empty(event):
    return
    yield

def chatty(event):
    print(chr(34) * 60000)  # JSON-escaped, the summary that carries it is over 64 KiB
    yield "said\\n"
"""
    }
)


async def deployed(stack: Stack, name: str = "gens", **params) -> None:
    resp = await stack.deploy(name, GENS, http="public", timeout_s=60, **params)
    assert resp.status in (200, 201), await resp.text()


async def test_items_reach_the_client_as_the_handler_yields_them(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("gens", {"mode": "spaced"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["X-Hotpool-Streamed"] == "true"
    assert resp.headers["X-Hotpool-Cold-Start"] == "true" and resp.headers["X-Hotpool-Request-Id"]
    items, received = [], 0
    while line := await resp.content.readline():
        items.append((time.time(), orjson.loads(line)))
        received += len(line)
    assert [item["n"] for _, item in items] == [0, 1, 2, 3]
    first_arrived, last_made = items[0][0], items[-1][1]["at"]
    assert first_arrived < last_made  # the first item was out before the handler made the last
    assert items[-1][0] - first_arrived >= 0.5
    [record] = await stack.records("gens", 1)
    assert record["streamed"] is True and record["status"] == "success"
    assert record["aborted"] is False
    assert record["bytes_streamed"] == received
    assert 0 < record["first_byte_ms"] < record["duration_ms"]
    assert record["duration_ms"] >= 900  # the whole stream, not its head
    await stack.idle_entries("gens", 1)


async def test_a_summary_longer_than_an_item_frame_ends_the_stream_well(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("gens", {"mode": "chatty"})
    assert resp.status == 200 and await resp.read() == b"said\n"
    [record] = await stack.records("gens", 1)
    assert record["status"] == "success" and record["stdout"].startswith('"' * 60000)
    await stack.idle_entries("gens", 1)  # the container went back healthy


async def test_server_sent_events_one_event_per_item(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.client.post(
        "/v1/functions/gens/invoke", json={"mode": "lines"}, headers={"Accept": "text/event-stream"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    body = await resp.read()
    assert sse_events(body) == [("message", "two\nlines"), ("message", '{"n": 2}')]
    assert b"data: two\ndata: lines\n\n" in body


@pytest.mark.parametrize("accept", ["*/*", "text/event-stream"])
async def test_an_error_after_the_first_byte_ends_the_stream_with_a_marker(hotpool_stack, accept):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.client.post(
        "/v1/functions/gens/invoke", json={"mode": "fails"}, headers={"Accept": accept}
    )
    assert resp.status == 200
    body = await resp.read()
    request_id = resp.headers["X-Hotpool-Request-Id"]
    if accept == "text/event-stream":
        events = sse_events(body)
        assert events[0] == ("message", "first")
        kind, data = events[-1]
        error = orjson.loads(data)
    else:
        assert body.startswith(b"first\n")
        last = body.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        error = orjson.loads(last)["hotpoolStreamError"]
        kind = "error"
    assert kind == "error"
    assert error == {
        "errorType": "ValueError", "errorMessage": "broke after one", "requestId": request_id,
    }  # fmt: skip
    [record] = await stack.records("gens", 1)
    assert record["status"] == "error" and record["error"]["type"] == "ValueError"
    assert record["bytes_streamed"] == len(b"first\n")
    await stack.idle_entries("gens", 1)  # a function error: the container is sound


async def test_a_web_function_streams_its_body_after_the_heads_status_and_headers(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.client.post("/fn/gens/page", json={"mode": "web"})
    assert resp.status == 201
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.headers["X-Kind"] == "stream" and resp.headers["X-Hotpool-Streamed"] == "true"
    assert resp.headers["Set-Cookie"] == "a=1"
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    first = await resp.content.readexactly(3)
    first_at = time.monotonic()
    rest = await resp.read()
    assert (first, rest) == (b"<p>", b"hi</p>")
    assert time.monotonic() - first_at >= 0.15  # the first part came before the second was made
    [record] = await stack.records("gens", 1)
    assert record["trigger"] == "web" and record["streamed"] is True


async def test_an_empty_generator_is_a_result_of_null(hotpool_stack):
    stack = await hotpool_stack()
    await deployed(stack)
    resp = await stack.invoke("gens", {"mode": "empty"})
    assert (resp.status, await resp.read()) == (200, b"null")
    assert "X-Hotpool-Streamed" not in resp.headers


async def test_a_client_that_leaves_closes_the_generator_and_the_container_serves_on(
    hotpool_stack, tmp_path: Path
):
    stack = await hotpool_stack()
    await deployed(stack)
    marker = tmp_path / "closed"
    resp = await stack.invoke("gens", {"mode": "endless", "path": str(marker)})
    assert await resp.content.readline() == b"0\n"
    await resp.content.readline()
    resp.close()  # the client hangs up mid-stream

    async def closed() -> bool:
        return marker.exists() and marker.read_text() != ""

    # the generator never ends by itself: only the client's leaving closes it (a timeout
    # would kill the container, which the pool check below rules out)
    assert await wait_for(closed, timeout_s=10.0), "the handler's generator was not closed"
    assert marker.read_text() in ("GeneratorExit", "CancelledError")
    (entry,) = await stack.idle_entries("gens", 1)  # back in the pool, healthy
    [record] = await stack.records("gens", 1)
    assert record["aborted"] is True and record["status"] == "success"
    assert record["bytes_streamed"] >= 4
    # the same container serves the next call
    again = await stack.invoke("gens", {"mode": "lines"})
    assert await again.read() == b'two\nlines{"n": 2}\n'
    assert again.headers["X-Hotpool-Cold-Start"] == "false"
    assert await stack.idle_entries("gens", 1) == [entry]
    assert len(stack.live_containers()) == 1


async def test_a_slow_client_holds_the_handler_back_and_main_holds_a_bounded_amount(
    hotpool_stack, tmp_path: Path
):
    count = 800  # 50 MiB in 64 KiB items
    stack = await hotpool_stack(max_stream_bytes=64 * MiB)
    await deployed(stack)
    progress = tmp_path / "made"
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        resp = await stack.invoke("gens", {"mode": "flood", "count": count, "path": str(progress)})
        assert resp.status == 200
        received = 0
        for _ in range(10):  # a slow reader: one chunk each 0.2 s
            received += len(await resp.content.readexactly(65536))
            await asyncio.sleep(0.2)
        made_while_slow = int(progress.read_text())
        while chunk := await resp.content.read(1 << 20):
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == count * 65536
    # back-pressure: the handler got no further ahead than the buffers on the way allow (with
    # no pause on Main's side it had made 792 of 800 items by then, and Main held 45 MiB)
    assert made_while_slow < count // 2, made_while_slow
    # and Main (with the Manager and the client, all in this process) held a bounded amount
    assert peak - baseline < 20 * MiB, (peak - baseline) / MiB
    [record] = await stack.records("gens", 1)
    assert record["bytes_streamed"] == count * 65536 and record["streamed"] is True
    assert record["first_byte_ms"] is not None and record["aborted"] is False


async def test_over_max_stream_bytes_the_stream_is_cut_with_response_too_large(hotpool_stack):
    stack = await hotpool_stack(max_stream_bytes=MiB)
    await deployed(stack)
    resp = await stack.invoke("gens", {"mode": "flood", "count": 64})
    body = await resp.read()
    error = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error["errorType"] == "ResponseTooLarge"
    assert len(body) - len(orjson.dumps({"hotpoolStreamError": error})) - 2 <= MiB
    [record] = await stack.records("gens", 1)
    assert record["error"]["type"] == "ResponseTooLarge" and record["aborted"] is True
    await stack.idle_entries("gens", 1)  # the function's doing: its container is sound


async def test_an_asynchronous_call_keeps_the_stream_as_its_result(hotpool_stack):
    stack = await hotpool_stack(**FAST)
    await deployed(stack)
    done = await accepted(await send(stack, "gens", {"mode": "lines"}))
    status = await settled(stack, done)
    assert status["status"] == "succeeded" and status["result"] == 'two\nlines{"n": 2}\n'
    failed = await accepted(await send(stack, "gens", {"mode": "fails"}))
    status = await settled(stack, failed)
    assert status["status"] == "failed", status
    assert status["error"]["kind"] == "function" and status["error"]["message"] == "broke after one"

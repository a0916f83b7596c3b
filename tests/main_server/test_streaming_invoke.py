"""The Invoker with a streamed answer (main_server.invoke + main_server.stream), on fakeredis
with containers scripted by tests/fakes.py's ``FakeStream``: what the caller iterates, the
record written when the stream ends, aborts, errors after the first byte, and whether the
container goes back to the pool or is discarded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from hotpool.main_server.invoke import Invoker
from hotpool.main_server.ports import CallFailed
from hotpool.main_server.stream import RelayedStream, collect
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    InvocationTimeout,
    ResponseTooLarge,
)
from hotpool.shared.settings import Settings
from tests.fakes import FakeStream, streamed
from tests.main_server import test_invoke
from tests.main_server.test_invoke import FV, Rig

pytestmark = pytest.mark.unit
rig = test_invoke.rig  # the fixture: an Invoker on fakeredis with scripted containers


def summary(**fields: Any) -> bytes:
    return b"E" + orjson.dumps({"status": "success", "duration_ms": 3.0, **fields})


async def drain(r: Rig, **kwargs: Any) -> tuple[list[tuple[bytes, bool]], Any]:
    """Run one call and read its stream whole: the chunks and the stream (after the block)."""
    async with r.invoker.invocation(FV, b"{}", "req-1", **kwargs) as done:
        assert done.stream is not None and done.status == 200
        chunks = [c async for c in done.stream]
        stream = done.stream
    return chunks, stream


async def test_items_arrive_in_order_and_the_record_is_written_when_the_stream_ends(rig):
    r = rig(
        FakeStream(
            b"dhel", b"Dlo", b'D{"n": 1}\n', summary(first_byte_ms=1.5, bytes=14, stdout="hi")
        )
    )
    await r.warm(1)
    async with r.invoker.invocation(FV, b"{}", "req-1") as done:
        assert done.stream is not None and done.stream.head is None
        assert r.records.records == []  # nothing recorded while it streams
        chunks = [c async for c in done.stream]
    assert chunks == [(b"hel", False), (b"lo", True), (b'{"n": 1}\n', True)]
    assert done.stream.error is None
    [record] = r.records.records
    assert record["streamed"] is True and record["status"] == "success"
    assert record["bytes_streamed"] == 14 and record["aborted"] is False
    assert record["first_byte_ms"] >= 0 and record["handler_first_byte_ms"] == 1.5
    assert record["duration_ms"] >= record["first_byte_ms"]
    assert record["stdout"] == "hi"
    assert await r.idle() == ["warm-0"]  # released, healthy
    assert r.transport.forgotten == [] and r.managers.removed == []
    assert r.invoker.counters["streams"] == 1


async def test_a_web_form_stream_brings_its_head(rig):
    r = rig(streamed(b"<p>", head={"statusCode": 201, "headers": {"X-A": "1"}}))
    await r.warm(1)
    chunks, stream = await drain(r)
    assert stream.head == {"statusCode": 201, "headers": {"X-A": "1"}}
    assert chunks == [(b"<p>", True)]


async def test_a_stream_ending_before_its_first_byte_is_an_ordinary_call(rig):
    error = {"type": "ValueError", "message": "bad", "traceback": "tb"}
    r = rig(
        FakeStream(summary(status="error", error=error)),
        FakeStream(summary()),  # an empty generator: a result of None
    )
    await r.warm(1)
    async with r.invoker.invocation(FV, b"{}", "req-1") as failed:
        assert failed.stream is None and failed.status == 500
        assert failed.function_error == "ValueError"
    async with r.invoker.invocation(FV, b"{}", "req-2") as empty:
        assert (empty.stream, empty.status, empty.body, empty.result) == (None, 200, b"null", None)
    assert [rec["status"] for rec in r.records.records] == ["error", "success"]
    assert all(rec["streamed"] and rec["bytes_streamed"] == 0 for rec in r.records.records)
    assert await r.idle() == ["warm-0"]


async def test_an_error_after_the_first_byte_ends_the_stream_with_the_function_error(rig):
    error = {"type": "KeyError", "message": "'k'", "traceback": "Traceback..."}
    r = rig(FakeStream(b"Dfirst", summary(status="error", error=error)))
    await r.warm(1)
    chunks, stream = await drain(r)
    assert chunks == [(b"first", True)]
    assert isinstance(stream.error, FunctionError) and stream.error.error_type == "KeyError"
    [record] = r.records.records
    assert record["status"] == "error" and record["error"]["type"] == "KeyError"
    assert record["bytes_streamed"] == 5
    assert await r.idle() == ["warm-0"]  # a function error: the container is sound


async def test_leaving_the_block_early_aborts_waits_for_the_summary_and_keeps_the_container(rig):
    container = FakeStream(b"Done", b"Dtwo", b"Dthree", summary())
    r = rig(container)
    await r.warm(1)
    async with r.invoker.invocation(FV, b"{}", "req-1") as done:
        async for chunk, _ in done.stream:
            assert chunk == b"one"
            break  # the client went away
    assert container.half_closed  # EOF sent: the bootstrap closes the generator
    assert container.read[-1].startswith(b"E") and container.ended
    [record] = r.records.records
    assert record["aborted"] is True and record["bytes_streamed"] == 3
    assert await r.idle() == ["warm-0"]
    assert r.invoker.counters["streams_aborted"] == 1


async def test_abort_called_while_iterating_stops_the_items(rig):
    r = rig(FakeStream(b"Done", b"Dtwo", b"Dthree", summary()))
    await r.warm(1)
    async with r.invoker.invocation(FV, b"{}", "req-1") as done:
        got = []
        async for chunk, _ in done.stream:
            got.append(chunk)
            done.stream.abort()
    assert got == [b"one"]
    assert r.records.records[0]["aborted"] is True
    assert await r.idle() == ["warm-0"]


async def test_an_exception_in_the_block_aborts_the_stream_and_propagates(rig):
    container = FakeStream(b"Done", b"Dtwo", summary())
    r = rig(container)
    await r.warm(1)
    with pytest.raises(ConnectionResetError):
        async with r.invoker.invocation(FV, b"{}", "req-1") as done:
            await anext(aiter(done.stream))
            raise ConnectionResetError("client gone")
    assert container.half_closed and r.records.records[0]["aborted"] is True
    assert await r.idle() == ["warm-0"]


async def test_a_container_that_ignores_the_abort_is_discarded_at_the_deadline(rig):
    # the deadline is the transport's: a FakeStream raises the TimeoutError it would raise
    r = rig(FakeStream(b"Done", b"Dtwo", TimeoutError(), deaf=True))
    await r.warm(2)
    async with r.invoker.invocation(FV, b"{}", "req-1") as done:
        await anext(aiter(done.stream))
    [record] = r.records.records
    assert record["status"] == "timeout" and record["aborted"] is True
    assert r.managers.removed == [("warm-0", False)]
    assert await r.idle() == ["warm-1"] and await r.leased() == []
    assert r.invoker.counters["timeouts"] == 1


async def test_a_stream_past_its_timeout_ends_in_a_timeout_and_is_discarded(rig):
    container = FakeStream(b"Done", TimeoutError())
    r = rig(container)
    await r.warm(1)
    chunks, stream = await drain(r)
    assert chunks == [(b"one", True)]
    assert isinstance(stream.error, InvocationTimeout)
    assert container.closed
    [record] = r.records.records
    assert (record["status"], record["error"]["type"]) == ("timeout", "Timeout")
    assert r.managers.removed == [("warm-0", False)] and await r.idle() == []


@pytest.mark.parametrize(
    "frames",
    [
        (b"Done", CallFailed("connection reset")),  # the container died mid-stream
        (b"Done", b'H{"late": "head"}'),  # a head after the first frame
        (b"Done", b"Enot json"),  # a summary that is not one
        (b"Done",),  # a stream that ends without its summary
        (b"Done", summary(), b"Dafter the end"),
    ],
)
async def test_a_broken_stream_ends_in_container_failed_and_the_container_is_discarded(rig, frames):
    r = rig(FakeStream(*frames))
    await r.warm(1)
    chunks, stream = await drain(r)
    assert chunks == [(b"one", True)]
    assert isinstance(stream.error, ContainerFailed)
    [record] = r.records.records
    assert record["status"] == "failed" and record["error"]["type"] == "ContainerFailed"
    assert r.managers.removed == [("warm-0", True)] and await r.idle() == []


async def test_a_container_that_dies_mid_stream_reports_how_it_ended(rig):
    r = rig(FakeStream(b"Done", CallFailed("connection reset")))
    r.managers.exits["warm-0"] = {"error_type": "OutOfMemory", "message": "killed"}
    await r.warm(1)
    await drain(r)
    assert r.records.records[0]["error"] == {"type": "OutOfMemory", "message": "killed"}


async def test_more_than_max_stream_bytes_aborts_with_response_too_large(rig):
    container = FakeStream(b"D" + b"x" * 60, b"D" + b"y" * 60, b"Dz", summary())
    r = rig(container)
    r.invoker = Invoker(
        Settings(max_stream_bytes=100, lease_grace_s=1.0),
        pool=r.pool, managers=r.managers, containers=r.transport, records=r.records,
        versions=r.invoker._acquirer._versions,
    )  # fmt: skip
    await r.warm(1)
    chunks, stream = await drain(r)
    assert [len(c) for c, _ in chunks] == [60]  # the item that crossed the limit is withheld
    assert isinstance(stream.error, ResponseTooLarge)
    assert container.half_closed
    [record] = r.records.records
    assert (record["status"], record["error"]["type"]) == ("error", "ResponseTooLarge")
    assert await r.idle() == ["warm-0"]  # the function's doing: the container is sound


async def test_a_bad_head_is_container_failed_before_the_caller_sees_a_stream(rig):
    r = rig(FakeStream(b"H[1, 2]", summary()))
    await r.warm(1)
    with pytest.raises(ContainerFailed):
        async with r.invoker.invocation(FV, b"{}", "req-1"):
            pass
    assert r.managers.removed == [("warm-0", True)]


async def test_collect_keeps_a_bounded_json_result():
    def stream_of(*items: bytes) -> RelayedStream:
        frames = FakeStream(*(b"D" + i for i in items[1:]), summary())
        first = b"D" + items[0]
        return RelayedStream(frames, first, name="f", timeout_s=1, max_bytes=1 << 20)

    assert orjson.loads(await collect(stream_of(b"ab", "é".encode()), 100)) == "abé"
    binary = orjson.loads(await collect(stream_of(b"\xff\x00"), 100))
    assert binary == {"isBase64Encoded": True, "body": "/wA="}
    long = await collect(stream_of(b"x" * 50, b"y" * 50), 60)
    assert len(long) > 60  # over the bound: reported truncated by the async outcome
    assert orjson.loads(long) == "x" * 50 + "y" * 11


async def test_an_unread_stream_is_still_recorded_once(rig):
    r = rig(streamed(b"a", b"b"))
    await r.warm(1)
    async with r.invoker.invocation(FV, b"{}", "req-1"):
        await asyncio.sleep(0)
    assert len(r.records.records) == 1 and r.records.records[0]["aborted"] is True

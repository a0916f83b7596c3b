"""Writing a stream to the client (main_server.stream): Server-Sent Events encoding, the raw
error marker line, and ``relay`` over real HTTP (an aiohttp test server relaying a scripted
``ResultStream``) when the stream fails or the client leaves.

``sse_events`` parses SSE as the WHATWG specification's event-stream interpretation does, so
the encoding is checked by what a browser's EventSource would deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server.stream import SseEncoder, raw_error, relay, stream_response
from hotpool.shared.errors import FunctionError, HotpoolError
from tests.helpers import free_port

pytestmark = pytest.mark.unit


def sse_events(data: bytes) -> list[tuple[str, str]]:
    """(event type, data) of each event dispatched, per the WHATWG event-stream rules."""
    events: list[tuple[str, str]] = []
    kind, lines = "message", []
    text = data.decode().replace("\r\n", "\n").replace("\r", "\n")
    for line in text.split("\n"):
        if line == "":
            if lines:
                events.append((kind, "\n".join(lines)))
            kind, lines = "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            lines.append(value)
        elif field == "event":
            kind = value
    return events


def encode(chunks: list[tuple[bytes, bool]]) -> bytes:
    encoder = SseEncoder()
    return b"".join(encoder.encode(chunk, ends) for chunk, ends in chunks)


def test_one_event_per_item_and_a_line_per_data_line():
    data = encode([(b"plain", True), (b"two\nlines", True), (b'{"n": 1}\n', True)])
    assert sse_events(data) == [("message", "plain"), ("message", "two\nlines"),
                                ("message", '{"n": 1}')]  # fmt: skip
    assert b"data: two\ndata: lines\n\n" in data


def test_an_item_in_several_chunks_is_one_event_whatever_its_line_breaks():
    chunks = [(b"a\r", False), (b"\nb\r", False), (b"c\n", False), (b"", True)]
    assert sse_events(encode(chunks)) == [("message", "a\nb\nc")]


@given(
    st.lists(st.text(alphabet="ab\r\n", min_size=1, max_size=12), min_size=1, max_size=5),
    st.data(),
)
def test_any_split_of_an_item_gives_the_event_of_the_whole_item(items, data):
    chunks: list[tuple[bytes, bool]] = []
    for item in items:
        raw = item.encode()
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=3)))
        parts = [raw[a:b] for a, b in itertools.pairwise([0, *cuts, len(raw)]) if b > a]
        chunks += [(part, n == len(parts) - 1) for n, part in enumerate(parts)]
    whole = encode([(item.encode(), True) for item in items])
    assert sse_events(encode(chunks)) == sse_events(whole)


def test_the_error_event_and_the_raw_error_line():
    fields = {"errorType": "KeyError", "errorMessage": "'k'", "requestId": "r-1"}
    assert sse_events(SseEncoder.error(fields)) == [("error", orjson.dumps(fields).decode())]
    line = raw_error(fields)
    assert line.startswith(b"\n") and line.endswith(b"\n") and line.count(b"\n") == 2
    assert orjson.loads(line) == {"hotpoolStreamError": fields}


# --- relay over HTTP ----------------------------------------------------------------------------


class ScriptedStream:
    """A ``ResultStream`` giving ``items`` (each one chunk), then ending with ``error``;
    ``gap_s`` between items. Records whether it was aborted."""

    def __init__(self, *items: bytes, error: HotpoolError | None = None, gap_s: float = 0.0):
        self.head = None
        self.items = list(items)
        self.final_error = error
        self.error: HotpoolError | None = None
        self.gap_s = gap_s
        self.aborted = asyncio.Event()
        self.given = 0

    def __aiter__(self) -> ScriptedStream:
        return self

    async def __anext__(self) -> tuple[bytes, bool]:
        if self.given == len(self.items) or self.aborted.is_set():
            self.error = self.final_error
            raise StopAsyncIteration
        if self.given:  # a gap an abort cuts short, as the bootstrap's summary would
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.aborted.wait(), self.gap_s)
        self.given += 1
        return self.items[self.given - 1], True

    def abort(self) -> None:
        self.aborted.set()


@contextlib.asynccontextmanager
async def serving(
    stream: ScriptedStream, form: str, *, handler_cancellation: bool = False
) -> AsyncIterator[str]:
    """The URL of a server relaying ``stream``; Main's own runner does not cancel a handler
    whose client left (``handler_cancellation``), aiohttp's test server does."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = stream_response({"X-Hotpool-Request-Id": "r-1"}, sse=form == "sse")
        await relay(request, response, stream, "r-1", form=form)
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("form", ["raw", "sse"])
async def test_an_error_after_the_first_byte_is_never_silent(form):
    error = FunctionError("'k'", error_type="KeyError")
    async with serving(ScriptedStream(b"one", b"two", error=error), form) as url:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200 and resp.headers["X-Hotpool-Streamed"] == "true"
            body = await resp.read()
    fields = {"errorType": "KeyError", "errorMessage": "'k'", "requestId": "r-1"}
    if form == "sse":
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert sse_events(body)[-1] == ("error", orjson.dumps(fields).decode())
    else:
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert body == b"onetwo" + raw_error(fields)


async def test_a_web_stream_that_fails_is_cut_short():
    error = FunctionError("'k'", error_type="KeyError")
    async with serving(ScriptedStream(b"<p>", error=error), "web") as url:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_a_client_that_leaves_aborts_the_stream_even_between_items(handler_cancellation):
    # the next item is far off: the relay finds the client gone while it waits
    stream = ScriptedStream(b"one", b"two", gap_s=30.0)
    async with serving(stream, "raw", handler_cancellation=handler_cancellation) as url:
        async with aiohttp.ClientSession() as session:
            resp = await session.get(url)
            assert await resp.content.readexactly(3) == b"one"
            resp.close()  # the client hangs up mid-stream
            await asyncio.wait_for(stream.aborted.wait(), timeout=1.0)

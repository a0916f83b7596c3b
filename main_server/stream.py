"""A streamed result (the handler returned a generator) on its way from the container to the
client: ``RelayedStream`` reads the container's frames (``main_server.frames``) as the
invocation's ``ResultStream``, and ``relay`` writes it to an aiohttp ``StreamResponse``.

How a stream ends, and what the client sees:

- the handler finished: the ``E`` summary says success, the response ends normally;
- a function error after the first byte, a timeout (``timeout_s`` bounds the whole stream),
  a broken container, or more than ``max_stream_bytes``: ``error`` is set, and the response
  ends with a marker, never silently: an SSE ``event: error``, or on a raw stream one last
  line ``\\n{"hotpoolStreamError": {"errorType", "errorMessage", "requestId"}}\\n``; a web
  response (/fn/) is cut short instead (its body is the app's, not ours to add to), so the
  client sees an incomplete chunked body;
- the client went away (a write fails, or its connection is found closed while Main waits for
  the next item): ``abort()`` half-closes the container connection, and the bootstrap closes
  the handler's generator (``GeneratorExit``) and still sends its summary.

Back-pressure: an item's chunk is read from the container only after the previous one was
written (aiohttp's ``write`` waits for the socket to drain), and the container connection
stops reading above ``stream_buffer_bytes`` (``main_server.container_client``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from hotpool.main_server.frames import END, HEAD, ITEM_END, PART
from hotpool.main_server.ports import CallFailed, ContainerStream, ResultStream
from hotpool.main_server.reply import function_error
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvocationTimeout,
    ResponseTooLarge,
)

log = logging.getLogger(__name__)

# how often a relay waiting for the next item looks whether its client is still there (aiohttp
# tells a handler only when it writes): a client that left is noticed within this time
client_check_s = 0.25
SSE_TYPE = "text/event-stream"
RAW_TYPE = "application/octet-stream"


def _summary(frame: bytes) -> dict[str, Any]:
    """The ``E`` frame's summary, or CallFailed when it is not one."""
    try:
        summary = orjson.loads(frame[1:])
    except orjson.JSONDecodeError:
        summary = None
    if not isinstance(summary, dict) or summary.get("status") not in ("success", "error"):
        raise CallFailed(f"the container's stream summary is malformed: {frame[:80]!r}")
    return summary


async def open_stream(
    frames: ContainerStream, status: int, *, name: str, timeout_s: float, max_bytes: int
) -> dict[str, Any] | RelayedStream:
    """The container's streamed answer, from its first frame: a ``RelayedStream``, or the
    summary as a non-streamed reply when the stream ends before any byte (an error raised
    before the first item, or an empty generator: its result is None). Raises CallFailed."""
    try:
        if status != 200:
            raise CallFailed(f"the container answered {status} with a stream")
        first = await frames.frame()
        if first is None:
            raise CallFailed("the container's stream ended without a summary")
        if first[0] != END:
            return RelayedStream(frames, first, name=name, timeout_s=timeout_s, max_bytes=max_bytes)
        reply = _summary(first)
        if await frames.frame() is not None:
            raise CallFailed("the container sent frames after its stream summary")
    except BaseException:
        frames.close()
        raise
    reply["result"] = None
    reply["streamed"] = True
    return reply


class RelayedStream:
    """The ``ResultStream`` of a container's streamed answer (see the module docstring)."""

    def __init__(
        self, frames: ContainerStream, first: bytes, *, name: str, timeout_s: float, max_bytes: int
    ) -> None:
        self.head: dict[str, Any] | None = None
        self.error: HotpoolError | None = None
        self.bytes = 0  # payload handed to the consumer
        self.first_byte_at: float | None = None  # perf_counter time of the first payload
        self.summary: dict[str, Any] | None = None  # the E frame
        self.fate = "ok"  # "timeout" or "failed" when the container must be discarded
        self.aborted = False
        self._frames = frames
        self._pending: bytes | None = first
        self._name = name
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._stopped = False
        if first[0] == HEAD:
            try:
                head = orjson.loads(first[1:])
            except orjson.JSONDecodeError:
                head = None
            if not isinstance(head, dict):
                raise CallFailed("the container's stream head is not a JSON object")
            self.head, self._pending = head, None

    def __aiter__(self) -> RelayedStream:
        return self

    async def __anext__(self) -> tuple[bytes, bool]:
        if self._stopped:
            raise StopAsyncIteration
        frame = self._pending
        self._pending = None
        try:
            if frame is None:
                frame = await self._frames.frame()
            if frame is None:
                raise CallFailed("the container's stream ended without a summary")
            if frame[0] == END:
                self._end(frame)
            elif frame[0] == HEAD:
                raise CallFailed("the container sent a stream head after the first frame")
        except TimeoutError:
            self._fail("timeout", InvocationTimeout(self._timeout_message()))
        except CallFailed as exc:
            self._fail("failed", ContainerFailed(f"the container failed mid-stream: {exc}"))
        if self._stopped or self.aborted:  # an abort's leftovers are drained by settle()
            self._stopped = True
            raise StopAsyncIteration
        assert frame is not None and frame[0] in (PART, ITEM_END)
        payload = frame[1:]
        self.bytes += len(payload)
        if self.bytes > self._max_bytes:
            self.abort()
            self._stopped = True
            self.error = ResponseTooLarge(
                f"{self._name} streamed more than the limit of {self._max_bytes} bytes "
                "(HOTPOOL_MAX_STREAM_BYTES)",
                error_type="ResponseTooLarge",
            )
            raise StopAsyncIteration
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()
        return payload, frame[0] == ITEM_END

    def abort(self) -> None:
        if not self.aborted and self.summary is None and self.fate == "ok":
            self.aborted = True
            self._frames.half_close()

    async def settle(self) -> None:
        """Read the stream to its summary, aborting it first if the consumer stopped early;
        bounded by the call's deadline. ``fate`` then says whether the container is sound."""
        if self.summary is None and self.fate == "ok":
            self.abort()
            try:
                while self.summary is None:
                    frame = await self._frames.frame()
                    if frame is None:
                        raise CallFailed("the container's stream ended without a summary")
                    if frame[0] == END:
                        self._end(frame)
            except TimeoutError:
                self._fail("timeout", InvocationTimeout(self._timeout_message()))
            except CallFailed as exc:
                self._fail("failed", ContainerFailed(f"the container failed mid-stream: {exc}"))
        if self.fate != "ok":
            return
        try:  # the terminating chunk: the connection is then free again (closed if aborted)
            if await self._frames.frame() is not None:
                raise CallFailed("the container sent frames after its stream summary")
        except (CallFailed, TimeoutError) as exc:
            self._frames.close()
            if not self.aborted:  # an aborted stream's container may close at once
                self._fail("failed", ContainerFailed(f"the container failed mid-stream: {exc}"))

    def describe(self, record: dict[str, Any], begun: float) -> None:
        """The stream's part of its execution record (``begun``: the invocation's
        perf_counter start), and Main's verdict where Main ended it: a timeout, a broken
        container, the byte limit."""
        at = self.first_byte_at
        record.update(
            streamed=True,
            bytes_streamed=self.bytes,
            first_byte_ms=None if at is None else round((at - begun) * 1000, 3),
            handler_first_byte_ms=(self.summary or {}).get("first_byte_ms"),
            aborted=self.aborted,
        )
        error = self.error
        if self.fate != "ok":
            assert error is not None
            record["status"] = "timeout" if self.fate == "timeout" else "failed"
            record["error"] = {"type": error.code, "message": error.message}
        elif isinstance(error, ResponseTooLarge):
            record["status"] = "error"
            record["error"] = {"type": error.error_type, "message": error.message}

    def _end(self, frame: bytes) -> None:
        self.summary = _summary(frame)
        self._stopped = True
        if self.summary["status"] != "success" and self.error is None:
            self.error = function_error(self.summary)[0]

    def _fail(self, fate: str, error: HotpoolError) -> None:
        self.fate = fate
        self._stopped = True
        self._frames.close()
        if self.error is None:
            self.error = error

    def _timeout_message(self) -> str:
        return (
            f"{self._name} streamed past its timeout of {self._timeout_s:g} s; "
            "its container was stopped"
        )


def error_fields(error: Exception, request_id: str) -> dict[str, str]:
    """What a client is told of a stream's error: Lambda's errorType and errorMessage."""
    if isinstance(error, FunctionError):
        error_type, message = error.error_type, error.message
    elif isinstance(error, HotpoolError):
        error_type, message = error.code, error.message
    else:
        error_type, message = type(error).__name__, str(error)
    return {"errorType": error_type, "errorMessage": message, "requestId": request_id}


class SseEncoder:
    """Items as Server-Sent Events: one event per item, each line of it a ``data:`` line
    (``\\r\\n``, ``\\r`` and ``\\n`` all end a line, as SSE reads them). An item's one trailing
    line break is dropped, so a JSON item (one JSON line) is one ``data:`` line."""

    def __init__(self) -> None:
        self._open = False  # inside an item
        self._cr = False  # the last chunk ended with CR: a LF opening the next one is its pair
        self._held = False  # a line break held back: the item's last one is dropped

    def encode(self, chunk: bytes, ends_item: bool) -> bytes:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        text = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._held:
            text = b"\n" + text
        self._held = text.endswith(b"\n")
        if self._held:
            text = text[:-1]
        out = text.replace(b"\n", b"\ndata: ")
        if not self._open:
            out = b"data: " + out
        self._open = not ends_item
        if ends_item:
            self._cr = self._held = False
            out += b"\n\n"
        return out

    @staticmethod
    def error(fields: dict[str, str]) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(fields) + b"\n\n"


def raw_error(fields: dict[str, str]) -> bytes:
    """The last line of a raw stream that ended in error."""
    return b"\n" + orjson.dumps({"hotpoolStreamError": fields}) + b"\n"


def stream_response(headers: Mapping[str, str], *, sse: bool) -> web.StreamResponse:
    """The response /invoke relays a stream in: chunked, raw bytes or Server-Sent Events."""
    response = web.StreamResponse(headers=headers)
    response.headers["X-Hotpool-Streamed"] = "true"
    response.content_type = SSE_TYPE if sse else RAW_TYPE
    if sse:
        response.headers["Cache-Control"] = "no-cache"
    return response


async def relay(
    request: web.Request,
    response: web.StreamResponse,
    stream: ResultStream,
    request_id: str,
    *,
    form: str = "raw",
) -> None:
    """Write ``stream`` to ``response`` (prepared here) in ``form``: "raw" (the items' bytes),
    "sse" (one event per item) or "web" (raw; an error cuts the response short). A client
    that goes away aborts the stream."""
    sse = SseEncoder() if form == "sse" else None
    watcher = asyncio.create_task(_watch_client(request, stream))
    done = False
    try:
        await response.prepare(request)
        async for chunk, ends_item in stream:
            if sse is not None:
                await response.write(sse.encode(chunk, ends_item))
            elif chunk:  # an empty chunk would end a chunked body
                await response.write(chunk)
        if stream.error is not None:
            fields = error_fields(stream.error, request_id)
            if form == "web":
                log.info("web stream %s ended in error: %s", request_id, fields)
                if request.transport is not None:
                    request.transport.close()  # the client sees the body cut short
                done = True
                return
            await response.write(SseEncoder.error(fields) if sse else raw_error(fields))
        await response.write_eof()
        done = True
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
        pass
    finally:
        watcher.cancel()
        if not done:  # the client left: a failed write, or the handler was cancelled
            stream.abort()


async def _watch_client(request: web.Request, stream: ResultStream) -> None:
    while True:
        await asyncio.sleep(client_check_s)
        transport = request.transport
        if transport is None or transport.is_closing():
            log.debug("the client of %s left mid-stream", request.path)
            stream.abort()
            return


async def collect(stream: ResultStream, limit: int) -> bytes:
    """A stream's items as one JSON result: a string when the bytes are UTF-8, else
    ``{"isBase64Encoded": true, "body": ...}``. At most ``limit`` + 1 bytes are kept (the rest
    is read and dropped, so the handler runs to its end): a longer result is longer than
    ``limit`` and so reported truncated."""
    kept = bytearray()
    async for chunk, _ in stream:
        if len(kept) <= limit:
            kept += chunk[: limit + 1 - len(kept)]
    with contextlib.suppress(UnicodeDecodeError):
        return orjson.dumps(kept.decode())
    return orjson.dumps({"isBase64Encoded": True, "body": base64.b64encode(kept).decode()})

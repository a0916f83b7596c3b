"""Main's HTTP/1.1 client for calling containers: kept-alive connections, one call at a time.

The invoke hot path speaks to exactly one peer, hotpool's own bootstrap
(``manager/runtime/python``), whose answers carry a Content-Length, except a streamed result
(the handler returned a generator): that comes chunked, one frame per chunk
(``main_server.frames``), and ``call`` hands it over as a ``ContainerStream`` read frame by
frame. The head parser branches on Transfer-Encoding, so a Content-Length answer costs what
it did before streaming existed. A profile of
Main showed aiohttp's general-purpose client spending ~125 µs of CPU per call where writing
the request and reading that answer on an asyncio protocol takes ~45 µs, so the hot path
uses this small client; everything else (Manager, health checks) keeps aiohttp.

This is the real ``ContainerTransport`` (``main_server.ports``). Errors, most specific first:

- ``NotDelivered`` (also named ``ConnectFailed`` here): the connection could not be opened, so
  no byte reached the container (the caller may send the request elsewhere).
- ``CallFailed``: the connection broke or the answer was malformed after the request was
  (perhaps) delivered; it must not be sent again.
- ``AnswerTooLarge`` (a ``CallFailed``): the answer's Content-Length is over the client's
  ``max_answer_bytes``; it is refused from its head, before its body is read, so a function
  returning hundreds of megabytes costs Main a few kilobytes. Its connection is dropped.

A stream holds at most about ``stream_buffer_bytes`` of frames not yet taken: above it the
connection stops reading the socket (``pause_reading``), so a slow consumer slows the
container instead of filling Main's memory. ``ContainerStream.half_close`` sends EOF
(``write_eof``): the bootstrap's signal to close the handler's generator and end the stream.

Connections are kept per ``host:port`` and reused while the container keeps them open (the
ADR-000 design opened one per call and piled up TIME_WAIT sockets). ``keepalive=False``
restores that behaviour, for the benchmark that measures it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import cast

from hotpool.main_server.frames import ChunkDecoder
from hotpool.main_server.ports import AnswerTooLarge, CallFailed, ContainerStream
from hotpool.shared.errors import NotDelivered

log = logging.getLogger(__name__)

max_head_bytes = 64 * 1024
max_body_bytes = 300 * 1024 * 1024  # the bootstrap's own request limit; the default bound
default_stream_buffer_bytes = 256 * 1024
CHUNKED = -1  # the Content-Length of a chunked answer, in the parsed head

# this transport's name for NotDelivered: no connection was opened, the request never left Main
ConnectFailed = NotDelivered


class _Connection(asyncio.Protocol):
    """One TCP connection and the answer to the request in flight on it."""

    def __init__(self, max_answer_bytes: int, stream_buffer_bytes: int) -> None:
        self.max_answer_bytes = max_answer_bytes
        self.stream_buffer_bytes = stream_buffer_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._head: tuple[int, int, bool] | None = None  # status, length, close
        # the answer: (status, body, close); body None for a stream, read with next_frame
        self._answer: asyncio.Future[tuple[int, bytes | None, bool]] | None = None
        # a streamed answer: its decoder, the frames not yet taken and their bytes
        self._decoder: ChunkDecoder | None = None
        self._frames: deque[bytes] = deque()
        self._held = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes | None, bool]]:
        assert self.transport is not None and self._answer is None and self._decoder is None
        self._answer = asyncio.get_running_loop().create_future()
        self._buffer.clear()
        self._head = None
        self.transport.write(request)
        return self._answer

    def data_received(self, data: bytes) -> None:
        if self._decoder is not None:
            self._stream_received(data)
            return
        if self._answer is None or self._answer.done():
            self._fail(CallFailed("the container sent bytes nobody asked for"))
            return
        self._buffer += data
        try:
            self._parse()
        except CallFailed as exc:
            self._fail(exc)

    def _parse(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > max_head_bytes:
                    raise CallFailed("the container's answer headers are too long")
                return
            self._head = _parse_head(bytes(self._buffer[:end]), self.max_answer_bytes)
            del self._buffer[: end + 4]
        status, length, close = self._head
        if length == CHUNKED:
            self._begin_stream(status, close)
        elif len(self._buffer) >= length:
            assert self._answer is not None
            body = bytes(self._buffer[:length])
            if len(self._buffer) > length:
                raise CallFailed("the container sent more than its Content-Length")
            self._buffer.clear()
            answer, self._answer = self._answer, None
            answer.set_result((status, body, close))

    def _begin_stream(self, status: int, close: bool) -> None:
        assert self._answer is not None
        self._decoder = ChunkDecoder(self.max_answer_bytes)
        self._frames.clear()
        self._held = 0
        self._error = None
        answer, self._answer = self._answer, None
        answer.set_result((status, None, close))
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest:
            self._stream_received(rest)

    def _stream_received(self, data: bytes) -> None:
        assert self._decoder is not None and self.transport is not None
        try:
            frames = self._decoder.feed(data)
        except CallFailed as exc:
            self._fail(exc)
            return
        for frame in frames:
            self._held += len(frame)
            self._frames.append(frame)
        if not self._paused and self._held + self._decoder.pending_bytes > self.stream_buffer_bytes:
            # back-pressure: the container's sends block until the consumer catches up
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    async def next_frame(self) -> bytes | None:
        """The stream's next frame, None after its end; raises CallFailed. Cancelling the
        wait loses nothing."""
        while not self._frames:
            if self._decoder is None or self._decoder.done:
                return None
            if self._error is not None:
                raise self._error
            if self._paused and not self.closed:
                # nothing whole is held, only part of a frame (a long summary): read on
                self._paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._frames.popleft()
        self._held -= len(frame)
        if self._paused and self._held < self.stream_buffer_bytes and not self.closed:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return frame

    def end_stream(self) -> None:
        """The stream was read to its end: the connection may serve the next call."""
        self._decoder = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail(CallFailed(f"the container closed the connection{reason}"))

    def abort(self, reason: str) -> None:
        """Drop the connection now; a call in flight on it fails."""
        self._fail(CallFailed(reason))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self._answer = None
        if self._decoder is not None and not self._decoder.done and self._error is None:
            self._error = exc
            self._wake()
        if self.transport is not None:
            self.transport.abort()


def _parse_head(head: bytes, max_answer_bytes: int) -> tuple[int, int, bool]:
    """(status, Content-Length or CHUNKED, the server closes) from a response head; an answer
    longer than ``max_answer_bytes`` is refused here, before its body is read."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise CallFailed(f"the container did not answer HTTP: {lines[0][:80]!r}")
    length = -1
    chunked = False
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise CallFailed(f"the container sent Transfer-Encoding {value[:40]!r}")
            chunked = True
    if chunked:  # a Content-Length beside it means nothing (RFC 9112 §6.3)
        return int(parts[1]), CHUNKED, close
    if not 0 <= length <= max_body_bytes:
        raise CallFailed("the container's answer has no valid Content-Length")
    if length > max_answer_bytes:
        raise AnswerTooLarge(length, max_answer_bytes)
    return int(parts[1]), length, close


class _Stream:
    """A ``ContainerStream``: the frames of one chunked answer, each read within the call's
    deadline; the connection serves the next call once the stream was read to its end."""

    def __init__(
        self, client: ContainerClient, address: str, conn: _Connection, deadline: float, close: bool
    ) -> None:
        self._client = client
        self._address = address
        self._conn = conn
        self._deadline = deadline
        self._close = close
        self._over = False

    async def frame(self) -> bytes | None:
        try:
            async with asyncio.timeout_at(self._deadline):
                frame = await self._conn.next_frame()
        except TimeoutError:
            self.close()
            raise
        if frame is None and not self._over:
            self._over = True
            self._conn.end_stream()
            self._client._give_back(self._address, self._conn, self._close)
        return frame

    def half_close(self) -> None:
        transport = self._conn.transport
        if not self._conn.closed and transport is not None and transport.can_write_eof():
            transport.write_eof()
            self._close = True  # the container closes it after the stream's end

    def close(self) -> None:
        if not self._over:
            self._over = True
            self._conn.abort("the stream was abandoned")


class ContainerClient:
    """POSTs to containers over kept-alive connections, one request per connection at a time."""

    def __init__(
        self,
        *,
        keepalive: bool = True,
        idle_timeout_s: float = 75.0,
        max_answer_bytes: int = max_body_bytes,
        stream_buffer_bytes: int = default_stream_buffer_bytes,
    ) -> None:
        self._keepalive = keepalive
        self._max_answer_bytes = min(max_answer_bytes, max_body_bytes)
        self._stream_buffer_bytes = stream_buffer_bytes
        self._idle_timeout_s = idle_timeout_s
        self._idle: dict[str, list[_Connection]] = {}
        self.opened = 0  # connections opened since start: what keep-alive saves

    async def post(
        self, address: str, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body); raises NotDelivered, CallFailed (also
        for a streamed answer) or TimeoutError (after which the connection is dropped)."""
        status, answer = await self.call(address, path, body, headers, timeout_s)
        if not isinstance(answer, bytes):
            answer.close()
            raise CallFailed("the container streamed its answer")
        return status, answer

    async def call(
        self, address: str, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, bytes | ContainerStream]:
        """Send one request and return (status, body), the body a ``ContainerStream`` when the
        answer is chunked (its frames are read within the same ``timeout_s``); raises
        NotDelivered, CallFailed or TimeoutError (the connection is then dropped)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                conn = self._take(address) or await self._open(address)
        except TimeoutError:  # still connecting: nothing was sent
            raise NotDelivered(f"connecting to {address} timed out") from None
        async with asyncio.timeout_at(deadline):
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {len(body)}\r\n"
                f"{head}\r\n"
            ).encode("latin-1") + body
            try:
                status, answer, close = await conn.send(request)
            except BaseException:
                # cancelled or timed out mid-call: the answer may still come, on nobody's behalf
                conn.abort("abandoned mid-call")
                raise
        if answer is None:
            return status, _Stream(self, address, conn, deadline, close)
        self._give_back(address, conn, close)
        return status, answer

    def _take(self, address: str) -> _Connection | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_timeout_s:
                return conn
            conn.abort("idle too long")
        self._idle.pop(address, None)
        return None

    async def _open(self, address: str) -> _Connection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self._max_answer_bytes, self._stream_buffer_bytes),
                host,
                int(port),
            )
        except (OSError, ValueError) as exc:
            raise NotDelivered(f"cannot connect to {address}: {exc}") from exc
        self.opened += 1
        return conn

    def _give_back(self, address: str, conn: _Connection, close: bool) -> None:
        if close or not self._keepalive or conn.closed:
            assert conn.transport is not None
            conn.closed = True
            conn.transport.close()  # an orderly close: this side keeps the TIME_WAIT
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(address, []).append(conn)

    def forget(self, address: str) -> None:
        """Close the idle connections to a container that is gone."""
        for conn in self._idle.pop(address, []):
            conn.abort("container removed")

    async def close(self) -> None:
        for address in list(self._idle):
            self.forget(address)

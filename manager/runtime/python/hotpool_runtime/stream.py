"""A generator's items sent to Main while they are produced: the chunked frame stream.

The /invoke answer for a handler that returned a generator or an async generator, or the web
form, a dict whose ``body`` is one. Every HTTP chunk carries one frame, a kind byte and its
payload: ``H`` the web form's head (the dict without ``body``, JSON), first; ``d`` a part of
an item, more of it follows; ``D`` the last (or only) part of an item; ``E`` the summary
(JSON: status, error, duration_ms, peak_memory_mb, stdout, stderr, bytes, first_byte_ms,
aborted), always last, before the terminating chunk. An item is bytes as they are, str as
UTF-8, anything else one JSON line; an empty item is skipped; a payload is at most 64 KiB.

Back-pressure: the next item is asked for only once the last one was handed to the kernel.
Abort: Main half-closes its side (SHUT_WR). The end of its input is looked for between items
(a peek that leaves a pipelined request unread) and, for an async generator, while the next
item is awaited (that wait is cancelled); the generator is then closed, the summary still sent
(``aborted``) and the connection closed. Past the call's deadline the generator is closed too
and the summary names Sandbox.Timedout. A sync generator can only be stopped at a ``yield``.
Imported at the first streamed call; asyncio only for an async generator.
"""

from __future__ import annotations

import json
import resource
import socket
import time

from . import reaping
from .errors import describe, marshal_error
from .http11 import StreamingBody
from .invoke import GENERATOR_TYPES, lambda_default

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    import asyncio
    from collections.abc import AsyncGenerator, Generator, Iterator
    from typing import Any

    from .capture import CapturedOutput
    from .context import LambdaContext
    from .loader import LoadedFunction

FRAME_PAYLOAD_BYTES = 64 * 1024
HTTP_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-hotpool-stream\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: %s\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"
# the kernel's send buffer for a streamed answer (it doubles it): left to autotuning it grows
# to megabytes that a paused reader lets the generator produce ahead of it
SEND_BUFFER_BYTES = 256 * 1024
# how long a cancelled or closed async generator may take to stop before the summary goes out
CLOSE_GRACE_S = 1.0
_ASYNC_GENERATOR = GENERATOR_TYPES[1]


def chunk(kind: bytes, payload: bytes | memoryview) -> bytes:
    """One frame as one HTTP chunk."""
    return b"%x\r\n%b%b\r\n" % (len(payload) + 1, kind, payload)


def encode(item: Any) -> memoryview:
    """An item's bytes; raises when it cannot be encoded (a str with lone surrogates, a value
    JSON cannot hold)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return memoryview(item).cast("B")
    if isinstance(item, str):
        return memoryview(item.encode())
    text = json.dumps(item, allow_nan=False, default=lambda_default)
    return memoryview(f"{text}\n".encode())


def item_chunks(data: memoryview) -> Iterator[bytes]:
    """An encoded item as ``d`` chunks and a last ``D`` one; nothing for an empty item."""
    last = (len(data) - 1) // FRAME_PAYLOAD_BYTES * FRAME_PAYLOAD_BYTES
    for start in range(0, len(data), FRAME_PAYLOAD_BYTES):
        yield chunk(b"d" if start < last else b"D", data[start : start + FRAME_PAYLOAD_BYTES])


def peer_closed(sock: socket.socket) -> bool | None:
    """True once Main shut its side (or reset it), False when request bytes wait unread (a
    pipelined request, left where it is), None when nothing has arrived."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return None
    except OSError:
        return True


class StreamedResult(StreamingBody):
    """The answer of one call whose handler returned a generator (see the module docstring).

    Built by ``invoke`` with the call's output capture still on; ``write`` produces and sends
    the items, stops the capture and kills what the call left running.
    """

    def __init__(
        self,
        loaded: LoadedFunction,
        result: Any,
        output: CapturedOutput,
        started: float,
        context: LambdaContext,
        deadline_ms: float,
    ) -> None:
        super().__init__()
        self._head = None
        if isinstance(result, dict):
            self._head = {key: value for key, value in result.items() if key != "body"}
            result = result["body"]
        self._source = result
        self._loaded = loaded
        self._output = output
        self._started = started  # perf_counter() when the handler was called
        self._deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
        self._timeout_message = (
            f"RequestId: {context.aws_request_id} Error: Task timed out after "
            f"{deadline_ms / 1000:.2f} seconds"
        )
        self.bytes = 0
        self.first_byte_ms: float | None = None
        self.aborted = False
        self.timed_out = False

    def write(self, sock: socket.socket, keep_alive: bool) -> bool:
        """Send the items as they come, then the summary; True when the connection stays."""
        opening, error = self._opening(keep_alive)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:  # a socket already dead: the first send finds out
            pass
        try:
            if isinstance(self._source, _ASYNC_GENERATOR):
                error = self._pump_async(sock, opening, error)
            else:
                error = self._pump(sock, opening, error)
            duration_ms = (time.perf_counter() - self._started) * 1000
        finally:
            self._output.stop()
            reaping.kill_leftovers()
        if self.timed_out and error is None:
            error = {"type": "Sandbox.Timedout", "message": self._timeout_message}
            error.update(traceback="", stack_trace=[])
        summary = {
            "status": "success" if error is None else "error",
            **({} if error is None else {"error": error}),
            "duration_ms": duration_ms,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **self._output.logs(),
            "bytes": self.bytes,
            "first_byte_ms": self.first_byte_ms,
            "aborted": self.aborted,
        }
        # the call is over: free the container before its last frame, as a non-streamed reply
        # does before it is sent; once Main has the summary it may hand the container to the
        # next call, which must not find it still busy
        self.finish()
        try:
            sock.sendall(chunk(b"E", json.dumps(summary).encode()) + LAST_CHUNK)
        except OSError:
            return False
        return keep_alive and not self.aborted

    def _opening(self, keep_alive: bool) -> tuple[bytes, dict[str, Any] | None]:
        """The HTTP head and the web form's ``H`` frame, or the error that makes it unsendable."""
        head = HTTP_HEAD % (b"keep-alive" if keep_alive else b"close")
        if self._head is None:
            return head, None
        try:
            encoded = json.dumps(self._head, allow_nan=False, default=lambda_default).encode()
            if len(encoded) > FRAME_PAYLOAD_BYTES:
                raise ValueError(f"all but its body is over {FRAME_PAYLOAD_BYTES} bytes")
        except Exception as exc:
            return head, marshal_error(exc)
        return head + chunk(b"H", encoded), None

    def _stopping(self, sock: socket.socket) -> bool:
        """Whether to stop before the next item: Main aborted, or the deadline passed."""
        if peer_closed(sock):
            self.aborted = True
        elif time.monotonic() >= self._deadline:
            self.timed_out = True
        return self.aborted or self.timed_out

    def _count(self, data: memoryview) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = (time.perf_counter() - self._started) * 1000
        self.bytes += len(data)

    def _pump(
        self, sock: socket.socket, opening: bytes, error: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Send a sync generator's items; the error to report, if any."""
        gen: Generator[Any, None, None] = self._source
        try:
            sock.sendall(opening)
            while error is None and not self._stopping(sock):
                try:
                    item = next(gen)
                except StopIteration:
                    return None
                except BaseException as exc:  # the server must outlive anything user code raises
                    return describe(exc)
                try:
                    data = encode(item)
                except Exception as exc:
                    error = marshal_error(exc)
                    break
                self._count(data)
                for frame in item_chunks(data):
                    sock.sendall(frame)
        except OSError:  # Main went away altogether
            self.aborted = True
        try:
            gen.close()  # GeneratorExit at the yield it waits at
        except BaseException as exc:  # raised by its finally, or a yield after GeneratorExit
            return describe(exc)
        return error

    def _pump_async(
        self, sock: socket.socket, opening: bytes, error: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Send an async generator's items on the function's persistent loop."""
        import asyncio

        loop = self._loaded.event_loop()
        asyncio.set_event_loop(loop)
        sock.setblocking(False)  # sent with loop.sock_sendall: the function's tasks run on
        try:
            return loop.run_until_complete(self._apump(loop, sock, opening, error))
        finally:
            sock.setblocking(True)

    async def _apump(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        opening: bytes,
        error: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        import asyncio

        agen: AsyncGenerator[Any, None] = self._source
        closed = loop.create_future()  # done once Main shut its side
        loop.add_reader(sock.fileno(), _watch_for_eof, loop, sock, closed)
        try:
            await loop.sock_sendall(sock, opening)
            while error is None and not self._stopping(sock):
                step = loop.create_task(_anext(agen))
                remaining_s = max(0.0, self._deadline - time.monotonic())
                first = asyncio.FIRST_COMPLETED
                await asyncio.wait({step, closed}, timeout=remaining_s, return_when=first)
                if not step.done():
                    self.aborted = closed.done()
                    self.timed_out = not self.aborted
                    error = await _cancel(step)
                    break
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return None
                except BaseException as exc:  # user code may raise anything
                    return describe(exc)
                try:
                    data = encode(item)
                except Exception as exc:
                    error = marshal_error(exc)
                    break
                self._count(data)
                for frame in item_chunks(data):
                    await loop.sock_sendall(sock, frame)
        except OSError:  # Main went away altogether
            self.aborted = True
        finally:
            loop.remove_reader(sock.fileno())
        try:
            # GeneratorExit at the yield it waits at
            await asyncio.wait_for(agen.aclose(), CLOSE_GRACE_S)
        except BaseException as exc:  # raised by its finally, or it would not stop
            return describe(exc)
        return error


async def _anext(agen: AsyncGenerator[Any, None]) -> Any:
    return await agen.__anext__()


async def _cancel(step: asyncio.Task[Any]) -> dict[str, Any] | None:
    """Cancel a pending ``__anext__`` (the generator sees CancelledError at its ``await``);
    what it raised instead of stopping, if anything."""
    import asyncio

    step.cancel()
    await asyncio.wait({step}, timeout=CLOSE_GRACE_S)
    if not step.done() or step.cancelled():
        return None
    exc = step.exception()
    return None if exc is None or isinstance(exc, StopAsyncIteration) else describe(exc)


def _watch_for_eof(loop: asyncio.AbstractEventLoop, sock: socket.socket, closed: Any) -> None:
    """Reader callback: Main shutting its side completes ``closed``; request bytes (a pipelined
    request, which Main never sends behind a stream) end the watch, left unread."""
    state = peer_closed(sock)
    if state is None:
        return
    loop.remove_reader(sock.fileno())
    if state and not closed.done():
        closed.set_result(None)

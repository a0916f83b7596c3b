"""A custom runtime's streamed response, relayed to Main as the frame stream of ``stream``.

Lambda lets a runtime stream its response: it POSTs .../invocation/{id}/response with
``Lambda-Runtime-Function-Response-Mode: streaming`` and ``Transfer-Encoding: chunked`` and
writes the body as it is produced; an error found mid-stream goes in the trailers
``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body`` (base64 of
Lambda's error JSON). A body of ``Content-Type: application/vnd.awslambda.http-integration-
response`` (AWS's ``HttpResponseStream.from``) opens with a JSON prelude (statusCode, headers,
cookies) and 8 NUL bytes. The Runtime API leaves such a body unread (``runtime_api``); the
relay hands it to the /invoke answer, ``StreamedResponse``, which reads it on /invoke's thread:

- each chunk of the runtime's body is an item (``d`` frames, ``D`` at the chunk's end); the
  prelude is the web form's head, ``H`` {"statusCode": 200, ...prelude}, as Node's
  ``HttpResponseStream.from`` is in ``streamify.js``; without one, a Content-Type the runtime
  set (``setContentType``) is the head's only header;
- the end of the body answers the runtime 202 and sends the summary ``E``: an error trailer
  makes it a function error (Main's error marker); a body cut short or malformed is
  Lambda's Runtime.TruncatedResponse (the runtime is answered 400 and its connection closed);
- back-pressure: the runtime's socket is read (one receive, at most ``RECV_BYTES``) only once
  the last piece went to Main's socket, whose send buffer is capped as ``stream``'s is;
- Main half-closing its side (its client left, the byte limit, its timeout) aborts: the
  runtime's connection is closed under it (its write fails, as on Lambda), the summary says
  ``aborted``; a runtime that does not poll for its next event within ``REPOLL_GRACE_S``
  ends the container after the summary, as one that died would.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time

from .chunked import ChunkedBody, SizedBody
from .errors import RequestError
from .http11 import StreamingBody
from .outcomes import exit_error, plain_error, posted_error
from .runtime_api import RECV_BYTES, RESPONSE_MODE_HEADER, error_answer
from .stream import (
    FRAME_PAYLOAD_BYTES,
    HTTP_HEAD,
    LAST_CHUNK,
    SEND_BUFFER_BYTES,
    chunk,
    peer_closed,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from typing import Any

    from .http11 import Request
    from .runtime_api import Answer

PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
ERROR_TYPE_TRAILER = "lambda-runtime-function-error-type"
ERROR_BODY_TRAILER = "lambda-runtime-function-error-body"
ACCEPTED: Answer = (202, {}, b'{"status":"OK"}')
# how long a runtime whose stream was cut has to poll for its next event before the container
# is ended (AWS's Node client polls again at once; one that hung would never answer a call)
REPOLL_GRACE_S = 2.0
# how long a runtime that closed its stream's connection has to be seen exiting (it died)
EXIT_NOTICE_S = 0.5


class Handoff:
    """A streamed POST handed from its Runtime API thread to /invoke's, and back once read:
    ``answer`` is what the runtime is told (None: its connection was closed)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.answer: Answer | None = None
        self.finished = False


class Prelude:
    """Splits the http-integration-response prelude off the front of a body."""

    def __init__(self) -> None:
        self._held = bytearray()
        self.head: dict[str, Any] | None = None
        self.held = False  # some of a prelude was received

    def feed(self, data: bytes) -> bytes:
        """The body's bytes past the prelude (none until it is complete); raises ValueError
        for a prelude that is not a JSON object, or has no delimiter within a frame."""
        self._held += data
        self.held = bool(self._held)
        end = self._held.find(DELIMITER)
        if end < 0:
            if len(self._held) > FRAME_PAYLOAD_BYTES:
                raise ValueError(f"no 8 NUL bytes end the prelude in {FRAME_PAYLOAD_BYTES} bytes")
            return b""
        prelude = json.loads(self._held[:end])
        if not isinstance(prelude, dict):
            raise ValueError("the prelude is not a JSON object")
        self.head = {"statusCode": 200, **prelude}
        rest = bytes(self._held[end + len(DELIMITER) :])
        self._held = bytearray()
        return rest


class StreamedResponse(StreamingBody):
    """The /invoke answer of a call whose runtime streams (see the module docstring).

    ``relay`` is the ``Relay``: it is told when the runtime's body is over (``stream_ended``),
    and gives the call's output, memory and whether the runtime is still there.
    """

    def __init__(self, relay: Any, handoff: Handoff, request_id: str, started: float) -> None:
        super().__init__()
        self._relay = relay
        self._request_id = request_id
        self._handoff = handoff
        self._started = started  # perf_counter() when the event was handed out
        headers = handoff.request.headers
        content_type = headers.get("content-type", "")
        is_prelude = content_type.split(";", 1)[0].strip().lower() == PRELUDE_TYPE
        self._prelude = Prelude() if is_prelude else None
        self._head = None
        if content_type and not is_prelude:
            self._head = {"statusCode": 200, "headers": {"Content-Type": content_type}}
        self._item_open = False  # a chunk of the runtime's body is part-way through
        self._leftover = b""  # bytes the runtime sent past its body: its next request's
        self._runtime: socket.socket | None = None
        self.bytes = 0
        self.first_byte_ms: float | None = None
        self.aborted = False

    def write(self, sock: socket.socket, keep_alive: bool) -> bool:
        """Relay the runtime's body as it comes, then the summary; True when the connection
        stays open."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError:  # a socket already dead: the first send finds out
            pass
        answer: Answer | None = ACCEPTED
        try:
            opening = HTTP_HEAD % (b"keep-alive" if keep_alive else b"close")
            if self._head is not None:
                opening += chunk(b"H", json.dumps(self._head).encode())
            sock.sendall(opening)
            error, answer = self._pump(sock)
        except OSError:  # Main went away altogether
            self.aborted = True
        if self.aborted:
            error, answer = None, None
        if answer is None:
            self._close_runtime()
        elif answer[0] != 202:  # its body was not read to its end: the connection is done
            self._handoff.request.keep_alive = False
        self._relay.stream_ended(self._handoff, answer, self._leftover)
        # a runtime cut off mid-stream must show it can take the next event
        sound = not self.aborted or self._relay.wait_for_poll(REPOLL_GRACE_S)
        summary = {
            "status": "success" if error is None else "error",
            **({} if error is None else {"error": error}),
            "duration_ms": (time.perf_counter() - self._started) * 1000,
            "peak_memory_mb": self._relay.peak_memory_mb(),
            **self._relay.captured(),
            "bytes": self.bytes,
            "first_byte_ms": self.first_byte_ms,
            "aborted": self.aborted,
        }
        self.end()  # the call is over: the next may come the moment E is in
        try:
            sock.sendall(chunk(b"E", json.dumps(summary).encode()) + LAST_CHUNK)
        except OSError:
            sound = False
        if not sound or self._relay.runtime_exited():
            self._relay.shut_down()
            return False
        return keep_alive and not self.aborted

    def _pump(self, main: socket.socket) -> tuple[dict[str, Any] | None, Answer]:
        """Read the runtime's body to its end, relaying it: (the call's error, if any, and
        what the runtime is told); ``aborted`` once Main left."""
        request = self._handoff.request
        runtime, pending = request.reader.detach()
        self._runtime = runtime
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            body: ChunkedBody | SizedBody = ChunkedBody()
        else:
            length = request.headers.get("content-length", "0")
            if not (length.isascii() and length.isdigit() and len(length) < 19):
                return _truncated(f"invalid Content-Length: {length[:100]!r}")
            body = SizedBody(int(length))
        poller = select.poll()
        poller.register(runtime, select.POLLIN)
        poller.register(main, select.POLLIN)
        watching = True
        while not body.done:
            if not pending:
                ready = {fd for fd, _ in poller.poll()}
                if watching and main.fileno() in ready:
                    closed = peer_closed(main)
                    if closed:
                        self.aborted = True
                        return None, ACCEPTED
                    if closed is False:  # request bytes, left unread: no longer watched
                        poller.unregister(main)
                        watching = False
                if runtime.fileno() not in ready:
                    continue
                try:
                    pending = runtime.recv(RECV_BYTES)
                except OSError:
                    pending = b""
                if not pending:  # the runtime closed: it may have died (Lambda's ExitError)
                    how = self._relay.exit_within(EXIT_NOTICE_S)
                    error = plain_error("Runtime.TruncatedResponse", TRUNCATED)
                    if how is not None:
                        error = exit_error(self._request_id, how)
                    return error, error_answer(400, "TruncatedResponse", TRUNCATED)
            try:
                pieces, self._leftover = body.feed(pending)
            except RequestError as exc:
                return _truncated(str(exc))
            pending = b""
            for piece, ends in pieces:
                error = self._relay_piece(main, piece, ends)
                if error is not None:
                    return error, error_answer(400, "InvalidPrelude", error["message"])
        if self._prelude is not None and self._prelude.head is None and self._prelude.held:
            message = "the streamed response ended inside its prelude (no 8 NUL bytes after it)"
            return plain_error("Runtime.InvalidPrelude", message), ACCEPTED
        return trailer_error(body.trailers), ACCEPTED

    def _relay_piece(self, main: socket.socket, piece: bytes, ends: bool) -> dict[str, Any] | None:
        """Send a piece of the runtime's body; the error when its prelude is malformed."""
        prelude = self._prelude
        if prelude is not None and prelude.head is None:
            try:
                piece = prelude.feed(piece)
                if prelude.head is None:
                    return None
                head = json.dumps(prelude.head, allow_nan=False).encode()  # Main's is strict
                if len(head) > FRAME_PAYLOAD_BYTES:
                    raise ValueError(f"the prelude is over {FRAME_PAYLOAD_BYTES} bytes")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ones
                return plain_error("Runtime.InvalidPrelude", f"malformed prelude: {exc}")
            main.sendall(chunk(b"H", head))
        if piece:
            if self.first_byte_ms is None:
                self.first_byte_ms = (time.perf_counter() - self._started) * 1000
            self.bytes += len(piece)
            for start in range(0, len(piece), FRAME_PAYLOAD_BYTES):
                last = ends and start + FRAME_PAYLOAD_BYTES >= len(piece)
                main.sendall(
                    chunk(b"D" if last else b"d", piece[start : start + FRAME_PAYLOAD_BYTES])
                )
            self._item_open = not ends
        elif ends and self._item_open:
            main.sendall(chunk(b"D", b""))
            self._item_open = False
        return None

    def _close_runtime(self) -> None:
        """Close the runtime's connection under it: it sees its response cut."""
        if self._runtime is not None:
            try:
                self._runtime.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


TRUNCATED = "the runtime's connection ended before its streamed response did"


def _truncated(reason: str) -> tuple[dict[str, Any], Answer]:
    error = plain_error("Runtime.TruncatedResponse", f"malformed streamed response: {reason}")
    return error, error_answer(400, "InvalidRequest", reason)


def trailer_error(trailers: dict[str, str]) -> dict[str, Any] | None:
    """The function error a streamed response's trailers report, if any: the type trailer
    winning over the body's errorType, as a posted error's header does."""
    error_type = trailers.get(ERROR_TYPE_TRAILER)
    encoded = trailers.get(ERROR_BODY_TRAILER)
    if not error_type and not encoded:
        return None
    try:
        body = base64.b64decode(encoded or "", validate=True)
    except ValueError:
        body = (encoded or "").encode()
    return posted_error(body, error_type)


def invalid_mode(mode: str) -> tuple[Answer, dict[str, Any]]:
    """A response mode other than streaming: the runtime's answer (400, as Lambda's) and
    the call's error."""
    message = (
        f"Invalid function response mode: {mode[:100]!r} "
        f"({RESPONSE_MODE_HEADER} is 'streaming' or absent)"
    )
    answer = error_answer(400, "InvalidFunctionResponseMode", message)
    return answer, plain_error("Runtime.InvalidResponseModeHeader", message)

"""The Lambda Runtime API server a custom runtime polls at ``AWS_LAMBDA_RUNTIME_API``.

The HTTP side only: requests are read with ``http11``'s parsing (keep-alive, pipelining), but
without the container secret (the runtime never has it; the API listens where only the
function reaches it, 127.0.0.1 by default) and with chunked bodies too (Go's net/http and
curl send them). Bodies over ``MAX_PAYLOAD_BYTES`` are read and dropped, the request marked
``too_large``: Lambda answers those 413 and fails the call, which is the relay's to do. The
body of a streamed response (``Lambda-Runtime-Function-Response-Mode: streaming``) is not read
here: the relay reads it while it relays it (``relay_stream``), then hands the connection back.
Answers carry the headers the relay gives (the invocation's ``Lambda-Runtime-*`` ones). A
connection the relay does not authorise (``peers``) is answered 403 AccessDenied and closed.
What each path means is ``relay``'s business.
"""

from __future__ import annotations

import json
import socket
import threading
import time

from .chunked import ChunkedBody
from .errors import RequestError, bad_request
from .http11 import REASONS, RequestReader

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Callable

    from .http11 import Request

    Answer = tuple[int, dict[str, str], bytes]
    # None: the handler took the connection over (a streamed response) and it is now closed
    Handler = Callable[["Request"], "Answer | None"]
    Authorize = Callable[[socket.socket], bool]

# Lambda's own limit on a synchronous response, the body of /response: 6 MB plus the 100 bytes
# of slack the Runtime Interface Emulator allows (interop.MaxPayloadSize)
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100
RECV_BYTES = 64 * 1024
# a response the runtime streams says so (any other value is refused by the relay)
RESPONSE_MODE_HEADER = "lambda-runtime-function-response-mode"
STREAMING = "streaming"
STATUS_TEXT = {**REASONS, 202: "Accepted", 403: "Forbidden", 500: "Internal Server Error"}


class ApiRequestReader(RequestReader):
    """Reads Runtime API requests: no secret, bodies by Content-Length or chunked, bounded.

    The body of a streamed response (``deferred``) is left on the socket for the relay,
    which reads it as it relays it (``detach``, then ``attach`` what it read past it).
    """

    def next(self) -> Request | None:
        """The next request (``too_large`` set when its body was over the limit and dropped,
        ``body_unread`` when it is ``deferred``), or None once the client has closed; raises
        RequestError when it cannot be read."""
        from .http11 import Request

        head = self._read_head()
        if head is None:
            return None
        request = Request(head)
        request.too_large = False
        request.trailers = {}
        request.body_unread = True
        request.reader = self
        if request.headers.get("expect", "").lower() == "100-continue":
            self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
        if not deferred(request):
            self.read_body(request)
        return request

    def read_body(self, request: Request, keep: bool = True) -> None:
        """Read the request's body (or, without ``keep``, read and drop it)."""
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            body = self._read_chunked(request, keep)
        else:
            body = self._read_sized(request, keep)
        request.body = body if body is not None else b""
        request.too_large = body is None
        request.body_unread = False

    def detach(self) -> tuple[socket.socket, bytes]:
        """The socket and the bytes read past the last request's head, for the relay."""
        buffered, self._buffer = self._buffer, b""
        return self._sock, buffered

    def attach(self, leftover: bytes) -> None:
        """Bytes the relay read past a deferred body: the next request's."""
        self._buffer = leftover

    def _read_sized(self, request: Request, keep: bool) -> bytes | None:
        text = request.headers.get("content-length", "0")
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            raise bad_request(f"invalid Content-Length: {text[:100]!r}")
        length = left = int(text)
        if keep and length <= MAX_PAYLOAD_BYTES:
            return self._take_into(length)
        while left > 0:  # dropped a piece at a time, never held whole
            left -= len(self._take(min(left, RECV_BYTES)))
        return b"" if length <= MAX_PAYLOAD_BYTES else None

    def _read_chunked(self, request: Request, keep: bool) -> bytes | None:
        decoder = ChunkedBody()
        parts: list[bytes] = []
        size = 0
        while not decoder.done:
            if not self._buffer:
                self._fill()
            pieces, rest = decoder.feed(self._buffer)
            self._buffer = rest
            for piece, _ in pieces:
                size += len(piece)
                if keep and size <= MAX_PAYLOAD_BYTES:
                    parts.append(piece)
        request.trailers = decoder.trailers
        return b"".join(parts) if size <= MAX_PAYLOAD_BYTES else None

    def _fill(self) -> None:
        chunk = self._sock.recv(RECV_BYTES)
        if not chunk:
            raise bad_request("connection closed before the body was complete")
        self._buffer += chunk

    def _take_into(self, count: int) -> bytes:
        """Exactly ``count`` bytes, received straight into one buffer: growing a bytes object
        a receive at a time copied it over and over (214 ms for a 6 MiB /response, 3 ms so)."""
        body = bytearray(count)
        have = min(len(self._buffer), count)
        body[:have], self._buffer = self._buffer[:have], self._buffer[have:]
        view = memoryview(body)
        while have < count:
            received = self._sock.recv_into(view[have:])
            if not received:
                raise bad_request("connection closed before the body was complete")
            have += received
        return bytes(body)

    def _take(self, count: int) -> bytes:
        """Exactly ``count`` bytes (at most RECV_BYTES more than buffered are read)."""
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


def deferred(request: Request) -> bool:
    """Whether the request is a streamed response, its body left for the relay to read."""
    path = request.target.split("?", 1)[0]
    mode = request.headers.get(RESPONSE_MODE_HEADER)
    return request.method == "POST" and path.endswith("/response") and mode == STREAMING


def error_answer(status: int, error_type: str, message: str) -> Answer:
    """An answer in the Runtime API's error shape (``errorMessage``, ``errorType``)."""
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return status, {}, body


REFUSED = error_answer(
    403, "AccessDenied", "only the function's own runtime may use this Runtime API"
)


def encode_answer(status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> bytes:
    """Status line, headers and body as one buffer."""
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, '')}"]
    headers = {"Content-Type": "application/json", **headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serve_connection(sock: socket.socket, handle: Handler, authorize: Authorize | None) -> None:
    """Answer the requests on one connection, in order, until either side closes it; one
    ``authorize`` refuses is answered 403 and closed."""
    reader = ApiRequestReader(sock, b"")
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    request = reader.next()
                except RequestError as exc:
                    answer = error_answer(exc.status, exc.error_type, str(exc))
                    sock.sendall(encode_answer(*answer, keep_alive=False))
                    return
                if request is None:
                    return
                # once the first request is read (a refusal sent before it would break the
                # client's pipe): its sender still holds the socket
                if authorize is not None:
                    if not authorize(sock):
                        sock.sendall(encode_answer(*REFUSED, keep_alive=False))
                        return
                    authorize = None
                try:
                    answer = handle(request)
                except Exception as exc:  # a relay bug answers 500 instead of dropping it
                    answer = error_answer(500, "InternalServerError", repr(exc))
                if answer is None:
                    return
                if request.body_unread:  # a deferred body the relay refused: dropped
                    try:
                        reader.read_body(request, keep=False)
                    except RequestError:
                        request.keep_alive = False
                sock.sendall(encode_answer(*answer, keep_alive=request.keep_alive))
                if not request.keep_alive:
                    return
        except OSError:  # the runtime went away; nobody is left to answer
            return


def serve(listener: socket.socket, handle: Handler, authorize: Authorize | None = None) -> None:
    """Accept connections forever, each served by its own daemon thread; with ``authorize``,
    only connections it accepts (``peers.opened_by_descendant``)."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:  # ECONNABORTED, or EMFILE until some connection closes
            time.sleep(0.01)
            continue
        args = (sock, handle, authorize)
        threading.Thread(target=serve_connection, args=args, daemon=True).start()

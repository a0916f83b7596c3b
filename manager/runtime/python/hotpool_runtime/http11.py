"""The raw-socket HTTP/1.1 server: keep-alive, pipelining, bodies by Content-Length only.

A small HTTP/1.1 subset. Connections stay open (HTTP/1.0 ones only when they ask for
keep-alive) until ``Connection: close``; pipelined requests are answered in order. Header names
are case-insensitive. Every response is JSON with a Content-Length. These close the connection
after answering: malformed request line or header -> 400, request line and headers over 64 KiB
-> 431, Transfer-Encoding -> 411 (bodies are read by Content-Length only), bad Content-Length
-> 400, body over 300 MB -> 413, a missing or wrong container secret -> 401 (checked before the
body is read, on every path). Unknown paths are 404, a wrong method 405.

It knows nothing of functions: ``serve`` takes a table of routes, each a method and a callable
``(body, headers, started) -> JSON-able dict, encoded bytes or StreamingBody`` that may raise
RequestError.
http.server is not used: it imports email and more, which every idle container would pay for.
"""

from __future__ import annotations

import json
import socket
import threading
import time

# hmac.compare_digest is this same constant-time C function (or OpenSSL's); importing hmac
# loads OpenSSL, which costs every idle container about 4 MiB
from _operator import _compare_digest as compare_digest

from .errors import RequestError, bad_request

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Callable, Mapping
    from typing import Any

    Handler = Callable[[bytes, Mapping[str, str], float], "dict[str, Any] | bytes | StreamingBody"]
    Routes = Mapping[str, tuple[str, Handler]]

MAX_BODY_BYTES = 300 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
LINGER_S = 1.0
# Header names are lower-cased on parsing.
SECRET_HEADER = "x-hotpool-container-secret"
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def parse_json(body: bytes) -> Any:
    """The decoded JSON body; raises RequestError(400) when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise bad_request(f"body is not valid JSON: {exc}") from exc


class Request:
    """One request's line and headers (names lower-cased); the reader adds the body."""

    def __init__(self, head: bytes) -> None:
        """Parse the request line and headers; raises RequestError(400) when malformed."""
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not all(parts) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            raise bad_request(f"malformed request line: {request_line[:200]!r}")
        self.method, self.target, version = parts
        self.headers: dict[str, str] = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise bad_request(f"malformed header line: {line[:200]!r}")
            name, value = name.lower(), value.strip()
            # A repeated header is one comma-separated list (so a repeated Content-Length
            # no longer parses as a number: two lengths must not be silently reconciled).
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        self.keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        self.body: bytes = b""
        self.started = time.monotonic()


class StreamingBody:
    """A route's answer that writes itself to the socket (status line included), for answers
    sent while they are produced; callables in ``on_end`` run once, when ``write`` calls
    ``finish`` or else once it is written, whatever happened."""

    def __init__(self) -> None:
        self.on_end: list[Callable[[], None]] = []

    def respond(self, sock: socket.socket, keep_alive: bool) -> bool:
        """Write the whole answer; True when the connection may serve another request."""
        try:
            return self.write(sock, keep_alive)
        finally:
            self.finish()

    def finish(self) -> None:
        """Run the ``on_end`` callables, if they have not run yet."""
        while self.on_end:
            self.on_end.pop(0)()

    def write(self, sock: socket.socket, keep_alive: bool) -> bool:
        """Send the answer (subclasses); never raises OSError: a broken socket means False."""
        raise NotImplementedError


class RequestReader:
    """Reads requests off one socket in order, keeping bytes of pipelined ones for later.

    Only requests carrying ``secret`` in the X-Hotpool-Container-Secret header are read
    through; any other is refused (401) before its body is read.
    """

    def __init__(self, sock: socket.socket, secret: bytes) -> None:
        self._sock = sock
        self._secret = secret
        self._buffer = b""

    def next(self) -> Request | None:
        """The next request, or None once the client has closed the connection.

        Raises RequestError when the request cannot be read; the stream is then out of step
        and the connection must be closed after answering.
        """
        head = self._read_head()
        if head is None:
            return None
        request = Request(head)
        presented = request.headers.get(SECRET_HEADER, "").encode("latin-1")
        if not compare_digest(presented, self._secret):
            raise RequestError(401, "Unauthorized", "missing or wrong X-Hotpool-Container-Secret")
        request.body = self._read_body(request)
        return request

    def _read_head(self) -> bytes | None:
        searched = 0
        while (end := self._buffer.find(b"\r\n\r\n", searched)) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                break
            chunk = self._sock.recv(RECV_BYTES)
            if not chunk:  # closed, perhaps mid-request: nobody is waiting for an answer
                return None
            searched = max(0, len(self._buffer) - 3)
            self._buffer += chunk
        if not 0 <= end <= MAX_HEAD_BYTES:
            message = f"request line and headers over {MAX_HEAD_BYTES} bytes"
            raise RequestError(431, "RequestHeaderFieldsTooLarge", message)
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        return head

    def _read_body(self, request: Request) -> bytes:
        if "transfer-encoding" in request.headers:
            raise RequestError(411, "LengthRequired", "send a Content-Length, not chunks")
        text = request.headers.get("content-length", "0")
        try:
            length = int(text) if text.isascii() and text.isdigit() else -1
        except ValueError:  # more digits than int() parses
            length = -1
        if length < 0:
            raise bad_request(f"invalid Content-Length: {text[:100]!r}")
        if length > MAX_BODY_BYTES:
            raise RequestError(413, "PayloadTooLarge", f"body over {MAX_BODY_BYTES} bytes")
        received = len(self._buffer)
        if length <= received:
            body, self._buffer = self._buffer[:length], self._buffer[length:]
            return body
        if request.headers.get("expect", "").lower() == "100-continue":
            self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        # Receive straight into the final buffer: a body may be hundreds of MB.
        body = bytearray(length)
        body[:received], self._buffer = self._buffer, b""
        view = memoryview(body)
        while received < length:
            count = self._sock.recv_into(view[received:])
            if not count:
                raise bad_request("connection closed before the body was complete")
            received += count
        return body


def serve_connection(sock: socket.socket, routes: Routes, secret: bytes) -> None:
    """Answer the requests on one connection, in order, until either side closes it."""
    reader = RequestReader(sock, secret)
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                try:
                    request = reader.next()
                except RequestError as exc:
                    sock.sendall(_response(exc.status, exc.payload(), keep_alive=False))
                    break
                if request is None:
                    return
                status, payload = _dispatch(routes, request)
                if isinstance(payload, StreamingBody):
                    if not payload.respond(sock, request.keep_alive):
                        break
                    continue
                sock.sendall(_response(status, payload, request.keep_alive))
                if not request.keep_alive:
                    break
            _linger(sock)
        except OSError:  # the client went away, or lingered too long; nobody is left to answer
            return


def _linger(sock: socket.socket) -> None:
    """Close gently: with request bytes unread, close() sends a reset that can discard the
    answer before the client reads it. Drain until the client closes or LINGER_S passes."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(LINGER_S)
    deadline = time.monotonic() + LINGER_S
    while sock.recv(RECV_BYTES) and time.monotonic() < deadline:
        pass


def _dispatch(
    routes: Routes, request: Request
) -> tuple[int, dict[str, Any] | bytes | StreamingBody]:
    method, handler = routes.get(request.target.split("?", 1)[0], (None, None))
    try:
        if handler is None:
            raise RequestError(404, "NotFound", f"no such path: {request.target}")
        if request.method != method:
            raise RequestError(405, "MethodNotAllowed", f"{request.target} only accepts {method}")
        return 200, handler(request.body, request.headers, request.started)
    except RequestError as exc:
        return exc.status, exc.payload()
    except Exception as exc:  # a runtime bug answers 500 instead of dropping the socket
        return 500, {"error": {"type": "InternalError", "message": repr(exc)}}


def _response(status: int, payload: dict[str, Any] | bytes, keep_alive: bool) -> bytes:
    """Status line, headers and body as one buffer: one send, one segment when small."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    # Said explicitly either way: HTTP/1.0 clients assume close unless told otherwise.
    connection = "keep-alive" if keep_alive else "close"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def serve(listener: socket.socket, routes: Routes, secret: bytes) -> None:
    """Accept connections forever, each served by its own daemon thread; every request must
    carry ``secret`` (see ``RequestReader``)."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:  # ECONNABORTED, or EMFILE until some connection closes
            time.sleep(0.01)
            continue
        threading.Thread(target=serve_connection, args=(sock, routes, secret), daemon=True).start()

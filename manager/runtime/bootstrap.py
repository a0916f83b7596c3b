"""hotpool function-container bootstrap: a stdlib-only HTTP server that runs one user handler.

Run: ``python3 -I -S -u -B bootstrap.py --code-dir DIR [--host H] [--port P] [--port-file FILE]``.
After binding it writes the port to FILE (atomically, via FILE.tmp) and prints
``HOTPOOL_READY port=<n>`` to stderr.

HTTP: a small HTTP/1.1 subset. Connections stay open (HTTP/1.0 ones only when they ask for
keep-alive) until ``Connection: close``; pipelined requests are answered in order. Header names
are case-insensitive. Every response is JSON with a Content-Length. These close the connection
after answering: malformed request line or header -> 400, request line and headers over 64 KiB
-> 431, Transfer-Encoding -> 411 (bodies are read by Content-Length only), bad Content-Length
-> 400, body over 300 MB -> 413.

GET  /healthz  -> 200 {"status": "ok", "initialized", "busy", "function_name", "function_version"}
POST /init     {"function_name": str, "function_version": int, "handler": "pkg.mod.func",
                "memory_mb": int, "timeout_s": number, "env": {str: str},
                "code_zip_b64": str, "log_limit_bytes": int (default 65536)}
               -> 200 {"init_ms", "stdout", "stderr"}
               -> 400 malformed request or unsafe/corrupt zip; 409 AlreadyInitialized;
                  422 {"error": {"type", "message", "traceback"}, "stdout", "stderr"} when the
                  import raises (type = exception class) or the handler is missing
                  (HandlerNotFound) or not callable (HandlerNotCallable); still uninitialised.
POST /invoke   headers X-Hotpool-Request-Id (default uuid4), X-Hotpool-Deadline-Ms (remaining
               budget, default timeout_s * 1000); body = event JSON (empty -> null)
               -> 200 {"status": "success", "result"} or {"status": "error",
                  "error": {"type", "message", "traceback"}}, both plus "duration_ms",
                  "peak_memory_mb", "stdout", "stderr"; unserialisable result -> error
                  ResultNotSerializable.
               -> 400 body not JSON / bad deadline; 409 Busy (one invocation at a time,
                  refused, never queued); 503 NotInitialized.
Other errors are {"error": {"type", "message"}}: 404 NotFound, 405 MethodNotAllowed, and the
HTTP-level ones above (BadRequest, RequestHeaderFieldsTooLarge, LengthRequired,
PayloadTooLarge).
The handler is called as handler(event, context) with an AWS-Lambda-like context; awaitables
run on one persistent event loop, which sync handlers also see once asyncio is imported.
SIGTERM or SIGINT -> graceful shutdown, exit status 0.

Every idle container pays for each module imported here, so the imports are few: no
http.server, asyncio, typing or pathlib; zipfile, base64 and traceback only when used.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import resource
import signal
import socket
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    import asyncio
    from collections.abc import Callable, Mapping
    from types import TracebackType
    from typing import Any

MAX_BODY_BYTES = 300 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
LINGER_S = 1.0
DEFAULT_LOG_LIMIT_BYTES = 64 * 1024
TRUNCATION_MARKER = "\n[truncated]"
# Header names are lower-cased on parsing.
REQUEST_ID_HEADER = "x-hotpool-request-id"
DEADLINE_HEADER = "x-hotpool-deadline-ms"
ARN_TEMPLATE = "arn:hotpool:lambda:local:000000000000:function:{name}:{version}"
LOG_GROUP_TEMPLATE = "/hotpool/functions/{name}"
ROUTES = {"/healthz": ("GET", "health"), "/init": ("POST", "init"), "/invoke": ("POST", "invoke")}
REASONS = {
    200: "OK",
    400: "Bad Request",
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
USAGE = "usage: bootstrap.py --code-dir DIR [--host H] [--port P] [--port-file FILE]"
_MISSING = object()


class RequestError(Exception):
    """A request the runtime refuses, with its HTTP status and JSON error body."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {...}}`` plus any extra top-level fields."""
        error = {"type": self.error_type, "message": str(self)}
        if "traceback" in self.extra:
            error["traceback"] = self.extra["traceback"]
        others = {k: v for k, v in self.extra.items() if k != "traceback"}
        return {"error": error, **others}


def _bad_request(message: str) -> RequestError:
    return RequestError(400, "BadRequest", message)


class CaptureStream(io.TextIOBase):
    """A text stream keeping the first ``limit_bytes`` of its UTF-8 output.

    Once released it forwards writes to whatever ``sys.<name>`` is at that moment, so a
    stream user code kept a reference to (``logging.basicConfig`` at import time) still
    reaches the capture of the invocation that is running instead of vanishing.
    """

    def __init__(self, name: str, limit_bytes: int) -> None:
        super().__init__()
        self._name = name
        self._limit = limit_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False
        self._released = False
        # User code may print from its own threads while the handler runs.
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._released:
            return self._forward(text)
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            room = self._limit - self._size
            if len(data) > room:
                data, self._truncated = data[:room], True
            if data:
                self._chunks.append(data)
                self._size += len(data)
        return len(text)

    def release(self) -> None:
        """Stop capturing; later writes go to the then-current ``sys.<name>``."""
        self._released = True

    def getvalue(self) -> str:
        """The captured text, with a marker when output was cut at the limit."""
        with self._lock:
            # "ignore" drops a multi-byte character split by the byte limit.
            text = b"".join(self._chunks).decode("utf-8", "ignore")
            return text + TRUNCATION_MARKER if self._truncated else text

    def _forward(self, text: str) -> int:
        target = getattr(sys, self._name, None)
        if target is self or target is None:
            target = getattr(sys, f"__{self._name}__", None)
        return target.write(text) if target is not None else len(text)


class CapturedOutput:
    """A with-block replacing sys.stdout and sys.stderr with bounded captures."""

    def __init__(self, limit_bytes: int) -> None:
        self.stdout = CaptureStream("stdout", limit_bytes)
        self.stderr = CaptureStream("stderr", limit_bytes)

    def __enter__(self) -> CapturedOutput:
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.stdout, sys.stderr = self._saved
        self.stdout.release()
        self.stderr.release()

    def logs(self) -> dict[str, str]:
        """The ``stdout`` and ``stderr`` fields of a response."""
        return {"stdout": self.stdout.getvalue(), "stderr": self.stderr.getvalue()}


class FunctionConfig:
    """The validated fields of an /init request, except the code itself."""

    def __init__(self, body: dict[str, Any]) -> None:
        """Validate an /init body; raises RequestError(400) naming the bad field."""
        self.function_name: str = _field(body, "function_name", str)
        self.function_version: int = _field(body, "function_version", int)
        self.handler: str = _field(body, "handler", str)
        self.memory_mb: int = _field(body, "memory_mb", int)
        self.timeout_s = float(_field(body, "timeout_s", (int, float)))
        self.env: dict[str, str] = _field(body, "env", dict, default={})
        self.log_limit_bytes: int = _field(body, "log_limit_bytes", int, DEFAULT_LOG_LIMIT_BYTES)
        module, _, attr = self.handler.rpartition(".")
        if not attr.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise _bad_request(f"handler must look like 'module.function', got {self.handler!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise _bad_request("env must map strings to strings")
        if not self.function_name or self.memory_mb <= 0 or self.log_limit_bytes < 0:
            raise _bad_request("function_name, memory_mb or log_limit_bytes out of range")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise _bad_request("timeout_s must be a positive number")


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default=_MISSING):
    value = body.get(name, default)
    if value is _MISSING:
        raise _bad_request(f"missing field {name!r}")
    # bool is an int subclass, but true is never a valid version or size.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad_request(f"field {name!r} has the wrong type")
    return value


class LambdaContext:
    """The AWS Lambda context object, so stdlib-only Lambda handlers run unchanged."""

    def __init__(
        self, config: FunctionConfig, log_stream: str, request_id: str, deadline: float
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = config.function_name
        self.function_version = str(config.function_version)
        self.invoked_function_arn = ARN_TEMPLATE.format(
            name=config.function_name, version=config.function_version
        )
        self.memory_limit_in_mb = config.memory_mb
        self.log_group_name = LOG_GROUP_TEMPLATE.format(name=config.function_name)
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the caller's deadline, never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LoadedFunction:
    """Everything an initialised container needs to invoke its handler."""

    def __init__(self, config: FunctionConfig, handler: Callable[..., Any]) -> None:
        self.config = config
        self.handler = handler
        today = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream = f"{today}/[{config.function_version}]{os.urandom(16).hex()}"
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, event: Any, context: LambdaContext) -> Any:
        """Run the handler; an awaitable it returns runs to completion on the persistent loop."""
        # Sync handlers that call asyncio.get_event_loop() get the persistent loop too; a
        # handler that never imported asyncio cannot call it, so it need not be imported.
        if "asyncio" in sys.modules:
            sys.modules["asyncio"].set_event_loop(self._event_loop())
        outcome = self.handler(event, context)
        if hasattr(outcome, "__await__"):
            return self._event_loop().run_until_complete(outcome)
        return outcome

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # Only one invocation runs at a time, so creating it here cannot race.
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop


class Runtime:
    """The one function this container serves: initialised once, invoked one call at a time."""

    def __init__(self, code_dir: str) -> None:
        self.code_dir = os.path.realpath(code_dir)
        self._loaded: LoadedFunction | None = None
        self._init_lock = threading.Lock()
        self._invoke_lock = threading.Lock()

    def health(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """The /healthz body."""
        loaded = self._loaded
        return {
            "status": "ok",
            "initialized": loaded is not None,
            "busy": self._invoke_lock.locked(),
            "function_name": loaded.config.function_name if loaded else None,
            "function_version": loaded.config.function_version if loaded else None,
        }

    def init(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """Unpack the code, import the handler module once and remember the handler."""
        with self._init_lock:
            if self._loaded is not None:
                raise RequestError(409, "AlreadyInitialized", "container is already initialised")
            began = time.perf_counter()
            request = _parse_json(body)
            if not isinstance(request, dict):
                raise _bad_request("init body must be a JSON object")
            config = FunctionConfig(request)
            _unpack_code(_field(request, "code_zip_b64", str), self.code_dir)
            os.environ.update(config.env)
            if self.code_dir not in sys.path:
                sys.path.insert(0, self.code_dir)
            # Lambda code opens bundled files relative to its task directory.
            os.chdir(self.code_dir)
            with CapturedOutput(config.log_limit_bytes) as output:
                handler, failure = _load_handler(config.handler)
            logs = output.logs()
            if failure is not None:
                raise RequestError(
                    422, failure["type"], failure["message"], traceback=failure["traceback"], **logs
                )
            self._loaded = LoadedFunction(config, handler)
            return {"init_ms": (time.perf_counter() - began) * 1000, **logs}

    def invoke(self, body: bytes, headers: Mapping[str, str], started: float) -> bytes:
        """Run the handler on one event and return the encoded /invoke response.

        ``started`` is the monotonic time the request arrived; the deadline counts from it.
        """
        loaded = self._loaded
        if loaded is None:
            raise RequestError(503, "NotInitialized", "container has not been initialised")
        if not self._invoke_lock.acquire(blocking=False):
            raise RequestError(409, "Busy", "container is already running an invocation")
        try:
            event = _parse_json(body) if body else None
            request_id = headers.get(REQUEST_ID_HEADER) or _uuid4()
            deadline_ms = _deadline_ms(headers.get(DEADLINE_HEADER), loaded.config.timeout_s)
            context = LambdaContext(
                loaded.config, loaded.log_stream, request_id, started + deadline_ms / 1000
            )
            return _run_handler(loaded, event, context)
        finally:
            self._invoke_lock.release()


def _run_handler(loaded: LoadedFunction, event: Any, context: LambdaContext) -> bytes:
    with CapturedOutput(loaded.config.log_limit_bytes) as output:
        started = time.perf_counter()
        try:
            result, error = loaded.call(event, context), None
        except BaseException as exc:  # the server must outlive anything user code raises
            result, error = None, _describe(exc)
        duration_ms = (time.perf_counter() - started) * 1000
    summary = {
        "duration_ms": duration_ms,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **output.logs(),
    }
    if error is None:
        try:
            # allow_nan=False: NaN/Infinity would make the response invalid JSON.
            result_json = json.dumps(result, allow_nan=False)
        except Exception as exc:
            error = {"type": "ResultNotSerializable", "message": str(exc), "traceback": ""}
    if error is not None:
        return json.dumps({"status": "error", "error": error, **summary}).encode()
    # Splice the already-encoded result in rather than encoding it a second time.
    return f'{{"status": "success", "result": {result_json}, {json.dumps(summary)[1:]}'.encode()


def _load_handler(spec: str) -> tuple[Callable[..., Any] | None, dict[str, str] | None]:
    module_name, _, attr = spec.rpartition(".")
    # The code was just written; stale directory caches would hide it from the importer.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # user code may raise anything, SystemExit included
        return None, _describe(exc)
    handler = getattr(module, attr, _MISSING)
    if handler is _MISSING:
        message = f"module {module_name!r} has no attribute {attr!r}"
        return None, {"type": "HandlerNotFound", "message": message, "traceback": ""}
    if not callable(handler):
        message = f"{spec} is a {type(handler).__name__}, not a callable"
        return None, {"type": "HandlerNotCallable", "message": message, "traceback": ""}
    return handler, None


def _unpack_code(code_zip_b64: str, code_dir: str) -> None:
    """Extract the zip into code_dir after checking that no entry escapes it."""
    import base64
    import zipfile
    import zlib

    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(code_zip_b64)))
    except (ValueError, zipfile.BadZipFile) as exc:  # binascii.Error is a ValueError
        raise RequestError(400, "InvalidCodeZip", f"code_zip_b64: {exc}") from exc
    with archive:
        # Check every entry before writing any, so a refused zip leaves nothing behind.
        unsafe = [name for name in archive.namelist() if not _is_inside(name, code_dir)]
        if unsafe:
            raise RequestError(400, "InvalidCodeZip", f"zip entries escape the code dir: {unsafe}")
        os.makedirs(code_dir, exist_ok=True)
        try:
            archive.extractall(code_dir)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise RequestError(400, "InvalidCodeZip", f"corrupt zip: {exc}") from exc


def _is_inside(name: str, root: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    # An absolute path, a parent step, or a Windows drive ("C:x") or UNC path ("\\host").
    if parts[0] == "" or ".." in parts or name[1:2] == ":":
        return False
    try:
        target = os.path.realpath(os.path.join(root, name))
    except ValueError:  # e.g. an embedded NUL byte
        return False
    return target == root or target.startswith(root + os.sep)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise _bad_request(f"body is not valid JSON: {exc}") from exc


def _deadline_ms(header: str | None, timeout_s: float) -> float:
    try:
        value = timeout_s * 1000 if header is None else float(header)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _bad_request(f"X-Hotpool-Deadline-Ms must be a finite number, got {header!r}")
    return value


def _uuid4() -> str:
    """A random RFC 4122 version-4 UUID, as ``str(uuid.uuid4())`` gives."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _describe(exc: BaseException) -> dict[str, str]:
    import traceback

    trace = traceback.format_exception(type(exc), exc, _user_frames(exc))
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(trace)}


def _user_frames(exc: BaseException) -> TracebackType | None:
    """The traceback without the bootstrap's own frames: users debug their code, not ours."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb or exc.__traceback__


class Request:
    """One request's line and headers (names lower-cased); the reader adds the body."""

    def __init__(self, head: bytes) -> None:
        """Parse the request line and headers; raises RequestError(400) when malformed."""
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not all(parts) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            raise _bad_request(f"malformed request line: {request_line[:200]!r}")
        self.method, self.target, version = parts
        self.headers: dict[str, str] = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _bad_request(f"malformed header line: {line[:200]!r}")
            name, value = name.lower(), value.strip()
            # A repeated header is one comma-separated list (so a repeated Content-Length
            # no longer parses as a number: two lengths must not be silently reconciled).
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        self.keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        self.body: bytes = b""
        self.started = time.monotonic()


class RequestReader:
    """Reads requests off one socket in order, keeping bytes of pipelined ones for later."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
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
            raise _bad_request(f"invalid Content-Length: {text[:100]!r}")
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
                raise _bad_request("connection closed before the body was complete")
            received += count
        return body


def serve_connection(sock: socket.socket, runtime: Runtime) -> None:
    """Answer the requests on one connection, in order, until either side closes it."""
    reader = RequestReader(sock)
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
                status, payload = _dispatch(runtime, request)
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


def _dispatch(runtime: Runtime, request: Request) -> tuple[int, dict[str, Any] | bytes]:
    method, action = ROUTES.get(request.target.split("?", 1)[0], (None, None))
    try:
        if action is None:
            raise RequestError(404, "NotFound", f"no such path: {request.target}")
        if request.method != method:
            raise RequestError(405, "MethodNotAllowed", f"{request.target} only accepts {method}")
        return 200, getattr(runtime, action)(request.body, request.headers, request.started)
    except RequestError as exc:
        return exc.status, exc.payload()
    except Exception as exc:  # a bootstrap bug answers 500 instead of dropping the socket
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


def serve(listener: socket.socket, runtime: Runtime) -> None:
    """Accept connections forever, each served by its own daemon thread."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:  # ECONNABORTED, or EMFILE until some connection closes
            time.sleep(0.01)
            continue
        threading.Thread(target=serve_connection, args=(sock, runtime), daemon=True).start()


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(port))
    os.replace(tmp, path)


def _parse_args(argv: list[str]) -> dict[str, str]:
    """The flags, each followed by its value; raises ValueError naming what is wrong."""
    options = {"--host": "127.0.0.1", "--port": "0", "--code-dir": "", "--port-file": ""}
    flags, values = argv[::2], argv[1::2]
    if unknown := [flag for flag in flags if flag not in options]:
        raise ValueError(f"unknown flag {unknown[0]!r}")
    if len(values) < len(flags):
        raise ValueError(f"{flags[-1]} needs a value")
    options.update(zip(flags, values, strict=True))
    if not options["--code-dir"]:
        raise ValueError("--code-dir is required")
    if not options["--port"].isdigit():
        raise ValueError(f"--port must be a number, got {options['--port']!r}")
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then return exit status 0 (2 for bad arguments)."""
    try:
        options = _parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.__stderr__.write(f"bootstrap: {exc}\n{USAGE}\n")
        return 2
    runtime = Runtime(options["--code-dir"])
    address = (options["--host"], int(options["--port"]))
    # Both signals raise KeyboardInterrupt in the main thread, unwinding the accept loop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with socket.create_server(address, backlog=64) as listener:
            port = listener.getsockname()[1]
            if options["--port-file"]:
                _write_port_file(options["--port-file"], port)
            sys.__stderr__.write(f"HOTPOOL_READY port={port}\n")
            sys.__stderr__.flush()
            serve(listener, runtime)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    status = main()
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    # os._exit: non-daemon threads started by user code must not keep a stopped container alive.
    os._exit(status)

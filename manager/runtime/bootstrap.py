"""hotpool function-container bootstrap: a stdlib-only HTTP server that runs one user handler.

Run: ``python3 -I -u bootstrap.py --host H --port P --code-dir DIR [--port-file FILE]``.
After binding it writes the port to FILE (atomically, via FILE.tmp) and prints
``HOTPOOL_READY port=<n>`` to stderr. HTTP/1.1 keep-alive; every response is JSON with a
Content-Length. Request bodies are read by Content-Length only: over 300 MB -> 413,
Transfer-Encoding -> 411.

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
Other errors are {"error": {"type", "message"}}: 404 NotFound, 405 MethodNotAllowed.
The handler is called as handler(event, context) with an AWS-Lambda-like context; awaitables
run on one persistent event loop. SIGTERM or SIGINT -> graceful shutdown, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import importlib
import inspect
import io
import json
import math
import os
import pathlib
import resource
import signal
import socket
import sys
import threading
import time
import traceback
import types
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 300 * 1024 * 1024
DEFAULT_LOG_LIMIT_BYTES = 64 * 1024
TRUNCATION_MARKER = "\n[truncated]"
REQUEST_ID_HEADER = "X-Hotpool-Request-Id"
DEADLINE_HEADER = "X-Hotpool-Deadline-Ms"
ARN_TEMPLATE = "arn:hotpool:lambda:local:000000000000:function:{name}:{version}"
LOG_GROUP_TEMPLATE = "/hotpool/functions/{name}"
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


@contextlib.contextmanager
def captured_output(limit_bytes: int) -> Iterator[tuple[CaptureStream, CaptureStream]]:
    """Replace sys.stdout and sys.stderr with bounded captures for the block."""
    out, err = CaptureStream("stdout", limit_bytes), CaptureStream("stderr", limit_bytes)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved
        out.release()
        err.release()


@dataclasses.dataclass(frozen=True)
class FunctionConfig:
    """The validated fields of an /init request, except the code itself."""

    function_name: str
    function_version: int
    handler: str
    memory_mb: int
    timeout_s: float
    env: dict[str, str]
    log_limit_bytes: int

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> FunctionConfig:
        """Validate an /init body; raises RequestError(400) naming the bad field."""
        config = cls(
            function_name=_field(body, "function_name", str),
            function_version=_field(body, "function_version", int),
            handler=_field(body, "handler", str),
            memory_mb=_field(body, "memory_mb", int),
            timeout_s=float(_field(body, "timeout_s", (int, float))),
            env=_field(body, "env", dict, default={}),
            log_limit_bytes=_field(body, "log_limit_bytes", int, DEFAULT_LOG_LIMIT_BYTES),
        )
        module, _, attr = config.handler.rpartition(".")
        if not attr.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise _bad_request(f"handler must look like 'module.function', got {config.handler!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in config.env.items()):
            raise _bad_request("env must map strings to strings")
        if not config.function_name or config.memory_mb <= 0 or config.log_limit_bytes < 0:
            raise _bad_request("function_name, memory_mb or log_limit_bytes out of range")
        if not (math.isfinite(config.timeout_s) and config.timeout_s > 0):
            raise _bad_request("timeout_s must be a positive number")
        return config


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default=_MISSING):
    value = body.get(name, default)
    if value is _MISSING:
        raise _bad_request(f"missing field {name!r}")
    # bool is an int subclass, but true is never a valid version or size.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad_request(f"field {name!r} has the wrong type")
    return value


def _bad_request(message: str) -> RequestError:
    return RequestError(400, "BadRequest", message)


class LambdaContext:
    """The AWS Lambda context object, so stdlib-only Lambda handlers run unchanged."""

    def __init__(
        self,
        config: FunctionConfig,
        log_stream: str,
        request_id: str,
        deadline_ms: float,
        started: float,
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
        self._deadline = started + deadline_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the caller's deadline, never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclasses.dataclass(frozen=True)
class LoadedFunction:
    """Everything an initialised container needs to invoke its handler."""

    config: FunctionConfig
    handler: Callable[..., Any]
    loop: asyncio.AbstractEventLoop
    log_stream: str


class Runtime:
    """The one function this container serves: initialised once, invoked one call at a time."""

    def __init__(self, code_dir: str) -> None:
        self.code_dir = pathlib.Path(code_dir).resolve()
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
            config = FunctionConfig.from_request(request)
            _unpack_code(_field(request, "code_zip_b64", str), self.code_dir)
            os.environ.update(config.env)
            if str(self.code_dir) not in sys.path:
                sys.path.insert(0, str(self.code_dir))
            # Lambda code opens bundled files relative to its task directory.
            os.chdir(self.code_dir)
            with captured_output(config.log_limit_bytes) as (out, err):
                handler, failure = _load_handler(config.handler)
            logs = {"stdout": out.getvalue(), "stderr": err.getvalue()}
            if failure is not None:
                raise RequestError(
                    422, failure["type"], failure["message"], traceback=failure["traceback"], **logs
                )
            self._loaded = LoadedFunction(
                config, handler, asyncio.new_event_loop(), _log_stream_name(config)
            )
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
            request_id = headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
            deadline_ms = _deadline_ms(headers.get(DEADLINE_HEADER), loaded.config.timeout_s)
            context = LambdaContext(
                loaded.config, loaded.log_stream, request_id, deadline_ms, started
            )
            return _run_handler(loaded, event, context)
        finally:
            self._invoke_lock.release()


def _run_handler(loaded: LoadedFunction, event: Any, context: LambdaContext) -> bytes:
    with captured_output(loaded.config.log_limit_bytes) as (out, err):
        started = time.perf_counter()
        try:
            result, error = _call(loaded, event, context), None
        except BaseException as exc:  # the server must outlive anything user code raises
            result, error = None, _describe(exc)
        duration_ms = (time.perf_counter() - started) * 1000
    summary = {
        "duration_ms": duration_ms,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
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


def _call(loaded: LoadedFunction, event: Any, context: LambdaContext) -> Any:
    # Sync handlers that call asyncio.get_event_loop() get the persistent loop too.
    asyncio.set_event_loop(loaded.loop)
    outcome = loaded.handler(event, context)
    if inspect.isawaitable(outcome):
        return loaded.loop.run_until_complete(outcome)
    return outcome


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


def _unpack_code(code_zip_b64: str, code_dir: pathlib.Path) -> None:
    """Extract the zip into code_dir after checking that no entry escapes it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(code_zip_b64)))
    except (binascii.Error, ValueError, zipfile.BadZipFile) as exc:
        raise RequestError(400, "InvalidCodeZip", f"code_zip_b64: {exc}") from exc
    with archive:
        # Check every entry before writing any, so a refused zip leaves nothing behind.
        unsafe = [name for name in archive.namelist() if not _is_inside(name, code_dir)]
        if unsafe:
            raise RequestError(400, "InvalidCodeZip", f"zip entries escape the code dir: {unsafe}")
        code_dir.mkdir(parents=True, exist_ok=True)
        try:
            archive.extractall(code_dir)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise RequestError(400, "InvalidCodeZip", f"corrupt zip: {exc}") from exc


def _is_inside(name: str, root: pathlib.Path) -> bool:
    member = pathlib.PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or pathlib.PureWindowsPath(name).drive:
        return False
    try:
        target = (root / member).resolve()
    except (OSError, ValueError):  # e.g. an embedded NUL byte
        return False
    return target == root or root in target.parents


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
        raise _bad_request(f"{DEADLINE_HEADER} must be a finite number, got {header!r}")
    return value


def _log_stream_name(config: FunctionConfig) -> str:
    today = time.strftime("%Y/%m/%d", time.gmtime())
    return f"{today}/[{config.function_version}]{uuid.uuid4().hex}"


def _describe(exc: BaseException) -> dict[str, str]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, _user_frames(exc))),
    }


def _user_frames(exc: BaseException) -> types.TracebackType | None:
    """The traceback without the bootstrap's own frames: users debug their code, not ours."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb or exc.__traceback__


class BootstrapHandler(BaseHTTPRequestHandler):
    """Routes the three endpoints; one instance per connection, kept alive."""

    protocol_version = "HTTP/1.1"
    server_version = "hotpool-bootstrap"
    # Buffer writes so headers and a small body leave in one segment (TCP_NODELAY is on).
    wbufsize = 64 * 1024
    routes = {
        "/healthz": ("GET", "health"),
        "/init": ("POST", "init"),
        "/invoke": ("POST", "invoke"),
    }
    server: BootstrapServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: per-request access lines are noise and cost time on the hot path."""

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
            method, action = self.routes.get(self.path.split("?", 1)[0], (None, None))
            if action is None:
                raise RequestError(404, "NotFound", f"no such path: {self.path}")
            if self.command != method:
                raise RequestError(405, "MethodNotAllowed", f"{self.path} only accepts {method}")
            runtime_action = getattr(self.server.runtime, action)
            status, payload = 200, runtime_action(body, self.headers, started)
        except RequestError as exc:
            status, payload = exc.status, exc.payload()
        except Exception as exc:  # a bootstrap bug answers 500 instead of dropping the socket
            status, payload = 500, {"error": {"type": "InternalError", "message": repr(exc)}}
        try:
            self._send(status, payload)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "LengthRequired", "send a Content-Length, not chunks")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            # The unread body would be parsed as the next request; drop the connection.
            self.close_connection = True
            if length > MAX_BODY_BYTES:
                raise RequestError(413, "PayloadTooLarge", f"body over {MAX_BODY_BYTES} bytes")
            raise _bad_request("invalid Content-Length")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            raise _bad_request("connection closed before the body was complete")
        return body

    def _send(self, status: int, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class BootstrapServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the Runtime its handlers share."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], runtime: Runtime) -> None:
        super().__init__(address, BootstrapHandler)
        self.runtime = runtime


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(port))
    os.replace(tmp, path)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hotpool function-container bootstrap")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the OS pick")
    parser.add_argument("--code-dir", required=True, help="where the function zip is unpacked")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then return exit status 0."""
    args = _parse_args(argv)
    server = BootstrapServer((args.host, args.port), Runtime(args.code_dir))
    port = server.server_address[1]
    if args.port_file:
        _write_port_file(args.port_file, port)

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs in this very (main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.__stderr__.write(f"HOTPOOL_READY port={port}\n")
    sys.__stderr__.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    status = main()
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    # os._exit: non-daemon threads started by user code must not keep a stopped container alive.
    os._exit(status)

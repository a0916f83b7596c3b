"""One invocation: the event in, the handler run with its context and captured output, JSON out."""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time

from . import logs, reaping
from .capture import CapturedOutput
from .context import LambdaContext
from .errors import bad_request, describe, marshal_error
from .http11 import parse_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Mapping
    from typing import Any

    from .loader import LoadedFunction
    from .stream import StreamedResult

# Header names are lower-cased on parsing.
REQUEST_ID_HEADER = "x-hotpool-request-id"
DEADLINE_HEADER = "x-hotpool-deadline-ms"
# the attempt number of an asynchronous event (1, then 2, ... on retries): same request id
ATTEMPT_HEADER = "x-hotpool-attempt"


async def _async_generator() -> Any:
    yield


# types.GeneratorType and types.AsyncGeneratorType, made as types makes them: importing types
# would cost every idle container its memory
GENERATOR_TYPES = (type((lambda: (yield))()), type(_async_generator()))


def invoke(
    loaded: LoadedFunction, body: bytes, headers: Mapping[str, str], started: float
) -> bytes | StreamedResult:
    """Run the handler on one event and return the encoded /invoke response, or the stream
    that sends the items of a generator it returned (``stream``).

    ``started`` is the monotonic time the request arrived; the deadline counts from it.
    """
    event = parse_json(body) if body else None
    request_id = headers.get(REQUEST_ID_HEADER) or _uuid4()
    deadline_ms = _deadline_ms(headers.get(DEADLINE_HEADER), loaded.config.timeout_s)
    deadline = started + deadline_ms / 1000
    context = LambdaContext(loaded.config, loaded.log_stream, request_id, deadline)
    attempt = headers.get(ATTEMPT_HEADER, "1")
    context.attempt = int(attempt) if attempt.isdigit() and len(attempt) < 6 else 1
    # log lines carry it from now on, and still after the call (awslambdaric keeps it too)
    logs.settings.request_id = request_id
    # before: what /init or a thread of the last call started after it returned
    reaping.kill_leftovers()
    answer: bytes | StreamedResult = b""
    try:
        answer = _run_handler(loaded, event, context, deadline_ms)
        return answer
    finally:
        if type(answer) is bytes:  # a stream kills them once its last item is sent
            reaping.kill_leftovers()


def _run_handler(
    loaded: LoadedFunction, event: Any, context: LambdaContext, deadline_ms: float
) -> bytes | StreamedResult:
    output = CapturedOutput(loaded.config.log_limit_bytes)
    output.start()
    try:
        started = time.perf_counter()
        try:
            result, error = loaded.call(event, context), None
        except BaseException as exc:  # the server must outlive anything user code raises
            result, error = None, describe(exc)
        if error is None and _is_stream(result):
            from .stream import StreamedResult

            # the capture goes on while the items are produced; the stream stops it
            return StreamedResult(loaded, result, output, started, context, deadline_ms)
        duration_ms = (time.perf_counter() - started) * 1000
    except BaseException:
        output.stop()
        raise
    output.stop()
    summary = {
        "duration_ms": duration_ms,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **output.logs(),
    }
    if error is None:
        try:
            # allow_nan=False: NaN/Infinity would make the response invalid JSON.
            result_json = json.dumps(result, allow_nan=False, default=lambda_default)
        except Exception as exc:
            error = marshal_error(exc)
    if error is not None:
        return json.dumps({"status": "error", "error": error, **summary}).encode()
    # Splice the already-encoded result in rather than encoding it a second time.
    return f'{{"status": "success", "result": {result_json}, {json.dumps(summary)[1:]}'.encode()


def _is_stream(result: Any) -> bool:
    """A generator or async generator, or a dict (the web form) whose ``body`` is one."""
    if isinstance(result, dict):
        result = result.get("body")
    return isinstance(result, GENERATOR_TYPES)


def lambda_default(value: Any) -> Any:
    """What Lambda's encoder (awslambdaric's lambda_runtime_marshaller) adds to JSON: Decimal,
    as DynamoDB reads give numbers, is a number. Lambda writes its exact digits; the stdlib
    can only write an int or a float, so 9.50 comes back as 9.5."""
    decimal = sys.modules.get("decimal")  # a Decimal exists only once decimal was imported
    if decimal is not None and isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _deadline_ms(header: str | None, timeout_s: float) -> float:
    try:
        value = timeout_s * 1000 if header is None else float(header)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise bad_request(f"X-Hotpool-Deadline-Ms must be a finite number, got {header!r}")
    return value


def _uuid4() -> str:
    """A random RFC 4122 version-4 UUID, as ``str(uuid.uuid4())`` gives."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

"""The one tree of hotpool errors, and the HTTP status each one maps to.

::

    HotpoolError                      base; never raised itself
    ├── ClientError                   the caller must change the request (4xx)
    │   ├── InvalidRequest            400 malformed input (names, settings, JSON)
    │   ├── InvalidPackage            400 the code package is refused (zip rules, handler)
    │   ├── InvalidEvent              400 the invocation body is not JSON
    │   ├── Unauthorized              401 no API key, or not a valid one
    │   ├── Forbidden                 403 the key lacks the scope (inside its own namespace)
    │   ├── NotFound                  404 unknown function or container (or another tenant's)
    │   ├── RequestTimeout            408 the request body did not arrive in time
    │   ├── Gone                      410 the caller's WebSocket connection has ended
    │   ├── PayloadTooLarge           413 body over its limit
    │   └── TooManyRequests           429 over a concurrency limit; carries retry_after_s
    ├── FunctionError                 500 the user's code failed (exception, init failure, OOM)
    │   └── ResponseTooLarge          502 its return value is over HOTPOOL_MAX_RESPONSE_BYTES
    └── PlatformError                 a hotpool or infrastructure fault (5xx)
        ├── ContainerFailed           502 the container crashed or answered garbage
        ├── NoCapacity                503 no Manager can start a container
        ├── NotDelivered              503 no byte of the request reached its target (a container,
        │                                 a Manager): sending it elsewhere is safe
        ├── RuntimeImageMissing       503 the runtime image is not built on a Manager's node
        ├── StoreUnavailable          503 Redis or a database is unreachable
        ├── SchemaOutOfDate           503 the metadata database needs 'hotpool migrate'
        └── InvocationTimeout         504 the handler ran past its timeout; the container was killed

Function errors are the user's; platform errors are ours. Responses keep them apart: a function
error carries the ``X-Hotpool-Function-Error`` header, a platform error never does. Between
hotpool's own services an error travels as its ``to_dict`` body; ``error_from_body`` rebuilds it.
"""

from __future__ import annotations

from typing import Any


class HotpoolError(Exception):
    """Base of every hotpool error."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body of this error."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class ClientError(HotpoolError):
    """The request must change before it can succeed."""

    status = 400
    code = "BadRequest"


class InvalidRequest(ClientError):
    status = 400
    code = "InvalidRequest"


class InvalidPackage(ClientError):
    """The uploaded code package is not acceptable."""

    status = 400
    code = "InvalidPackage"


class InvalidEvent(ClientError):
    status = 400
    code = "InvalidEvent"


class Unauthorized(ClientError):
    status = 401
    code = "Unauthorized"


class Forbidden(ClientError):
    status = 403
    code = "Forbidden"


class NotFound(ClientError):
    status = 404
    code = "NotFound"


class RequestTimeout(ClientError):
    status = 408
    code = "RequestTimeout"


class Gone(ClientError):
    """The caller's own WebSocket connection has ended (API Gateway's GoneException)."""

    status = 410
    code = "GoneException"


class PayloadTooLarge(ClientError):
    status = 413
    code = "PayloadTooLarge"


class TooManyRequests(ClientError):
    status = 429
    code = "TooManyRequests"

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class FunctionError(HotpoolError):
    """The user's code failed: an exception in the handler or at import, or a crash."""

    status = 500
    code = "FunctionError"

    def __init__(
        self, message: str, *, error_type: str, traceback: str = "", **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.error_type = error_type
        self.traceback = traceback

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "type": self.error_type,
                "message": self.message,
                "traceback": self.traceback,
                **self.details,
            }
        }

    def invoke_body(self, request_id: str, stack_trace: list[str] | None = None) -> dict[str, Any]:
        """The body of this error as an invocation's answer: hotpool's ``error`` object and
        ``request_id``, and beside them Lambda's ``errorMessage``, ``errorType``,
        ``stackTrace`` (one string a frame, as awslambdaric lists them) and ``requestId``."""
        return {
            **self.to_dict(),
            "request_id": request_id,
            "errorMessage": self.message,
            "errorType": self.error_type,
            "stackTrace": list(stack_trace or []),
            "requestId": request_id,
        }


class ResponseTooLarge(FunctionError):
    """The function returned more than the response limit (Lambda: "Response payload size
    exceeded"); the answer was not read, and the container stays in service."""

    status = 502
    code = "ResponseTooLarge"


class PlatformError(HotpoolError):
    """A fault of hotpool or its infrastructure, not of the caller or the function."""

    status = 500
    code = "PlatformError"


class ContainerFailed(PlatformError):
    status = 502
    code = "ContainerFailed"


class NoCapacity(PlatformError):
    status = 503
    code = "NoCapacity"


class NotDelivered(PlatformError):
    """Connecting failed: no byte of the request reached its target, so retrying elsewhere
    is safe (it cannot run twice)."""

    status = 503
    code = "NotDelivered"


class RuntimeImageMissing(PlatformError):
    status = 503
    code = "RuntimeImageMissing"


class StoreUnavailable(PlatformError):
    status = 503
    code = "StoreUnavailable"


class SchemaOutOfDate(PlatformError):
    """The metadata database is not at the schema revision this hotpool needs."""

    status = 503
    code = "SchemaOutOfDate"


class InvocationTimeout(PlatformError):
    status = 504
    code = "Timeout"


def all_error_classes() -> list[type[HotpoolError]]:
    """Every concrete error class, for the test that the status table is total."""
    found: list[type[HotpoolError]] = []
    todo: list[type[HotpoolError]] = [HotpoolError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from_body(status: int, body: Any) -> HotpoolError:
    """The error a hotpool service answered with, rebuilt from its body's ``code``.

    The details travel with it (``full``, ``retry_after_s``, a function error's ``type`` and
    ``traceback``); a code this version does not know becomes the class of its status.
    """
    error = body.get("error") if isinstance(body, dict) else None
    fields = dict(error) if isinstance(error, dict) else {}
    code = str(fields.pop("code", ""))
    message = str(fields.pop("message", f"HTTP {status}"))
    by_code = {cls.code: cls for cls in all_error_classes()}
    by_status: dict[int, type[HotpoolError]] = {
        401: Unauthorized, 403: Forbidden, 404: NotFound, 408: RequestTimeout, 410: Gone,
        413: PayloadTooLarge, 429: TooManyRequests,
        502: ContainerFailed, 503: NoCapacity, 504: InvocationTimeout,
    }  # fmt: skip
    cls = by_code.get(code) or by_status.get(status)
    if cls is None:
        cls = ClientError if 400 <= status <= 499 else PlatformError
    if issubclass(cls, FunctionError):
        error_type = str(fields.pop("type", "Error"))
        traceback = str(fields.pop("traceback", ""))
        return cls(message, error_type=error_type, traceback=traceback, **fields)
    return cls(message, **fields)

"""What the relay answers: a call's outcome from what the runtime posted, and its errors."""

from __future__ import annotations

import json
import os
import time

from .context import ARN_TEMPLATE
from .http11 import StreamingBody, _response
from .runtime_api import error_answer

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    import socket
    from typing import Any

    from .config import FunctionConfig
    from .http11 import Request
    from .runtime_api import Answer

ERROR_TYPE_HEADER = "lambda-runtime-function-error-type"


class LastAnswer(StreamingBody):
    """An /invoke answer after which the container ends: sent, then ``then`` runs."""

    def __init__(self, encoded: bytes, then: Any) -> None:
        super().__init__()
        self._encoded = encoded
        self.on_end.append(then)

    def write(self, sock: socket.socket, keep_alive: bool) -> bool:
        try:
            sock.sendall(_response(200, self._encoded, keep_alive=False))
        except OSError:
            pass
        return False


def invalid_state(message: str) -> Answer:
    return error_answer(403, "InvalidStateTransition", message)


def result_of(body: bytes) -> Any:
    """What the runtime posted as the result: its JSON, or its text when it is not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def function_error(request: Request) -> dict[str, Any]:
    """The ``error`` field from a posted error: Lambda's {errorMessage, errorType,
    stackTrace} body, its type header winning (as Lambda's does)."""
    return posted_error(request.body, request.headers.get(ERROR_TYPE_HEADER))


def posted_error(body: bytes, error_type: str | None) -> dict[str, Any]:
    """The ``error`` field from Lambda's {errorMessage, errorType, stackTrace} ``body`` (a
    posted error's, or a streamed response's error trailer's) and its type header."""
    try:
        posted = json.loads(body) if body else {}
    except ValueError:
        posted = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(posted, dict):
        posted = {"errorMessage": json.dumps(posted)}
    trace = posted.get("stackTrace")
    trace = [str(line) for line in trace] if isinstance(trace, list) else []
    error_type = error_type or posted.get("errorType") or "Unhandled"
    return {
        "type": str(error_type),
        "message": str(posted.get("errorMessage", "")),
        "traceback": "\n".join(trace),
        "stack_trace": trace,
    }


def plain_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": error_type, "message": message, "traceback": "", "stack_trace": []}


def exit_error(request_id: str, how: str | None) -> dict[str, Any]:
    message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
    return plain_error("Runtime.ExitError", message)


def trace_id() -> str:
    """An X-Ray trace header as Lambda passes it (Root, Parent, Sampled)."""
    root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    return f"Root={root};Parent={os.urandom(8).hex()};Sampled=0"


def event_headers(
    config: FunctionConfig, request_id: str, deadline_epoch_ms: int
) -> dict[str, str]:
    """The headers of an event handed to the runtime (the answer to its /next)."""
    arn = ARN_TEMPLATE.format(
        region=config.region, name=config.function_name, version=config.function_version
    )
    return {
        "Lambda-Runtime-Aws-Request-Id": request_id,
        "Lambda-Runtime-Deadline-Ms": str(deadline_epoch_ms),
        "Lambda-Runtime-Invoked-Function-Arn": arn,
        "Lambda-Runtime-Trace-Id": trace_id(),
    }

"""What the relay answers: a call's outcome from what the runtime posted, and its errors."""

from __future__ import annotations

import json
import os
import time

from .http11 import StreamingBody, _response
from .runtime_api import error_answer

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    import socket
    from typing import Any

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
    try:
        posted = json.loads(request.body) if request.body else {}
    except ValueError:
        posted = {"errorMessage": request.body.decode("utf-8", "replace")}
    if not isinstance(posted, dict):
        posted = {"errorMessage": json.dumps(posted)}
    trace = posted.get("stackTrace")
    trace = [str(line) for line in trace] if isinstance(trace, list) else []
    error_type = request.headers.get(ERROR_TYPE_HEADER) or posted.get("errorType") or "Unhandled"
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

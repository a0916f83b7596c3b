"""How the runtime reports failures: requests it refuses, and exceptions user code raised."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from types import TracebackType
    from typing import Any

# Frames of files in this folder are the runtime's own, never the user's.
_RUNTIME_DIR = os.path.dirname(__file__)


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


def bad_request(message: str) -> RequestError:
    """A 400 BadRequest naming what is wrong."""
    return RequestError(400, "BadRequest", message)


def describe(exc: BaseException) -> dict[str, Any]:
    """A user exception as the ``error`` field of a response: type, message, traceback, and
    ``stack_trace``, the frames as Lambda's ``stackTrace`` lists them (one string a frame,
    ``traceback.format_list`` as awslambdaric makes it)."""
    import traceback

    frames = _user_frames(exc)
    trace = traceback.format_exception(type(exc), exc, frames)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(trace),
        "stack_trace": traceback.format_list(traceback.extract_tb(frames)),
    }


def _user_frames(exc: BaseException) -> TracebackType | None:
    """The traceback without the runtime's own frames: users debug their code, not ours."""
    tb = exc.__traceback__
    # co_filename and __file__ are spelt alike (both come from the same sys.path entry), so
    # comparing strings holds even after /init changed the working directory.
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _RUNTIME_DIR:
        tb = tb.tb_next
    return tb or exc.__traceback__


def marshal_error(exc: Exception) -> dict[str, Any]:
    """The ``error`` field for a result that cannot be encoded, named as Lambda's runtime
    names it (awslambdaric's FaultException)."""
    return {
        "type": "Runtime.MarshalError",
        "message": f"Unable to marshal response: {exc}",
        "traceback": "",
        "stack_trace": [],
    }

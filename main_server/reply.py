"""What a container's reply says (the bootstrap's JSON answer, or a stream's ``E`` summary,
which has the same keys but ``result``): the execution record's fields, and the function
error it describes."""

from __future__ import annotations

from typing import Any

from hotpool.main_server.ports import ColdStart
from hotpool.shared.errors import FunctionError


def fill_record(record: dict[str, Any], reply: dict[str, Any], cold: ColdStart | None) -> None:
    """Copy the reply's figures, output and error into ``record``."""
    stdout, stderr = reply.get("stdout", ""), reply.get("stderr", "")
    if cold is not None and isinstance(stdout, str) and isinstance(stderr, str):
        # a cold call's record begins with what the module printed at import, as Lambda's
        # log stream does; each part is bounded by log_limit_bytes, so the whole by twice
        stdout, stderr = cold.init_stdout + stdout, cold.init_stderr + stderr
    record.update(
        status=reply["status"],
        handler_ms=reply.get("duration_ms"),
        peak_memory_mb=reply.get("peak_memory_mb"),
        stdout=stdout,
        stderr=stderr,
    )
    if reply.get("streamed"):  # a stream that ended before its first byte
        record.update(streamed=True, bytes_streamed=0, aborted=bool(reply.get("aborted")))
    if reply["status"] != "success":
        error = reply.get("error") or {}
        record["error"] = {"type": error.get("type"), "message": error.get("message")}


def function_error(reply: dict[str, Any]) -> tuple[FunctionError, list[str]]:
    """The error of a reply whose status is "error", and its stack trace (Lambda's
    ``stackTrace``: a list of strings, else empty)."""
    error = reply.get("error") or {}
    stack_trace = error.get("stack_trace")
    if not isinstance(stack_trace, list) or not all(isinstance(f, str) for f in stack_trace):
        stack_trace = []
    exc = FunctionError(
        str(error.get("message", "")),
        error_type=str(error.get("type", "Error")),
        traceback=str(error.get("traceback", "")),
    )
    return exc, stack_trace

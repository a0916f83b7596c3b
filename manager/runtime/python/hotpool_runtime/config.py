"""The function's configuration, as one /init request gives it."""

from __future__ import annotations

import math

from .errors import bad_request

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from typing import Any

DEFAULT_LOG_LIMIT_BYTES = 64 * 1024
DEFAULT_REGION = "us-east-1"
LOG_FORMATS = ("text", "json")
# Lambda's application log levels (TRACE and WARN/FATAL are its names); "" leaves the default
LOG_LEVELS = ("", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_MISSING = object()


class FunctionConfig:
    """The validated fields of an /init request, except the code itself."""

    def __init__(self, body: dict[str, Any], *, free_handler: bool = False) -> None:
        """Validate an /init body; raises RequestError(400) naming the bad field.
        ``free_handler``: the handler is any text a custom runtime reads (``_HANDLER``)."""
        self.function_name: str = field(body, "function_name", str)
        self.function_version: int = field(body, "function_version", int)
        self.handler: str = field(body, "handler", str)
        self.memory_mb: int = field(body, "memory_mb", int)
        self.timeout_s = float(field(body, "timeout_s", (int, float)))
        self.env: dict[str, str] = field(body, "env", dict, default={})
        self.log_limit_bytes: int = field(body, "log_limit_bytes", int, DEFAULT_LOG_LIMIT_BYTES)
        self.region: str = field(body, "region", str, DEFAULT_REGION)
        self.log_format: str = field(body, "log_format", str, "text")
        self.log_level: str = field(body, "log_level", str, "")
        if free_handler:
            if not valid_free_handler(self.handler):
                raise bad_request(f"handler must be 1-128 printable characters, no spaces, got "
                                  f"{self.handler[:200]!r}")  # fmt: skip
        elif not _valid_handler(self.handler):
            raise bad_request(
                f"handler must look like 'module.function' or 'dir/module.function', "
                f"got {self.handler!r}"
            )
        if self.log_format not in LOG_FORMATS or self.log_level not in LOG_LEVELS:
            raise bad_request(f"log_format must be one of {LOG_FORMATS}, log_level of {LOG_LEVELS}")
        if not self.region or not self.region.isprintable():
            raise bad_request("region must be a non-empty printable string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise bad_request("env must map strings to strings")
        if not self.function_name or self.memory_mb <= 0 or self.log_limit_bytes < 0:
            raise bad_request("function_name, memory_mb or log_limit_bytes out of range")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise bad_request("timeout_s must be a positive number")


def module_name(handler: str) -> str:
    """The module to import for ``handler``: as awslambdaric does, ``dir/module.function``
    names the module ``dir.module`` (a folder of the code directory is a namespace package)."""
    return handler.rpartition(".")[0].replace("/", ".")


def valid_free_handler(handler: str) -> bool:
    """Lambda's rule for a custom runtime's handler: 1-128 characters, no whitespace."""
    return (
        0 < len(handler) <= 128 and handler.isprintable() and not any(c.isspace() for c in handler)
    )


def _valid_handler(handler: str) -> bool:
    *folders, dotted = handler.split("/")
    module, _, attr = dotted.rpartition(".")
    return (
        attr.isidentifier()
        and all(p.isidentifier() for p in module.split("."))
        and all(f and f not in (".", "..") and "." not in f for f in folders)
    )


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default=_MISSING):
    """``body[name]`` checked to be a ``kind``; raises RequestError(400) naming the field."""
    value = body.get(name, default)
    if value is _MISSING:
        raise bad_request(f"missing field {name!r}")
    # bool is an int subclass, but true is never a valid version or size.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise bad_request(f"field {name!r} has the wrong type")
    return value

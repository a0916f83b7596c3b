"""The runtimes a function may name and the handler each takes: its default when a function
names none and the form it must have (Lambda's defaults and forms differ per runtime)."""

from __future__ import annotations

import re
from typing import Any

from hotpool.shared.errors import InvalidRequest

RUNTIMES = ("python", "nodejs", "provided")
# ``module.function``, ``pkg.module.function`` or, as Serverless Framework and CDK apps write
# it, ``dir/module.function`` (a folder path before the dotted part)
HANDLER_RE = re.compile(
    r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z"
)
# Lambda's Node runtime: `dir/file.export`, the file named up to the first dot (so it may hold
# '-' but no dot) and found as file, file.js, file.mjs or file.cjs; the export a dotted path
NODE_HANDLER_RE = re.compile(
    r"^(?:[A-Za-z0-9_@][A-Za-z0-9_.@-]*/)*[A-Za-z0-9_$-]+(\.[A-Za-z_$][A-Za-z0-9_$]*)+\Z"
)
# each runtime's handler when a function names none, and its form (Lambda's defaults differ)
# (a custom runtime's handler is free text its bootstrap reads from _HANDLER)
DEFAULT_HANDLERS = {
    "python": "main.handler",
    "nodejs": "index.handler",
    "provided": "function.handler",
}
HANDLER_FORMS = {
    "python": (HANDLER_RE, "'module.function' or 'dir/module.function', e.g. 'main.handler'"),
    "nodejs": (NODE_HANDLER_RE, "'file.export' or 'dir/file.export', e.g. 'index.handler'"),
}


def resolve_handler(runtime: Any, handler: Any) -> str:
    """The handler a function of ``runtime`` runs: ``handler``, or the runtime's default when
    it is empty. InvalidRequest for an unknown runtime or a handler not of the runtime's form."""
    if runtime not in RUNTIMES:
        raise InvalidRequest(f"runtime {runtime!r} is not supported; use one of {RUNTIMES}")
    if not isinstance(handler, str):
        raise InvalidRequest("handler must be a string")
    handler = handler or DEFAULT_HANDLERS[runtime]
    if runtime == "provided":
        _validate_free_handler(handler)
    else:
        pattern, form = HANDLER_FORMS[runtime]
        if not pattern.match(handler):
            raise InvalidRequest(f"handler {handler[:200]!r} must be {form}")
    return handler


def _validate_free_handler(handler: str) -> None:
    """A custom runtime's handler (``provided``): any text it reads from ``_HANDLER``, as on
    Lambda: 1-128 characters, printable, no whitespace."""
    if not (0 < len(handler) <= 128 and handler.isprintable() and not re.search(r"\s", handler)):
        raise InvalidRequest(
            f"handler {handler[:80]!r} of a provided function must be 1-128 printable "
            "characters without spaces (the runtime reads it from _HANDLER), "
            "e.g. 'function.handler'"
        )

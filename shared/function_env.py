"""A function's environment variables (its ``env`` setting): the names the runtime reserves,
as Lambda does, and the limits on how many and how large."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hotpool.shared.errors import InvalidRequest

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
MAX_ENV_VARS = 64
MAX_ENV_BYTES = 4096
# set by the runtime for every function, as Lambda's reserved variables are; credentials
# (AWS_ACCESS_KEY_ID, ...) stay settable, as there is no execution role to supply them
RESERVED_ENV = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
        # a WebSocket function's @connections endpoint and credential (shared.ws_token)
        "HOTPOOL_CONNECTIONS_URL", "HOTPOOL_CONNECTIONS_TOKEN",
    }
)  # fmt: skip


def validate_env(env: Any) -> None:
    """InvalidRequest, naming the fault, unless ``env`` is a mapping of settable names to
    strings within the limits."""
    if not isinstance(env, Mapping):
        raise InvalidRequest('env must be a JSON object of strings, e.g. {"KEY": "value"}')
    if len(env) > MAX_ENV_VARS:
        raise InvalidRequest(f"env has {len(env)} variables; at most {MAX_ENV_VARS} are allowed")
    total = 0
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise InvalidRequest(f"env name {str(key)[:40]!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if key in RESERVED_ENV:
            raise InvalidRequest(f"env name {key} is reserved: the runtime sets it, as Lambda does")
        if not isinstance(value, str):
            raise InvalidRequest(f"env value of {key} must be a string")
        if "\x00" in value:
            raise InvalidRequest(f"env value of {key} must not contain NUL")
        total += len(key) + len(value.encode())
    if total > MAX_ENV_BYTES:
        raise InvalidRequest(f"env is {total} bytes; at most {MAX_ENV_BYTES} are allowed")

"""Data shapes shared by Main and Manager: function configs and versions, pool entries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from hotpool.shared.errors import InvalidRequest

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
RUNTIMES = ("python",)
MEMORY_MB_RANGE = (64, 10240)
TIMEOUT_S_RANGE = (0.1, 900.0)
MAX_CONCURRENCY_RANGE = (1, 1000)
MAX_ENV_VARS = 64
MAX_ENV_BYTES = 4096


DEFAULT_NAMESPACE = "default"


def qualify(namespace: str, name: str) -> str:
    """The namespace-qualified name that identifies a function everywhere inside hotpool
    (metadata, pool keys, container labels, records): ``name`` in the default namespace,
    ``namespace.name`` elsewhere. Names and namespaces have no dots, so it is unambiguous."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}.{name}"


def split_qualified(qualified: str) -> tuple[str, str]:
    namespace, dot, name = qualified.rpartition(".")
    return (namespace, name) if dot else (DEFAULT_NAMESPACE, qualified)


def validate_qualified(qualified: str) -> str:
    namespace, name = split_qualified(qualified)
    validate_name(namespace, what="namespace")
    validate_name(name)
    return qualified


def validate_name(name: str, what: str = "function name") -> str:
    """A function name: lower-case letters, digits and '-', starting with a letter, <= 63."""
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid {what} {name[:80]!r}: use 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter"
        )
    return name


@dataclass(frozen=True)
class FunctionConfig:
    """The user-settable settings of one function version."""

    runtime: str = "python"
    handler: str = "main.handler"
    memory_mb: int = 128
    timeout_s: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict)
    # most containers (so most simultaneous calls) this function may have
    max_concurrency: int = 100

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InvalidRequest(
                f"runtime {self.runtime!r} is not supported; use one of {RUNTIMES}"
            )
        if not HANDLER_RE.match(self.handler):
            raise InvalidRequest(
                f"handler {self.handler!r} must be 'module.function', e.g. 'main.handler'"
            )
        low, high = MEMORY_MB_RANGE
        if not low <= self.memory_mb <= high:
            raise InvalidRequest(f"memory_mb must be between {low} and {high}")
        low_t, high_t = TIMEOUT_S_RANGE
        if not low_t <= self.timeout_s <= high_t:
            raise InvalidRequest(f"timeout_s must be between {low_t} and {high_t}")
        low_c, high_c = MAX_CONCURRENCY_RANGE
        if not low_c <= self.max_concurrency <= high_c:
            raise InvalidRequest(f"max_concurrency must be between {low_c} and {high_c}")
        _validate_env(self.env)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> FunctionConfig:
        """Parse query or form parameters; unknown names are refused, not ignored."""
        known = {"runtime", "handler", "memory_mb", "timeout_s", "env", "max_concurrency"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidRequest(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        if "runtime" in params:
            values["runtime"] = params["runtime"]
        if "handler" in params:
            values["handler"] = params["handler"]
        if "memory_mb" in params:
            values["memory_mb"] = _parse_number(params["memory_mb"], "memory_mb", int)
        if "timeout_s" in params:
            values["timeout_s"] = _parse_number(params["timeout_s"], "timeout_s", float)
        if "max_concurrency" in params:
            values["max_concurrency"] = _parse_number(
                params["max_concurrency"], "max_concurrency", int
            )
        if "env" in params:
            try:
                env = orjson.loads(params["env"])
            except orjson.JSONDecodeError:
                raise InvalidRequest('env must be a JSON object, e.g. {"KEY": "value"}') from None
            values["env"] = env
        return cls(**values)

    def to_dict(self, *, mask_env: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = {k: "***" for k in self.env} if mask_env else dict(self.env)
        return data


def _parse_number(raw: str, name: str, kind: type) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {raw[:40]!r}") from None


def _validate_env(env: Any) -> None:
    if not isinstance(env, Mapping):
        raise InvalidRequest('env must be a JSON object of strings, e.g. {"KEY": "value"}')
    if len(env) > MAX_ENV_VARS:
        raise InvalidRequest(f"env has {len(env)} variables; at most {MAX_ENV_VARS} are allowed")
    total = 0
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            raise InvalidRequest(f"env name {str(key)[:40]!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if not isinstance(value, str):
            raise InvalidRequest(f"env value of {key} must be a string")
        if "\x00" in value:
            raise InvalidRequest(f"env value of {key} must not contain NUL")
        total += len(key) + len(value.encode())
    if total > MAX_ENV_BYTES:
        raise InvalidRequest(f"env is {total} bytes; at most {MAX_ENV_BYTES} are allowed")


@dataclass(frozen=True)
class FunctionVersion:
    """One immutable version of a function, as stored in the metadata store."""

    name: str
    version: int
    code_sha256: str
    code_key: str
    config: FunctionConfig
    created_at: datetime

    @property
    def namespace(self) -> str:
        return split_qualified(self.name)[0]

    @property
    def short_name(self) -> str:
        return split_qualified(self.name)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.short_name,
            "namespace": self.namespace,
            "version": self.version,
            "code_sha256": self.code_sha256,
            "created_at": self.created_at.isoformat(),
            **self.config.to_dict(mask_env=True),
        }


# what Main and the Manager present to a container's bootstrap on every request
CONTAINER_SECRET_HEADER = "X-Hotpool-Container-Secret"


@dataclass(frozen=True)
class PoolEntry:
    """One container as it sits in a pool list or a lease.

    It carries the container's secret, so Main can call the container with no look-up; the
    secret is last, so scripts that read the leading fields are unaffected."""

    function: str
    version: int
    manager_id: str
    container_id: str
    address: str  # host:port, called directly by Main
    secret: str = field(default="", repr=False)  # the bootstrap refuses requests without it

    def encode(self) -> str:
        return "|".join(
            (
                self.function,
                str(self.version),
                self.manager_id,
                self.container_id,
                self.address,
                self.secret,
            )
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> PoolEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        fields = text.split("|")
        if len(fields) == 5:  # written by a Manager from before containers had secrets
            fields.append("")
        function, version, manager_id, container_id, address, secret = fields
        return cls(function, int(version), manager_id, container_id, address, secret)

"""Data shapes shared by Main and Manager: function names, configs and versions, pool entries.

A config's runtime and handler follow shared.runtimes, its env shared.function_env, its
cross-origin rules shared.cors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from hotpool.shared.cors import Cors
from hotpool.shared.errors import InvalidRequest
from hotpool.shared.function_env import validate_env
from hotpool.shared.images import IMAGE_HANDLER, check_image_config
from hotpool.shared.runtimes import resolve_handler

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
LAYER_RE = re.compile(r"^([a-z][a-z0-9_-]{0,62}):([1-9][0-9]{0,8})\Z")
MAX_LAYERS = 5
MEMORY_MB_RANGE = (64, 10240)
TIMEOUT_S_RANGE = (0.1, 900.0)
MAX_CONCURRENCY_RANGE = (1, 1000)
# asynchronous invocation (Lambda's limits): retries of a function error, the oldest an event
# may be when it is (re)tried
ASYNC_RETRIES_RANGE = (0, 2)
MAX_EVENT_AGE_S_RANGE = (60, 21_600)
LOG_FORMATS = ("text", "json")
# Lambda's application log levels; WARN and FATAL are Lambda's names for WARNING and CRITICAL
LOG_LEVELS = ("", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
HTTP_MODES = ("key", "public", "off")
HTTP_PAYLOADS = ("2.0", "1.0")
WEBSOCKET_MODES = ("off", "key", "public")
# API Gateway's default route selection expression for WebSocket APIs
DEFAULT_ROUTE_SELECTION = "$request.body.action"
# the route selection expressions hotpool evaluates: a dotted path into a JSON message body
ROUTE_SELECTION_RE = re.compile(r"^\$request\.body(\.[A-Za-z0-9_-]{1,64}){1,8}\Z")


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
    # "" = the runtime's default (shared.runtimes): main.handler, or index.handler for Node
    handler: str = ""
    memory_mb: int = 128
    timeout_s: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict)
    # most containers (so most simultaneous calls) this function may have
    max_concurrency: int = 100
    # Lambda layers, "name:version" in the function's namespace, in sys.path order
    layers: tuple[str, ...] = ()
    # the runtime's log lines: Lambda's tab-separated text or one JSON object a line
    log_format: str = "text"
    # the root logger's level ("" leaves Lambda's default: WARNING for text, INFO for JSON)
    log_level: str = ""
    # the /fn/ web route: a Bearer key with invoke, "public" (no key), or "off"
    http: str = "key"
    # the API Gateway payload format of web requests: HTTP API 2.0 or REST API 1.0
    http_payload: str = "2.0"
    cors: Cors | None = None
    # asynchronous invocations: retries after a function error, the age past which an event
    # is no longer tried, and the functions (of the same namespace) that receive Lambda's
    # destination record on success and on failure ("" = none)
    async_retries: int = 2
    max_event_age_s: int = 21_600
    on_success: str = ""
    on_failure: str = ""
    # the /ws/ WebSocket route (API Gateway WebSocket API semantics): a Bearer key with invoke
    # (header or ?token=), "public", or "off"; and how a message's routeKey is chosen
    websocket: str = "off"
    ws_route_selection: str = DEFAULT_ROUTE_SELECTION
    # a container-image function (shared.images): the reference deployed, the image ID it
    # resolved to at deploy (the pin; set by hotpool, never by the deployer), and Lambda's
    # ImageConfig overrides of the image's ENTRYPOINT, CMD and WORKDIR
    image: str = ""
    image_id: str = ""
    image_entrypoint: tuple[str, ...] = ()
    image_command: tuple[str, ...] = ()
    image_workdir: str = ""

    def __post_init__(self) -> None:
        # frozen: set once here, to the runtime's default when none is named
        object.__setattr__(self, "handler", resolve_handler(self.runtime, self.handler))
        low, high = MEMORY_MB_RANGE
        if not low <= self.memory_mb <= high:
            raise InvalidRequest(f"memory_mb must be between {low} and {high}")
        low_t, high_t = TIMEOUT_S_RANGE
        if not low_t <= self.timeout_s <= high_t:
            raise InvalidRequest(f"timeout_s must be between {low_t} and {high_t}")
        low_c, high_c = MAX_CONCURRENCY_RANGE
        if not low_c <= self.max_concurrency <= high_c:
            raise InvalidRequest(f"max_concurrency must be between {low_c} and {high_c}")
        validate_env(self.env)
        _validate_layers(self.layers)
        _choice("log_format", self.log_format, LOG_FORMATS)
        _choice("log_level", self.log_level, LOG_LEVELS)
        _choice("http", self.http, HTTP_MODES)
        _choice("http_payload", self.http_payload, HTTP_PAYLOADS)
        _choice("websocket", self.websocket, WEBSOCKET_MODES)
        if not isinstance(self.ws_route_selection, str) or not ROUTE_SELECTION_RE.match(
            self.ws_route_selection
        ):
            raise InvalidRequest(
                f"ws_route_selection {str(self.ws_route_selection)[:80]!r} must be "
                "'$request.body.<name>' or a dotted path such as '$request.body.message.type' "
                "(names of letters, digits, '_' and '-')"
            )
        _in_range("async_retries", self.async_retries, ASYNC_RETRIES_RANGE)
        _in_range("max_event_age_s", self.max_event_age_s, MAX_EVENT_AGE_S_RANGE)
        for name in ("on_success", "on_failure"):
            if getattr(self, name):
                validate_name(getattr(self, name), what=f"{name} function name")
        check_image_config(self)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> FunctionConfig:
        """Parse query or form parameters; unknown names are refused, not ignored."""
        unknown = sorted((set(params) - set(_PARSERS)) | (set(params) & {"image_id"}))
        if unknown:
            known = sorted(set(_PARSERS) - {"image_id"})
            raise InvalidRequest(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values = {name: _PARSERS[name](raw) for name, raw in params.items()}
        if values.get("image"):  # Lambda's PackageType=Image: no runtime, no handler
            for name in ("runtime", "handler"):
                if name in values:
                    raise InvalidRequest(
                        f"an image function takes no {name}: its image brings its runtime "
                        "(image_command overrides the image's CMD, where AWS's images name "
                        "the handler)"
                    )
            values.update(runtime="provided", handler=IMAGE_HANDLER)
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionConfig:
        """The config ``to_dict`` gave (unmasked), e.g. in a Manager's create request."""
        values = {k: data[k] for k in _PARSERS if k in data}
        for name in ("layers", "image_entrypoint", "image_command"):
            if name in values:
                values[name] = tuple(values[name])
        if values.get("cors") is not None:
            values["cors"] = Cors.from_dict(values["cors"])
        return cls(**values)

    def options(self) -> dict[str, Any]:
        """The settings stored beside the columns of a version (its ``options`` JSON)."""
        data = self.to_dict()
        return {name: data[name] for name in OPTION_NAMES}

    def to_dict(self, *, mask_env: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = {k: "***" for k in self.env} if mask_env else dict(self.env)
        data["layers"] = list(self.layers)
        data["image_entrypoint"] = list(self.image_entrypoint)
        data["image_command"] = list(self.image_command)
        data["cors"] = self.cors.to_dict() if self.cors is not None else None
        return data


# the settings added after the first columns, kept in one JSON column ("options")
OPTION_NAMES = (
    "layers", "log_format", "log_level", "http", "http_payload", "cors",
    "async_retries", "max_event_age_s", "on_success", "on_failure",
    "websocket", "ws_route_selection",
    "image", "image_id", "image_entrypoint", "image_command", "image_workdir",
)  # fmt: skip


def _parse_json(name: str, example: str) -> Any:
    def parse(raw: str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest(f"{name} must be {example}") from None

    return parse


def _parse_layers(raw: str) -> tuple[str, ...]:
    """``name:version`` items, comma-separated or as a JSON list."""
    raw = raw.strip()
    if raw.startswith("["):
        items = _parse_json("layers", 'a JSON list, e.g. ["deps:1"]')(raw)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidRequest('layers must be a list of "name:version" strings')
        return tuple(items)
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_cors(raw: str) -> Cors | None:
    data = _parse_json("cors", 'a JSON object, e.g. {"allow_origins": ["https://a.example"]}')(raw)
    return None if data is None else Cors.from_dict(data)


_PARSERS: dict[str, Any] = {
    "runtime": str,
    "handler": str,
    "memory_mb": lambda raw: _parse_number(raw, "memory_mb", int),
    "timeout_s": lambda raw: _parse_number(raw, "timeout_s", float),
    "max_concurrency": lambda raw: _parse_number(raw, "max_concurrency", int),
    "env": _parse_json("env", 'a JSON object, e.g. {"KEY": "value"}'),
    "layers": _parse_layers,
    "log_format": lambda raw: raw.strip().lower(),
    "log_level": lambda raw: raw.strip().upper(),
    "http": str,
    "http_payload": str,
    "cors": _parse_cors,
    "async_retries": lambda raw: _parse_number(raw, "async_retries", int),
    "max_event_age_s": lambda raw: _parse_number(raw, "max_event_age_s", int),
    "on_success": str,
    "on_failure": str,
    "websocket": lambda raw: raw.strip().lower(),
    "ws_route_selection": lambda raw: raw.strip(),
    "image": lambda raw: raw.strip(),
    "image_id": str,  # from_dict only: the pin is hotpool's, from_params refuses it
    "image_entrypoint": _parse_json("image_entrypoint", 'a JSON list, e.g. ["/entry.sh"]'),
    "image_command": _parse_json("image_command", 'a JSON list, e.g. ["app.handler"]'),
    "image_workdir": str,
}


def _parse_number(raw: str, name: str, kind: type) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {raw[:40]!r}") from None


def _in_range(name: str, value: Any, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed if a)
        raise InvalidRequest(f"{name} {str(value)[:40]!r} is not one of {shown}")


def _validate_layers(layers: Any) -> None:
    if not isinstance(layers, tuple) or not all(isinstance(x, str) for x in layers):
        raise InvalidRequest('layers must be a list of "name:version" strings')
    if len(layers) > MAX_LAYERS:
        raise InvalidRequest(f"a function may use at most {MAX_LAYERS} layers, got {len(layers)}")
    for layer in layers:
        if not LAYER_RE.match(layer):
            raise InvalidRequest(f'layer {layer[:80]!r} must be "name:version", e.g. "deps:1"')
    names = [layer.partition(":")[0] for layer in layers]
    if len(set(names)) != len(names):
        raise InvalidRequest("a function may use each layer once")


@dataclass(frozen=True)
class FunctionVersion:
    """One immutable version of a function, as stored in the metadata store."""

    name: str
    version: int
    code_sha256: str
    code_key: str
    config: FunctionConfig
    created_at: datetime
    # the code keys of config.layers, in order, resolved at deploy (the content they name)
    layer_keys: tuple[str, ...] = ()

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

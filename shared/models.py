"""Data shapes shared by Main and Manager: function configs and versions, pool entries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson

from hotpool.shared.errors import InvalidRequest
from hotpool.shared.images import IMAGE_HANDLER, check_image_config

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
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
LAYER_RE = re.compile(r"^([a-z][a-z0-9_-]{0,62}):([1-9][0-9]{0,8})\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
RUNTIMES = ("python", "nodejs", "provided")
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
MEMORY_MB_RANGE = (64, 10240)
TIMEOUT_S_RANGE = (0.1, 900.0)
MAX_CONCURRENCY_RANGE = (1, 1000)
# asynchronous invocation (Lambda's limits): retries of a function error, the oldest an event
# may be when it is (re)tried
ASYNC_RETRIES_RANGE = (0, 2)
MAX_EVENT_AGE_S_RANGE = (60, 21_600)
MAX_ENV_VARS = 64
MAX_ENV_BYTES = 4096
MAX_LAYERS = 5
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
    # "" = the runtime's default (DEFAULT_HANDLERS): main.handler, or index.handler for Node
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
        if self.runtime not in RUNTIMES:
            raise InvalidRequest(
                f"runtime {self.runtime!r} is not supported; use one of {RUNTIMES}"
            )
        if not isinstance(self.handler, str):
            raise InvalidRequest("handler must be a string")
        if not self.handler:  # frozen: set once here, as the runtime's default
            object.__setattr__(self, "handler", DEFAULT_HANDLERS[self.runtime])
        if self.runtime == "provided":
            _validate_free_handler(self.handler)
        else:
            pattern, form = HANDLER_FORMS[self.runtime]
            if not pattern.match(self.handler):
                raise InvalidRequest(f"handler {self.handler[:200]!r} must be {form}")
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


@dataclass(frozen=True)
class Cors:
    """Cross-origin rules of a web function, as a Lambda function URL's ``Cors`` has them."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int = 0
    allow_credentials: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> Cors:
        if not isinstance(data, Mapping):
            raise InvalidRequest('cors must be a JSON object, e.g. {"allow_origins": ["*"]}')
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise InvalidRequest(
                f"unknown cors setting(s) {', '.join(map(str, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
            items = data.get(name, [])
            if not isinstance(items, list) or not all(
                isinstance(i, str) and 0 < len(i) <= 253 and _printable(i) for i in items
            ):
                raise InvalidRequest(f"cors.{name} must be a list of non-empty strings")
            if len(items) > 100:
                raise InvalidRequest(f"cors.{name} has {len(items)} entries; at most 100")
            values[name] = tuple(items)
        max_age = data.get("max_age_s", 0)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= 86400:
            raise InvalidRequest("cors.max_age_s must be a whole number from 0 to 86400")
        credentials = data.get("allow_credentials", False)
        if not isinstance(credentials, bool):
            raise InvalidRequest("cors.allow_credentials must be true or false")
        if credentials and "*" in values["allow_origins"]:
            raise InvalidRequest(
                "cors.allow_credentials cannot go with allow_origins '*': name the origins"
            )
        return cls(**values, max_age_s=max_age, allow_credentials=credentials)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _printable(text: str) -> bool:
    return text.isprintable() and "," not in text


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


def _validate_free_handler(handler: str) -> None:
    """A custom runtime's handler (``provided``): any text it reads from ``_HANDLER``, as on
    Lambda: 1-128 characters, printable, no whitespace."""
    if not (0 < len(handler) <= 128 and handler.isprintable() and not re.search(r"\s", handler)):
        raise InvalidRequest(
            f"handler {handler[:80]!r} of a provided function must be 1-128 printable "
            "characters without spaces (the runtime reads it from _HANDLER), "
            "e.g. 'function.handler'"
        )


def _validate_env(env: Any) -> None:
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

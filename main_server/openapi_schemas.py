"""The shared parts of the OpenAPI document: data shapes, error responses, parameters.

Patterns and limits come from the modules that enforce them (``shared.models``,
``shared.runtimes``, ``shared.function_env``, ``shared.auth``), so the document cannot drift
from the checks.
"""

from __future__ import annotations

from typing import Any

from hotpool.shared.auth import SCOPES
from hotpool.shared.function_env import ENV_KEY_RE
from hotpool.shared.models import NAME_RE
from hotpool.shared.runtimes import HANDLER_RE, RUNTIMES

Schema = dict[str, Any]

# ECMA-262 patterns (what OpenAPI tools read) of the Python ones: '\Z' is spelled '$'
NAME_PATTERN = NAME_RE.pattern.replace(r"\Z", "$")
HANDLER_PATTERN = HANDLER_RE.pattern.replace(r"\Z", "$")
ENV_KEY_PATTERN = ENV_KEY_RE.pattern.replace(r"\Z", "$")
NAMESPACE_PATTERN = rf"^(\*|{NAME_PATTERN[1:-1]})$"
_SCOPE = f"({'|'.join(SCOPES)})"
# what shared.auth.parse_scopes takes: a comma-separated list, blanks ignored
SCOPES_PATTERN = rf"^[\s,]*{_SCOPE}(\s*,[\s,]*{_SCOPE})*[\s,]*$"

ERRORS = {
    400: "Invalid input: a name, setting, package, event or body.",
    401: "No API key, or not a valid one (unknown, revoked, malformed).",
    403: "The key lacks the scope this needs.",
    404: "No such function or key (another tenant's looks the same).",
    413: "The body is over its limit.",
    429: "Over the key's request rate or a concurrency limit; retry after `Retry-After` s.",
    502: "The container failed (platform error).",
    503: "No capacity, or Redis or a database is unreachable (platform error).",
    504: "The handler ran past its `timeout_s`; its container was stopped.",
}
# every authenticated route may answer these: the middleware checks the key and its rate,
# and a rate limiter or key store that is away is a 503
AUTH_STATUSES = (401, 429, 503)


def ref(name: str) -> Schema:
    """A reference to the schema ``name`` of ``components``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> dict[str, Schema]:
    """A ``content`` map of one JSON body."""
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: Schema, **extra: Any) -> Schema:
    """A success response with a JSON body."""
    return {"description": description, "content": json_content(schema), **extra}


def responses(ok: dict[int, Schema], *errors: int, auth: bool = True) -> dict[str, Schema]:
    """Success responses plus the error statuses, each with the shared error body."""
    out: dict[str, Schema] = {str(status): body for status, body in ok.items()}
    for status in sorted({*errors, *(AUTH_STATUSES if auth else ())}):
        out[str(status)] = error_ref(status)
    return out


def error_ref(status: int) -> Schema:
    """The shared error response of ``status``."""
    return {"$ref": f"#/components/responses/E{status}"}


def function_param() -> Schema:
    """The ``{function}`` of /fn/ and /ws/: a name in the key's namespace or
    ``namespace.name``."""
    plain = NAME_PATTERN[1:-1]
    return {
        "name": "function",
        "in": "path",
        "required": True,
        "description": "`name` (default namespace) or `namespace.name`.",
        "schema": {"type": "string", "pattern": rf"^({plain}\.)?{plain}$"},
    }


def query_param(name: str, schema: Schema, description: str) -> Schema:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def object_schema(properties: Schema, required: list[str] | None = None, **extra: Any) -> Schema:
    """An object of ``properties``, all of them required unless ``required`` says which."""
    schema: Schema = {"type": "object", "properties": properties, **extra}
    schema["required"] = list(properties) if required is None else required
    if not schema["required"]:
        del schema["required"]
    return schema


def schemas() -> dict[str, Schema]:
    """The data shapes of requests and responses, by name."""
    from hotpool.main_server import openapi_images  # it builds on this module

    string, integer, number, boolean = (
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
    )
    nullable_number = {"type": "number", "nullable": True}
    counts = object_schema({"warm": integer, "busy": integer, "starting": integer})
    scopes = {"type": "array", "items": {"type": "string", "enum": list(SCOPES)}}
    namespace = {"type": "string", "pattern": NAMESPACE_PATTERN}
    key = object_schema(
        {
            "key_id": string,
            "namespaces": {"type": "array", "items": string},
            "scopes": scopes,
            "function": {"type": "string", "nullable": True},
            "rate_per_s": nullable_number,
            "description": string,
            "created_at": {"type": "string", "format": "date-time"},
            "revoked": boolean,
        }
    )
    return {
        "Error": object_schema(
            {
                "error": object_schema(
                    {"code": string, "message": string}, additionalProperties=True
                )
            },
        ),
        "FunctionErrorBody": object_schema(
            {
                "error": object_schema(
                    {
                        "code": {"type": "string", "enum": ["FunctionError"]},
                        "type": string,
                        "message": string,
                        "traceback": string,
                    },
                    additionalProperties=True,
                ),
                "request_id": string,
                "errorMessage": {
                    **string,
                    "description": "Lambda's field: the exception's message.",
                },
                "errorType": {**string, "description": "Lambda's field: the exception's class."},
                "stackTrace": {
                    "type": "array",
                    "items": string,
                    "description": "Lambda's field: the frames of the traceback, one string "
                    "each, as AWS's Python runtime lists them (the runtime's own frames cut); "
                    "for nodejs the error's stack, one line each.",
                },
                "trace": {
                    "type": "array",
                    "items": string,
                    "description": "Lambda's Node.js field (nodejs functions only): the "
                    "error's stack, one line each.",
                },
                "requestId": {**string, "description": "Lambda's field: the request id."},
            }
        ),
        "Function": object_schema(
            {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "namespace": {"type": "string", "pattern": NAME_PATTERN},
                "version": {"type": "integer", "minimum": 1},
                "code_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "created_at": {"type": "string", "format": "date-time"},
                "runtime": {"type": "string", "enum": list(RUNTIMES)},
                "handler": string,
                "memory_mb": integer,
                "timeout_s": number,
                "env": {
                    "type": "object",
                    "additionalProperties": string,
                    "description": "Names only: every value is masked as `***`.",
                },
                "max_concurrency": integer,
                "layers": {"type": "array", "items": string},
                "log_format": string,
                "log_level": string,
                "http": string,
                "http_payload": string,
                "cors": {"type": "object", "nullable": True},
                "async_retries": integer,
                "max_event_age_s": integer,
                "on_success": string,
                "on_failure": string,
                "websocket": string,
                "ws_route_selection": string,
                **openapi_images.function_fields(),
            }
        ),
        "FunctionList": object_schema({"functions": {"type": "array", "items": ref("Function")}}),
        "Deleted": object_schema(
            {
                "deleted": string,
                "namespace": string,
                "version": integer,
                "containers_removed": integer,
            }
        ),
        "Invocation": object_schema(
            {
                "request_id": string,
                "function": string,
                "version": integer,
                "started_at": number,
                "duration_ms": number,
                "status": string,
                "cold_start": boolean,
                "init_ms": nullable_number,
                "handler_ms": nullable_number,
                "peak_memory_mb": nullable_number,
                "stdout": string,
                "stderr": string,
                "error": {"type": "object", "nullable": True},
            },
            required=["request_id", "function", "version", "started_at", "status"],
            additionalProperties=True,
        ),
        "InvocationList": object_schema(
            {
                "function": string,
                "namespace": string,
                "invocations": {"type": "array", "items": ref("Invocation")},
                "next_cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as `cursor` for the next (older) page; null on the "
                    "last page. A page ends at `limit` records or about "
                    "HOTPOOL_MAX_LISTING_BYTES of them, whichever comes first.",
                },
            }
        ),
        "KeyRequest": object_schema(
            {
                "namespaces": {
                    "type": "array",
                    "items": namespace,
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Namespaces the key may use, each once; `*` is all. "
                    "Not together with `namespace`.",
                },
                "namespace": {
                    **namespace,
                    "default": "default",
                    "description": "One namespace (instead of `namespaces`).",
                },
                "scopes": {
                    "oneOf": [
                        {"type": "string", "pattern": SCOPES_PATTERN},
                        {**scopes, "minItems": 1},
                    ],
                    "description": "`deploy,invoke` or a list; `admin` is everything. "
                    "Needed unless `function` is given.",
                },
                "function": {
                    "type": "string",
                    "pattern": NAME_PATTERN,
                    "description": "A key that may only invoke this function "
                    "(its scopes are `invoke`, any other is refused; needs exactly one "
                    "namespace).",
                },
                "description": {"type": "string", "maxLength": 255},
                "rate_per_s": {
                    "type": "number",
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "description": "Requests per second; leave it out for no per-key limit.",
                },
            },
            required=[],
            additionalProperties=False,
            anyOf=[{"required": ["scopes"]}, {"required": ["function"]}],
            **{"not": {"required": ["namespace", "namespaces"]}},
        ),
        "NewKey": {
            "allOf": [
                key,
                object_schema(
                    {
                        "key": {
                            "type": "string",
                            "description": "`hp_<key id>_<secret>`, shown only this once.",
                        }
                    }
                ),
            ]
        },
        "KeyList": object_schema({"keys": {"type": "array", "items": key}}),
        "Revoked": object_schema({"revoked": string}),
        "SystemStatus": object_schema(
            {
                "status": {"type": "string", "enum": ["online", "offline"]},
                "managers_online": integer,
                "managers": {
                    "type": "array",
                    "items": object_schema(
                        {
                            "id": string,
                            "url": string,
                            "capacity": integer,
                            "running": integer,
                            "accepting": boolean,
                            "heartbeat_at": number,
                            "alive": boolean,
                        }
                    ),
                },
                "containers": object_schema(
                    {
                        "by_function": {"type": "object", "additionalProperties": counts},
                        "by_runtime": {"type": "object", "additionalProperties": counts},
                    }
                ),
                "invocations_in_flight": integer,
                "busy_containers": integer,
                "async": ref("AsyncQueueStatus"),
                "websocket": ref("WebSocketStatus"),
                "counters": {"type": "object", "additionalProperties": integer},
            }
        ),
    }


def components(extra_schemas: dict[str, Schema] | None = None) -> Schema:
    """The document's ``components``: schemas, error responses, parameters, headers, auth."""
    error = json_content(ref("Error"))
    responses: dict[str, Schema] = {
        f"E{status}": {"description": text, "content": error} for status, text in ERRORS.items()
    }
    # a request malformed at the HTTP level (a bad URL or header) is refused by the server's
    # parser before any route runs, with a plain-text 400
    responses["E400"]["content"] = {**error, "text/plain": {"schema": {"type": "string"}}}
    responses["E429"]["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
    }
    return {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "hp_<id>_<secret>"}
        },
        "parameters": {
            "name": {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "The function's name.",
                "schema": {"type": "string", "pattern": NAME_PATTERN},
            },
            "namespace": query_param(
                "namespace",
                {"type": "string", "pattern": NAME_PATTERN},
                "The namespace; by default the key's first one (`default` "
                "for a key of every namespace).",
            ),
        },
        "headers": {
            "RequestId": {
                "description": "The invocation's id, as in its execution record.",
                "schema": {"type": "string", "format": "uuid"},
            },
            "ColdStart": {
                "description": "Whether a container was started for this call.",
                "schema": {"type": "string", "enum": ["true", "false"]},
            },
            "DurationMs": {
                "description": "Time the call took inside hotpool, in ms.",
                "schema": {"type": "string", "pattern": r"^\d+\.\d{3}$"},
            },
        },
        "responses": responses,
        "schemas": {**schemas(), **(extra_schemas or {})},
    }


def streamed(ok: Schema) -> Schema:
    """The 200 of /invoke, with the answers of a handler that returned a generator: its
    items chunked as they come, or one Server-Sent Event each (``Accept: text/event-stream``)."""
    text = {"type": "string", "format": "binary"}
    ok["description"] += (
        " A handler that returns a generator streams (`X-Hotpool-Streamed: true`): its items "
        "chunked as produced, or with `Accept: text/event-stream` one Server-Sent Event each; "
        "an error after the first byte ends the stream with an `event: error` or a final "
        '`{"hotpoolStreamError": {...}}` line.'
    )
    ok["content"] = {
        **ok["content"],
        "application/octet-stream": {"schema": text},
        "text/event-stream": {"schema": text},
    }
    return ok

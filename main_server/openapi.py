"""``GET /v1/openapi.json``: the OpenAPI 3.0.3 description of Main's public API.

``tests/main_server/test_openapi.py`` holds its paths and methods to the app's routes, and
``tests/main_server/test_fuzz.py`` holds the live API to it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web

from hotpool.main_server import openapi_async, openapi_images, openapi_ws
from hotpool.main_server.openapi_connections import connections_paths
from hotpool.main_server.openapi_keys import key_paths
from hotpool.main_server.openapi_layers import layer_paths, layer_schemas
from hotpool.main_server.openapi_schedules import schedule_paths, schedule_schemas
from hotpool.main_server.openapi_schemas import (
    ENV_KEY_PATTERN,
    HANDLER_PATTERN,
    Schema,
    answer,
    components,
    json_content,
    object_schema,
    query_param,
    ref,
    responses,
    streamed,
)
from hotpool.main_server.openapi_web import web_paths
from hotpool.main_server.routes import max_invocations_limit
from hotpool.shared.function_env import MAX_ENV_VARS
from hotpool.shared.http import json_response
from hotpool.shared.models import (
    HTTP_MODES,
    HTTP_PAYLOADS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_CONCURRENCY_RANGE,
    MAX_LAYERS,
    MEMORY_MB_RANGE,
    TIMEOUT_S_RANGE,
)
from hotpool.shared.runtimes import RUNTIMES

routes = web.RouteTableDef()

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 100}
_CORS = {
    "type": "object",
    "properties": {
        "allow_origins": _STRINGS,
        "allow_methods": _STRINGS,
        "allow_headers": _STRINGS,
        "expose_headers": _STRINGS,
        "max_age_s": {"type": "integer", "minimum": 0, "maximum": 86400},
        "allow_credentials": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_ENV = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": MAX_ENV_VARS}


def _name_param() -> Schema:
    return {"$ref": "#/components/parameters/name"}


def _namespace_param() -> Schema:
    return {"$ref": "#/components/parameters/namespace"}


def _settings_params() -> list[Schema]:
    memory_low, memory_high = MEMORY_MB_RANGE
    timeout_low, timeout_high = TIMEOUT_S_RANGE
    concurrency_low, concurrency_high = MAX_CONCURRENCY_RANGE
    return [
        query_param(
            "runtime",
            {"type": "string", "enum": list(RUNTIMES), "default": RUNTIMES[0]},
            "The language runtime.",
        ),
        query_param(
            "handler",
            {"type": "string"},
            "The handler: `module.function` for python (default `main.handler`, pattern "
            f"`{HANDLER_PATTERN}`), `file.export` for nodejs (default `index.handler`).",
        ),
        query_param(
            "memory_mb",
            {"type": "integer", "minimum": memory_low, "maximum": memory_high, "default": 128},
            "Memory limit of each container, in MB.",
        ),
        query_param(
            "timeout_s",
            {"type": "number", "minimum": timeout_low, "maximum": timeout_high, "default": 30},
            "Longest a call may run, in seconds.",
        ),
        {
            "name": "env",
            "in": "query",
            "required": False,
            "description": f"Environment variables as a JSON object of strings (at most "
            f'{MAX_ENV_VARS}; names match `{ENV_KEY_PATTERN}`), e.g. `{{"KEY": "value"}}`.',
            "content": json_content(_ENV),
        },
        query_param(
            "max_concurrency",
            {
                "type": "integer",
                "minimum": concurrency_low,
                "maximum": concurrency_high,
                "default": 100,
            },
            "Most containers, so most simultaneous calls, of this function.",
        ),
        query_param(
            "layers",
            {"type": "string", "maxLength": 400},
            f"Up to {MAX_LAYERS} layers as `name:version`, comma-separated (or a JSON list), "
            "in `sys.path` order after the function's own code.",
        ),
        query_param(
            "log_format",
            {"type": "string", "enum": list(LOG_FORMATS), "default": "text"},
            "Log lines of the runtime's logging handler: Lambda's text or JSON.",
        ),
        query_param(
            "log_level",
            {"type": "string", "enum": list(LOG_LEVELS), "default": ""},
            "The root logger's level; empty leaves it unset.",
        ),
        query_param(
            "http",
            {"type": "string", "enum": list(HTTP_MODES), "default": "key"},
            "Who may call the function at `/fn/{function}/...`: a key with `invoke`, anyone "
            "(`public`, rate-limited per function), or nobody (`off`).",
        ),
        query_param(
            "http_payload",
            {"type": "string", "enum": list(HTTP_PAYLOADS), "default": "2.0"},
            "The API Gateway payload format of web requests.",
        ),
        {
            "name": "cors",
            "in": "query",
            "required": False,
            "description": "CORS of the web route, as a function URL's: `allow_origins`, "
            "`allow_methods`, `allow_headers`, `expose_headers`, `max_age_s`, "
            "`allow_credentials`.",
            "content": json_content(_CORS),
        },
        *openapi_async.settings_params(),
        *openapi_ws.settings_params(),
        *openapi_images.settings_params(),
    ]


def _function_paths() -> dict[str, Schema]:
    function = answer("The function's latest version.", ref("Function"))
    put_body = {
        "required": False,  # an image function (``image``) has no package
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "code": {
                            "type": "string",
                            "format": "binary",
                            "description": "The zip package.",
                        },
                        **{p["name"]: p.get("schema", _ENV) for p in _settings_params()},
                    },
                    # unknown settings are refused, not ignored
                    "additionalProperties": False,
                },
                "encoding": {
                    "env": {"contentType": "application/json"},
                    "cors": {"contentType": "application/json"},
                },
            },
        },
        "description": "The zip (holding `main.py` by default), as the whole body with the "
        "settings as query parameters, or as the multipart file field `code` with the "
        "settings as fields or query parameters. The package limit is 50 MB by default. "
        "An image function (`image=`) sends none.",
    }
    return {
        "/v1/functions": {
            "get": {
                "operationId": "listFunctions",
                "summary": "The latest version of every function of the namespace",
                "parameters": [_namespace_param()],
                "responses": responses(
                    {200: answer("The functions.", ref("FunctionList"))}, 400, 403, 404
                ),
            },
        },
        "/v1/functions/{name}": {
            "parameters": [_name_param(), _namespace_param()],
            "put": {
                "operationId": "deployFunction",
                "summary": "Create a function, or deploy a new immutable version of it",
                "parameters": _settings_params(),
                "requestBody": put_body,
                "responses": responses(
                    {
                        201: answer("A new function (version 1).", ref("Function")),
                        200: answer("A new version of an existing function.", ref("Function")),
                    },
                    400,
                    403,
                    404,
                    413,
                ),
            },
            "get": {
                "operationId": "getFunction",
                "summary": "One function",
                "responses": responses({200: function}, 400, 403, 404),
            },
            "delete": {
                "operationId": "deleteFunction",
                "summary": "Delete a function and remove its idle containers",
                "responses": responses(
                    {200: answer("What was deleted.", ref("Deleted"))}, 400, 403, 404
                ),
            },
        },
        "/v1/functions/{name}/invoke": {
            "parameters": [_name_param(), _namespace_param()],
            "post": _invoke_operation(),
        },
        "/v1/functions/{name}/invocations": {
            "parameters": [_name_param(), _namespace_param()],
            "get": {
                "operationId": "listInvocations",
                "summary": "The latest execution records of a function, newest first",
                "parameters": [
                    query_param(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": max_invocations_limit,
                            "default": 20,
                        },
                        "How many records at most.",
                    ),
                    query_param(
                        "cursor",
                        {"type": "string"},
                        "Where to go on: the `next_cursor` of the previous page.",
                    ),
                ],
                "responses": responses(
                    {200: answer("The records.", ref("InvocationList"))}, 400, 403, 404
                ),
            },
        },
    }


def _invoke_operation() -> Schema:
    request_id = {"$ref": "#/components/headers/RequestId"}
    success_headers = {
        "X-Hotpool-Request-Id": request_id,
        "X-Hotpool-Cold-Start": {"$ref": "#/components/headers/ColdStart"},
        "X-Hotpool-Duration-Ms": {"$ref": "#/components/headers/DurationMs"},
    }
    answers = responses(
        {
            200: streamed(answer("The handler's return value.", {}, headers=success_headers)),
            202: openapi_async.accepted_response(),
            500: answer(
                "The function raised or failed to load (a function error).",
                ref("FunctionErrorBody"),
                headers={
                    **success_headers,
                    "X-Hotpool-Function-Error": {
                        "description": "The exception type the function raised.",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                },
            ),
        },
        400,
        403,
        404,
        413,
        502,
        503,
        504,
    )
    return {
        "operationId": "invokeFunction",
        "summary": "Call a function: the body is the event, the response its return value",
        **openapi_async.invoke_parts(),
        "requestBody": {
            "required": False,
            "description": "Any JSON value (6 MB and 128 levels deep at most by default); "
            "an empty body is `null`.",
            "content": json_content({}),
        },
        "responses": answers,
    }


def _system_paths() -> dict[str, Schema]:
    alive = object_schema({"status": {"type": "string", "enum": ["ok"]}})
    ready = object_schema({"ready": {"type": "boolean"}, "checks": {"type": "object"}})
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness (no key needed)",
                "security": [],
                "responses": responses({200: answer("Alive.", alive)}, auth=False),
            },
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: Redis and the metadata store answer (no key needed)",
                "security": [],
                "responses": {"200": answer("Ready.", ready), "503": answer("Not ready.", ready)},
            },
        },
        "/system/status": {
            "get": {
                "operationId": "systemStatus",
                "summary": "Managers, containers, in-flight calls and counters (admin)",
                "responses": responses({200: answer("The status.", ref("SystemStatus"))}, 403),
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": responses({200: answer("The OpenAPI document.", {"type": "object"})}),
            },
        },
    }


def _version() -> str:
    try:
        return metadata.version("hotpool")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def openapi_document() -> dict[str, Any]:
    """A fresh OpenAPI 3.0.3 document of Main's public API."""
    paths = {**_function_paths(), **layer_paths(), **key_paths(), **_system_paths()}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hotpool",
            "version": _version(),
            "description": "Self-hosted Function-as-a-Service. Every route but `/healthz` and "
            "`/readyz` needs `Authorization: Bearer hp_<id>_<secret>`. Errors are "
            '`{"error": {"code": ..., "message": ...}}`.',
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            **paths,
            **schedule_paths(),
            **openapi_async.paths(),
            **web_paths(),
            **openapi_ws.paths(),
            **connections_paths(),
        },
        "components": components(
            extra_schemas={
                **layer_schemas(),
                **schedule_schemas(),
                **openapi_async.schemas(),
                "WebSocketStatus": openapi_ws.status_schema(),
            }
        ),
    }


@routes.get("/v1/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document())

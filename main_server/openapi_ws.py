"""The WebSocket part of the OpenAPI document: the function settings of ``/ws/{function}``
(its routes and the ``@connections`` management API are described here too).

``main_server.openapi`` merges these in. OpenAPI describes the upgrade request only: the
messages that follow are API Gateway's (see the README).
"""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import (
    Schema,
    error_ref,
    function_param,
    object_schema,
    query_param,
)
from hotpool.shared.models import DEFAULT_ROUTE_SELECTION, ROUTE_SELECTION_RE, WEBSOCKET_MODES


def settings_params() -> list[Schema]:
    """The deploy parameters of WebSocket functions."""
    return [
        query_param(
            "websocket",
            {"type": "string", "enum": list(WEBSOCKET_MODES), "default": "off"},
            "Who may connect at `/ws/{function}`: a key with `invoke` (in the Authorization "
            "header or a `token` query parameter), anyone (`public`), or nobody (`off`).",
        ),
        query_param(
            "ws_route_selection",
            {
                "type": "string",
                "default": DEFAULT_ROUTE_SELECTION,
                "pattern": ROUTE_SELECTION_RE.pattern.replace(r"\Z", "$"),
            },
            "API Gateway's route selection expression: a message's `routeKey` is the value "
            "at `$request.body.<path>` of its JSON body, else `$default`.",
        ),
    ]


def paths() -> dict[str, Schema]:
    """``GET /ws/{function}``: the WebSocket upgrade."""
    function = function_param()
    token = query_param(
        "token",
        {"type": "string"},
        "The key, for clients that cannot set headers (browsers); never passed to the "
        "function. `Authorization: Bearer <key>` works too.",
    )
    refused = "The function's `$connect` answered this status (its body and headers)."
    return {
        "/ws/{function}": {
            "parameters": [function],
            "get": {
                "operationId": "connectWebSocket",
                "summary": "Open a WebSocket to a function (API Gateway WebSocket API)",
                "description": "The function gets `$connect` before the upgrade (a result "
                "with a non-2xx `statusCode` refuses), one event per message with the "
                "`routeKey` of its `ws_route_selection`, and `$disconnect`. `websocket=key` "
                "functions need a key with `invoke` on their namespace, `public` ones none, "
                "`off` ones are a 404.",
                "security": [{"bearerAuth": []}, {}],
                "parameters": [token],
                "responses": {
                    "101": {"description": "Switching Protocols: the WebSocket is open."},
                    "400": error_ref(400),
                    "401": error_ref(401),
                    "403": error_ref(403),
                    "404": error_ref(404),
                    "429": error_ref(429),
                    "502": {
                        "description": "`$connect` failed or timed out; the details are in "
                        "its execution record."
                    },
                    "503": error_ref(503),
                    "default": {"description": refused},
                },
            },
        },
    }


def status_schema() -> Schema:
    """The ``websocket`` part of ``/system/status``."""
    integer = {"type": "integer"}
    return object_schema({"connections_here": integer, "max_connections_here": integer})

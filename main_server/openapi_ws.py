"""The WebSocket part of the OpenAPI document: the function settings of ``/ws/{function}``
(its routes and the ``@connections`` management API are described here too).

``main_server.openapi`` merges these in.
"""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import Schema, query_param
from hotpool.shared.models import DEFAULT_ROUTE_SELECTION, WEBSOCKET_MODES


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
            {"type": "string", "default": DEFAULT_ROUTE_SELECTION},
            "API Gateway's route selection expression: a message's `routeKey` is the value "
            "at `$request.body.<path>` of its JSON body, else `$default`.",
        ),
    ]

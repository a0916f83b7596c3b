"""The OpenAPI description of the ``@connections`` management API (main_server.ws_management).

Its errors have API Gateway's shape beside hotpool's: a top-level ``message`` and the type in
the ``x-amzn-ErrorType`` header, so the AWS SDKs name them as they do for API Gateway.
"""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import Schema, json_content, object_schema
from hotpool.main_server.ws_management import AWS_ERROR_TYPES

_WHEN = {
    400: "The connection id is malformed.",
    401: "No credential, or not a valid API key or connections token.",
    403: "The key lacks the `invoke` scope in the connection's namespace.",
    404: "No such connection, or one the credential may not reach (they look the same).",
    410: "The connection has ended (the caller's own, within a few minutes).",
    413: "The message is over `HOTPOOL_WS_MAX_MESSAGE_BYTES`.",
    429: "Over the credential's request rate, or too many failed authentications.",
    503: "Redis is unreachable.",
}


def _error(status: int) -> Schema:
    body = object_schema(
        {"message": {"type": "string"}, "error": {"type": "object"}}, required=["message"]
    )
    headers = {
        "x-amzn-ErrorType": {
            "description": "API Gateway's name of the error.",
            "schema": {"type": "string", "enum": [AWS_ERROR_TYPES.get(status, "")]},
        }
    }
    return {"description": _WHEN[status], "headers": headers, "content": json_content(body)}


def _operation(operation_id: str, summary: str, ok: dict[str, Schema], *errors: int) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": "`Authorization: Bearer` an API key with `invoke` on the connection's "
        "namespace, or the `HOTPOOL_CONNECTIONS_TOKEN` of the connection's function; or "
        "`AWS4-HMAC-SHA256` (SigV4, service `execute-api`) signed with the function's "
        "`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, as boto3 does. Any Main replica answers "
        "for a connection held by any other.",
        "responses": {**ok, **{str(s): _error(s) for s in (400, 401, 404, 429, 503, *errors)}},
    }


def connections_paths() -> dict[str, Schema]:
    connection_id = {
        "name": "connection_id",
        "in": "path",
        "required": True,
        "description": "`requestContext.connectionId` of the connection's events.",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_=+-]{1,128}$"},
    }
    time = {"type": "string", "format": "date-time"}
    described = object_schema(
        {
            "connectedAt": time,
            "lastActiveAt": time,
            "identity": object_schema(
                {"sourceIp": {"type": "string"}, "userAgent": {"type": "string"}}
            ),
        }
    )
    post = _operation(
        "postToConnection",
        "Send a message to a WebSocket connection",
        {"200": {"description": "Sent (handed to the replica that holds the connection)."}},
        403,
        410,
        413,
    )
    post["requestBody"] = {
        "required": True,
        "description": "The message: a text frame when it is UTF-8, else a binary one.",
        "content": {"*/*": {"schema": {}}},
    }
    return {
        "/ws/@connections/{connection_id}": {
            "parameters": [connection_id],
            "post": post,
            "get": _operation(
                "getConnection",
                "Describe a WebSocket connection",
                {"200": {"description": "The connection.", "content": json_content(described)}},
                403,
                410,
            ),
            "delete": _operation(
                "deleteConnection",
                "Close a WebSocket connection (1000); its function gets `$disconnect`",
                {"204": {"description": "Closed."}},
                403,
                410,
            ),
        }
    }

"""API Gateway WebSocket API events (Lambda proxy integration) and route selection, as pure
functions: ``$connect``, one ``MESSAGE`` event per message, ``$disconnect``.

Every event's ``requestContext`` carries what API Gateway's does: ``routeKey``,
``eventType`` (CONNECT | MESSAGE | DISCONNECT), ``messageDirection`` "IN", ``connectionId``,
``connectedAt`` and ``requestTimeEpoch`` (ms), ``requestId`` (= ``extendedRequestId``, the
execution record's id), ``requestTime``, ``domainName`` (the Host header), ``stage`` "ws",
``apiId`` (the function's qualified name) and ``identity`` (``sourceIp``, ``userAgent``).
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-mapping-template-reference.html)

A message's ``routeKey`` comes from the function's route selection expression
``$request.body.<dotted.path>``: the string at that path of a JSON-object body, else
``$default`` (a binary message, a body that is not JSON, a missing or non-string value, or a
value beginning with ``$``: the reserved ``$connect`` and ``$disconnect`` are never a
message's).

What the client gets back (``reply_of``): a result with a string ``body`` sends it (a text
message; ``isBase64Encoded`` decodes it into a binary one); any other ``body`` value goes as
its JSON text; a result without ``body``, or ``None``, sends nothing; a result that is not an
object (a list, a string, a number) goes as its JSON text. ``statusCode`` is ignored, as API
Gateway ignores it on message routes.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from hotpool.main_server.web_request import request_time

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT_ROUTE = "$default"
STAGE = "ws"
SELECTION_PREFIX = "$request.body."
# a connection id: 12 random bytes, URL-safe base64 (16 characters, never padded), so it
# can stand in a URL path (/ws/@connections/{id}) as it is and cannot be guessed
CONNECTION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16}\Z")
_ID_BYTES = 12
# API Gateway's disconnectStatusCode when the close frame carried no status
NO_STATUS = 1005
NO_STATUS_REASON = "Client-side close frame status not set"


def new_id() -> str:
    """An unguessable id (connection ids, message ids): ``L0SM9cOFvHcCIhwZ``-like."""
    return secrets.token_urlsafe(_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Origin:
    """What a connection's events repeat from its upgrade request."""

    connection_id: str
    api_id: str  # the function's qualified name
    domain: str  # the Host header
    source_ip: str
    user_agent: str
    connected_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def _context(
    origin: Origin, route_key: str, event_type: str, request_id: str, now_ms: int
) -> dict[str, Any]:
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "messageDirection": "IN",
        "connectionId": origin.connection_id,
        "connectedAt": origin.connected_at_ms,
        "requestId": request_id,
        "extendedRequestId": request_id,
        "requestTime": request_time(now_ms // 1000),
        "requestTimeEpoch": now_ms,
        "domainName": origin.domain,
        "stage": STAGE,
        "apiId": origin.api_id,
        "identity": {"sourceIp": origin.source_ip, "userAgent": origin.user_agent},
    }


def connect_event(
    origin: Origin,
    request_id: str,
    headers: list[tuple[str, str]],
    query: list[tuple[str, str]],
) -> bytes:
    """The ``$connect`` event: the upgrade request's headers and query string (the caller
    leaves out what must not reach the function: the hotpool key)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        name = str(name)  # multidict's istr, which orjson refuses
        single[name] = value
        multi.setdefault(name, []).append(value)
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in query:
        query_single[name] = value
        query_multi.setdefault(name, []).append(value)
    now_ms = int(time.time() * 1000)
    return orjson.dumps(
        {
            "headers": single,
            "multiValueHeaders": multi,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "requestContext": _context(origin, CONNECT, "CONNECT", request_id, now_ms),
            "isBase64Encoded": False,
        }
    )


def message_event(origin: Origin, request_id: str, data: str | bytes, route_key: str) -> bytes:
    """One message's event: a text message as ``body``, a binary one base64-encoded."""
    now_ms = int(time.time() * 1000)
    context = _context(origin, route_key, "MESSAGE", request_id, now_ms)
    context["messageId"] = new_id()
    binary = isinstance(data, bytes)
    body = base64.b64encode(data).decode() if binary else data
    return orjson.dumps({"requestContext": context, "body": body, "isBase64Encoded": binary})


def disconnect_event(origin: Origin, request_id: str, code: int, reason: str) -> bytes:
    """The ``$disconnect`` event, with the close frame's status and reason."""
    now_ms = int(time.time() * 1000)
    context = _context(origin, DISCONNECT, "DISCONNECT", request_id, now_ms)
    if not code:
        code, reason = NO_STATUS, reason or NO_STATUS_REASON
    context["disconnectStatusCode"] = code
    context["disconnectReason"] = reason
    return orjson.dumps({"requestContext": context, "isBase64Encoded": False})


def selection_path(expression: str) -> tuple[str, ...]:
    """The body path of a route selection expression (validated by FunctionConfig)."""
    return tuple(expression.removeprefix(SELECTION_PREFIX).split("."))


def route_key(path: tuple[str, ...], data: str | bytes) -> str:
    """A message's ``routeKey``: the string at ``path`` of its JSON-object body, else
    ``$default``."""
    if isinstance(data, bytes) or not data.lstrip().startswith("{"):
        return DEFAULT_ROUTE  # binary, or not a JSON object: no parse needed
    try:
        value: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return DEFAULT_ROUTE
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return DEFAULT_ROUTE
        value = value[part]
    # "$connect", "$disconnect" and the like name the platform's own events: a client may not
    # choose them (a handler cleaning up on "$disconnect" must not be fooled mid-connection)
    return value if isinstance(value, str) and value and value[0] != "$" else DEFAULT_ROUTE


class NoReply(ValueError):
    """The handler's result cannot be sent back (bad base64, over the message limit)."""


def reply_of(result: Any, result_json: bytes, limit_bytes: int) -> str | bytes | None:
    """The message a handler's ``result`` (``result_json``: its JSON) sends back, or None."""
    if result is None:
        return None
    if not isinstance(result, dict):
        out: str | bytes = result_json.decode()
    elif result.get("body") is None:
        return None
    elif not isinstance(body := result["body"], str):
        out = orjson.dumps(body).decode()
    elif result.get("isBase64Encoded") is True:
        try:
            out = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise NoReply("isBase64Encoded is true but body is not base64") from None
    else:
        out = body
    size = len(out) if isinstance(out, bytes) else len(out.encode())
    if size > limit_bytes:
        raise NoReply(f"the reply is {size} bytes, over the message limit of {limit_bytes}")
    return out

"""API Gateway's ``@connections`` management API, at its paths under ``/ws``:
``POST /ws/@connections/{id}`` sends the body as one message, ``GET`` describes the connection,
``DELETE`` closes it. Any Main replica answers for a connection held by any other.

These routes authenticate themselves (``auth.SELF_AUTHENTICATED``): the Bearer credential is an
API key with ``invoke`` on the connection's namespace, or the connections token a WebSocket
function finds in ``HOTPOOL_CONNECTIONS_TOKEN`` (``shared.ws_token``), which reaches that one
function's connections; an AWS SigV4 signature made with the AWS credentials derived from that
token (``ws_sigv4``, what boto3 sends) reaches the same. A failed credential counts against the
address like any other.

Errors carry API Gateway's type in ``x-amzn-ErrorType`` and a top-level ``message`` beside
hotpool's ``error`` object, so AWS SDKs report them by their usual names.
"""

from __future__ import annotations

import datetime
import functools
import re

from aiohttp import web

from hotpool.main_server.auth import AUTHENTICATOR
from hotpool.main_server.request_input import read_limited
from hotpool.main_server.state import SETTINGS, WS_HUB, WS_TOKENS
from hotpool.main_server.ws_hub import Scope
from hotpool.main_server.ws_sigv4 import is_sigv4, verify
from hotpool.shared.auth import Principal
from hotpool.shared.errors import HotpoolError, InvalidRequest, TooManyRequests, Unauthorized
from hotpool.shared.http import Handler, json_response
from hotpool.shared.models import split_qualified
from hotpool.shared.ws_token import looks_like_token

routes = web.RouteTableDef()

PATH = "/ws/@connections/{connection_id}"
ROUTE_NAME = "ws_connection"
CONNECTION_ID_RE = re.compile(r"^[A-Za-z0-9_=+-]{1,128}\Z")
# API Gateway's names for the errors its management API answers with
AWS_ERROR_TYPES = {
    400: "BadRequestException",
    401: "UnauthorizedException",
    403: "ForbiddenException",
    404: "NotFoundException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
}


def api_gateway_errors(handler: Handler) -> Handler:
    """Answer hotpool errors with their status, hotpool's body plus API Gateway's shape."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HotpoolError as exc:
            headers = {"x-amzn-ErrorType": AWS_ERROR_TYPES.get(exc.status, "InternalServerError")}
            if isinstance(exc, TooManyRequests):
                headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
            body = {"message": exc.message, **exc.to_dict()}
            return json_response(body, status=exc.status, headers=headers)

    return answer


def token_principal(function: str) -> Principal:
    """What a connections token may do: invoke (reach the connections of) its one function."""
    namespace, _ = split_qualified(function)
    return Principal(
        key_id=f"connections:{function}",
        namespaces=(namespace,),
        scopes=frozenset({"invoke"}),
        function=function,
    )


async def caller(request: web.Request) -> tuple[Scope, bytes]:
    """Who is calling, from the Bearer API key or connections token or a SigV4 signature
    (which covers the body: it is read first, bounded); metered like a key. And the body."""
    authenticator = request.app[AUTHENTICATOR]
    address = request.remote or ""
    authenticator.check_address(address)
    limit = request.app[SETTINGS].ws_max_message_bytes
    body = await read_limited(request, limit, "the message (HOTPOOL_WS_MAX_MESSAGE_BYTES)")
    header = request.headers.get("Authorization")
    scheme, _, credential = (header or "").partition(" ")
    credential = credential.strip()
    try:
        if is_sigv4(header):
            now = datetime.datetime.now(datetime.UTC)
            principal = token_principal(await verify(request, body, request.app[WS_TOKENS], now))
        elif scheme.lower() == "bearer" and looks_like_token(credential):
            principal = token_principal(await request.app[WS_TOKENS].verify(credential))
        else:
            principal = await authenticator.authenticate(header)
    except Unauthorized:
        if header:  # a credential sent and wrong is a guess, throttled as elsewhere
            await authenticator.failed(address)
        raise
    await authenticator.meter(principal)
    return principal, body


def connection_id(request: web.Request) -> str:
    value = request.match_info["connection_id"]
    if not CONNECTION_ID_RE.match(value):
        raise InvalidRequest(
            "a connection id is 1-128 characters of A-Z, a-z, 0-9, '_', '=', '+' and '-'"
        )
    return value


@routes.post(PATH, name=ROUTE_NAME)
@api_gateway_errors
async def post_to_connection(request: web.Request) -> web.Response:
    """Send the body to the connection: a text frame when it is UTF-8, else binary."""
    scope, data = await caller(request)
    await request.app[WS_HUB].send(scope, connection_id(request), data)
    return web.Response(status=200)


@routes.get(PATH, name=ROUTE_NAME)
@api_gateway_errors
async def get_connection(request: web.Request) -> web.Response:
    """connectedAt, lastActiveAt and identity (sourceIp, userAgent) of the connection."""
    scope, _ = await caller(request)
    return json_response(await request.app[WS_HUB].describe(scope, connection_id(request)))


@routes.delete(PATH, name=ROUTE_NAME)
@api_gateway_errors
async def delete_connection(request: web.Request) -> web.Response:
    """Close the connection (1000); the function then gets ``$disconnect``."""
    scope, _ = await caller(request)
    await request.app[WS_HUB].close(scope, connection_id(request))
    return web.Response(status=204)

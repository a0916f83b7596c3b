"""``GET /ws/{function}``: a WebSocket to a function, with API Gateway WebSocket API
semantics (``main_server.ws_events``).

Who may connect is the function's ``websocket`` setting (``key``, ``public``, ``off``; see
``main_server.trigger_access``); a key comes in the Authorization header or, as browsers
cannot set a WebSocket's headers, the ``token`` query parameter, and never reaches the
function. The function's ``$connect`` runs before the upgrade, through the one invoke path:
a result whose ``statusCode`` is not 2xx refuses the connection with that status (its
``body`` and ``headers`` answer the client); a function error or timeout is a 502; any
other result upgrades (a ``Sec-WebSocket-Protocol`` header in it picks the subprotocol).
After that the connection is ``main_server.ws_connection``'s, and the hub
(``main_server.ws_hub``, if the app has one) reaches it for ``@connections``.

This replica holds at most ``ws_max_connections`` sockets (a 429 at the upgrade past it), and
closes them with 1001 on shutdown, waiting ``drain_timeout_s`` for their ``$disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from hotpool.main_server import ws_events
from hotpool.main_server.invoke import Invocation
from hotpool.main_server.state import INVOKER, SETTINGS, WS_HUB, WS_SOCKETS
from hotpool.main_server.trigger_access import WEBSOCKET, Access, Caller
from hotpool.main_server.web import BAD_GATEWAY, forwarded_headers
from hotpool.main_server.web_request import MalformedResult, add_headers, body_of, status_of
from hotpool.main_server.ws_connection import Target, WsConnection
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    InvalidRequest,
    InvocationTimeout,
)
from hotpool.shared.models import FunctionVersion

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
# a connect that failed in the function: the client sees a 502, as API Gateway answers
_BAD_GATEWAY_ERRORS = (FunctionError, ContainerFailed, InvocationTimeout)
_KEY_HEADERS = frozenset({"authorization"})
_PROTOCOL_HEADER = "Sec-WebSocket-Protocol"
# how long the close handshake may take before the socket is dropped
close_timeout_s = 5.0


def _event_headers(request: web.Request, caller: Caller, source_ip: str) -> list[tuple[str, str]]:
    drop = _KEY_HEADERS if caller.hides_key else frozenset()
    return [(k, v) for k, v in forwarded_headers(request, source_ip) if k.lower() not in drop]


def _event_query(request: web.Request, caller: Caller) -> list[tuple[str, str]]:
    hidden = WEBSOCKET.token_param if caller.hides_key else None
    return [(k, v) for k, v in request.query.items() if k != hidden]


async def _connect_answer(result: Invocation) -> tuple[web.Response | None, str | None]:
    """What ``$connect``'s result says: a refusal to answer (None: upgrade), and the
    subprotocol it chose."""
    if result.function_error is not None:
        return _bad_gateway(), None
    answer: Any = result.result
    if result.stream is not None:
        answer = result.stream.head
        async for _ in result.stream:
            pass  # a streamed $connect body goes nowhere
        if result.stream.error is not None:
            return _bad_gateway(), None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        return None, None  # a successful integration without a status: let it in
    try:
        status = status_of(answer)
        headers: CIMultiDict[str] = CIMultiDict()
        add_headers(headers, answer)
        body = body_of(answer) if result.stream is None else b""
    except MalformedResult:
        return _bad_gateway(), None
    if 200 <= status < 300:
        return None, headers.get(_PROTOCOL_HEADER)
    headers.pop(_PROTOCOL_HEADER, None)
    return web.Response(status=status, headers=headers, body=body), None


def _bad_gateway() -> web.Response:
    return web.Response(status=502, body=BAD_GATEWAY, content_type="application/json")


@routes.get("/ws/{function}", name="ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket of the function, if its ``$connect`` lets the client in."""
    app = request.app
    settings, table = app[SETTINGS], app[WS_SOCKETS]
    # a name never holds "@": /ws/@connections/... is the management API's, never a function
    access = Access(request, request.match_info["function"], WEBSOCKET)
    fv, caller = access.caller(await access.function())
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise InvalidRequest(
            "this is a WebSocket endpoint: connect with a WebSocket client "
            "(Connection: Upgrade, Upgrade: websocket)"
        )
    table.reserve()
    try:
        origin = ws_events.Origin(
            connection_id=ws_events.new_id(),
            api_id=fv.name,
            domain=request.host,
            source_ip=access.address,
            user_agent=request.headers.get("User-Agent", ""),
        )
        ws = await _connect(request, fv, caller, origin, table.counters)
        if not isinstance(ws, web.WebSocketResponse):
            return ws  # refused
        admission = caller.admission
        if caller.principal is not None:  # each message meters the key's rate
            hold_s = fv.config.timeout_s + settings.lease_grace_s
            admission = access.authenticator.admission(
                caller.principal, fv.namespace, hold_s, metered=False
            )
        route_path = ws_events.selection_path(fv.config.ws_route_selection)
        conn = WsConnection(
            ws, origin, Target(fv, admission, route_path),
            invoker=app[INVOKER], settings=settings, counters=table.counters,
        )  # fmt: skip
        life = table.start(conn, app.get(WS_HUB))
    finally:
        table.pending -= 1
    await asyncio.shield(life)
    return ws


async def _connect(
    request: web.Request, fv: FunctionVersion, caller: Caller, origin: ws_events.Origin,
    counters: Counter[str],
) -> web.StreamResponse:  # fmt: skip
    """Run ``$connect``; the upgraded socket, or the refusal to answer."""
    request_id = str(uuid.uuid4())
    event = ws_events.connect_event(
        origin,
        request_id,
        _event_headers(request, caller, origin.source_ip),
        _event_query(request, caller),
    )
    counters["ws_connects"] += 1
    try:
        invocation = request.app[INVOKER].invocation(
            fv, event, request_id, caller.admission, trigger="websocket"
        )
        async with invocation as result:
            refusal, protocol = await _connect_answer(result)
    except _BAD_GATEWAY_ERRORS:
        refusal, protocol = _bad_gateway(), None
    if refusal is not None:
        counters["ws_connects_refused"] += 1
        refusal.headers["X-Hotpool-Request-Id"] = request_id
        return refusal
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        # aiohttp refuses a message of max_msg_size itself; the setting is the largest allowed
        max_msg_size=settings.ws_max_message_bytes + 1,
        protocols=(protocol,) if protocol else (),
        timeout=close_timeout_s,
        autoping=True,
        # no permessage-deflate, as API Gateway: its zlib state would cost each idle
        # connection hundreds of KiB
        compress=False,
    )
    ws.headers["X-Hotpool-Request-Id"] = request_id
    await ws.prepare(request)
    counters["ws_connections_opened"] += 1
    return ws


async def close_websockets(app: web.Application) -> None:
    """On shutdown (before the handlers are waited for): every socket closes with 1001 and
    its ``$disconnect`` gets ``drain_timeout_s``."""
    await app[WS_SOCKETS].close_all(app[SETTINGS].drain_timeout_s)

"""``ANY /fn/{function}/{path...}``: a function answers the web, as if it had a Lambda
function URL (``/fn/api/items/5?q=1`` reaches the app as path ``/items/5``, query ``q=1``).

A thin adapter in front of the one invoke path (``Invoker.invocation``: admission, rate
limit, lease, record): the request becomes an API Gateway event of the function's
``http_payload`` format (``web_http_api`` 2.0, ``web_rest_api`` 1.0) and the result the
HTTP response. Who may call is the function's ``http`` (``key``, ``public`` or ``off``, see
``main_server.trigger_access``); a public function's Authorization header is the app's own.
A function error, a crash, a timeout or a result that is not a response of the format is a
502 ``{"message": "Internal Server Error"}``: the details stay in the execution record.

A result whose ``body`` is a generator streams (``main_server.stream``): the rest of the
result (``statusCode``, ``headers``, ``cookies``...) comes first and is converted as a whole
result would be, then the body is relayed chunked as it is produced. A failure after that is
the response cut short (no last chunk), as a function URL's stream ends.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from hotpool.main_server import web_cors, web_http_api, web_rest_api
from hotpool.main_server.invoke import Invocation
from hotpool.main_server.request_input import read_limited
from hotpool.main_server.state import INVOKER, WEB_COUNTERS
from hotpool.main_server.stream import RAW_TYPE, relay
from hotpool.main_server.trigger_access import WEB, Access, Caller
from hotpool.main_server.web_request import MalformedResult, WebRequest, WebResponse
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvalidRequest,
    InvocationTimeout,
)
from hotpool.shared.http import error_response
from hotpool.shared.models import FunctionVersion

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
BAD_GATEWAY = b'{"message":"Internal Server Error"}'
# failures a web client sees only as a 502, as a function URL shows them
_BAD_GATEWAY_ERRORS = (FunctionError, ContainerFailed, InvocationTimeout)
# a key-authenticated call never hands the caller's hotpool key to the function
_KEY_HEADERS = frozenset({"authorization"})
_NO_HEADERS: frozenset[str] = frozenset()
Format = tuple[Callable[..., bytes], Callable[[Any, bytes], WebResponse]]
FORMATS: dict[str, Format] = {
    "2.0": (web_http_api.event, web_http_api.response),
    "1.0": (web_rest_api.event, web_rest_api.response),
}


def _app_path(request: web.Request) -> str:
    """The path the app sees: what follows ``/fn/{function}``, percent-encoded as sent."""
    rest = request.rel_url.raw_path.split("/", 3)
    return "/" + rest[3] if len(rest) > 3 else "/"


def forwarded_headers(request: web.Request, source_ip: str) -> tuple[tuple[str, str], ...]:
    """The request's headers, plus the X-Forwarded-* ones function URLs add (kept when a proxy
    in front of Main set them): adapters build absolute URLs from them, and without a proto
    assume https."""
    headers = request.headers
    extra: list[tuple[str, str]] = []
    if "X-Forwarded-For" not in headers:
        extra.append(("X-Forwarded-For", source_ip))
    scheme = request.scheme
    if "X-Forwarded-Proto" not in headers:
        extra.append(("X-Forwarded-Proto", scheme))
    if "X-Forwarded-Port" not in headers:
        # the Host header's port (request.url would build a whole URL for it)
        _, colon, port = request.host.rpartition(":")
        if not (colon and port.isdigit()):
            port = "443" if scheme == "https" else "80"
        extra.append(("X-Forwarded-Port", port))
    return (*headers.items(), *extra)


def _web_request(
    request: web.Request, body: bytes, request_id: str, fv: FunctionVersion, caller: Caller,
    source_ip: str,
) -> WebRequest:  # fmt: skip
    version = request.version
    return WebRequest(
        method=request.method,
        raw_path=_app_path(request),
        raw_query=request.rel_url.raw_query_string,
        headers=forwarded_headers(request, source_ip),
        body=body,
        source_ip=source_ip,
        protocol=f"HTTP/{version.major}.{version.minor}",
        request_id=request_id,
        domain=request.host,
        api_id=fv.name,
        account_id=caller.account_id,
    )


@routes.route("*", "/fn/{function}", name="web_root")
@routes.route("*", "/fn/{function}/{path:.*}", name="web")
async def web_function(request: web.Request) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    headers: CIMultiDict[str] = CIMultiDict({"X-Hotpool-Request-Id": request_id})
    origin = request.headers.get("Origin")
    cors = None
    counters = request.app[WEB_COUNTERS]
    try:
        resolver = Access(request, request.match_info["function"], WEB)
        found = await resolver.function()
        cors = found.config.cors if found is not None else None
        requested = request.headers.get("Access-Control-Request-Method")
        if cors is not None and web_cors.is_preflight(request.method, origin, requested):
            assert origin is not None and requested is not None
            answer = web_cors.preflight(
                cors, origin, requested, request.headers.get("Access-Control-Request-Headers")
            )
            answer.extend(headers)
            counters["web_preflights"] += 1
            return web.Response(status=200, headers=answer)
        fv, caller = resolver.caller(found)
        limit = resolver.settings.max_event_bytes
        body = await read_limited(request, limit, "the request body")
        to_event, to_response = FORMATS[fv.config.http_payload]
        try:
            web_request = _web_request(request, body, request_id, fv, caller, resolver.address)
            event = to_event(web_request, drop=_KEY_HEADERS if caller.hides_key else _NO_HEADERS)
        except TypeError:  # orjson refuses the surrogates aiohttp keeps non-UTF-8 bytes as
            raise InvalidRequest("a request header is not valid UTF-8") from None
        invocation = request.app[INVOKER].invocation(
            fv, event, request_id, caller.admission, trigger="web"
        )
        counters["web_calls"] += 1
        async with invocation as result:
            response = _answer(result, to_response, headers, fv.name, counters)
            if cors is not None:
                web_cors.apply(cors, origin, response.headers)  # type: ignore[arg-type]
            if result.stream is not None and not isinstance(response, web.Response):
                await relay(request, response, result.stream, request_id, form="web")
                return response
            # answered before the container is released, as /invoke answers
            with contextlib.suppress(ConnectionResetError):
                await response.prepare(request)
                await response.write_eof()
        return response
    except HotpoolError as exc:
        if isinstance(exc, _BAD_GATEWAY_ERRORS):
            counters["web_bad_gateway"] += 1
            if isinstance(exc, FunctionError):
                headers["X-Hotpool-Function-Error"] = exc.error_type
            failed = _bad_gateway(headers)
        else:
            failed = error_response(exc, dict(headers))
        if cors is not None:
            web_cors.apply(cors, origin, failed.headers)  # type: ignore[arg-type]
        return failed


def _answer(
    result: Invocation, to_response: Callable[[Any, bytes], WebResponse],
    headers: CIMultiDict[str], name: str, counters: Counter[str],
) -> web.StreamResponse:  # fmt: skip
    headers["X-Hotpool-Cold-Start"] = "true" if result.cold_start else "false"
    headers["X-Hotpool-Duration-Ms"] = f"{result.duration_ms:.3f}"
    if result.function_error is not None:
        headers["X-Hotpool-Function-Error"] = result.function_error
        counters["web_bad_gateway"] += 1
        return _bad_gateway(headers)
    try:
        if result.stream is not None:
            return _stream_head(result.stream.head, to_response, headers)
        out = to_response(result.result, result.body)
    except MalformedResult as exc:
        # the client learns nothing of it; the operator finds the request id here
        log.info("web call %s of %s: malformed result: %s", result.request_id, name, exc)
        counters["web_bad_gateway"] += 1
        counters["web_malformed_results"] += 1
        return _bad_gateway(headers)
    response = web.Response(status=out.status, headers=out.headers, body=out.body)
    response.headers.update(headers)  # hotpool's own, whatever the function set
    return response


def _stream_head(
    head: dict[str, Any] | None, to_response: Callable[[Any, bytes], WebResponse],
    headers: CIMultiDict[str],
) -> web.StreamResponse:  # fmt: skip
    """The response a streamed body is relayed in: status and headers from the handler's
    response head (its result without ``body``), converted as a whole result would be; a
    bare generator (no head) is a 200 of ``application/octet-stream``."""
    if head is None:
        out = WebResponse(200, CIMultiDict({"Content-Type": RAW_TYPE}))
    else:
        out = to_response(head, b"")
    response = web.StreamResponse(status=out.status, headers=out.headers)
    response.headers.update(headers)  # hotpool's own, whatever the function set
    response.headers["X-Hotpool-Streamed"] = "true"
    return response


def _bad_gateway(headers: CIMultiDict[str]) -> web.Response:
    return web.Response(
        status=502, body=BAD_GATEWAY, headers=headers, content_type="application/json"
    )

"""``ANY /fn/{function}/{path...}``: a function answers the web, as if it had a Lambda
function URL (``/fn/api/items/5?q=1`` reaches the app as path ``/items/5``, query ``q=1``).

A thin adapter in front of the one invoke path (``Invoker.invocation``: admission, rate
limit, lease, record): the request becomes an API Gateway event of the function's
``http_payload`` format (``web_http_api`` 2.0, ``web_rest_api`` 1.0) and the result the
HTTP response. Who may call is the function's ``http``:

- ``key``: a Bearer key with ``invoke`` on the function's namespace, metered as /invoke
  meters it; the key itself is never handed to the function.
- ``public``: anyone, under the function's own rate (HOTPOOL_PUBLIC_RATE_PER_S / _BURST) in
  the same Redis script as the acquire; the Authorization header is the app's own.
- ``off``: 404.

An unknown function, another tenant's and one with ``http=off`` are the same 404 to a key,
and the same 401 without one, so nothing tells them apart. A caller without a verified key
whose request made Main read the database counts as a failed authentication of its address,
so guessing names is throttled as guessing keys is. A function error, a crash, a timeout or a
result that is not a response of the format is a 502 ``{"message": "Internal Server Error"}``:
the details stay in the execution record.

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
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from hotpool.main_server import web_cors, web_http_api, web_rest_api
from hotpool.main_server.auth import AUTHENTICATOR, Authenticator
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invocation
from hotpool.main_server.request_input import read_limited
from hotpool.main_server.state import FUNCTIONS, INVOKER, SETTINGS, WEB_COUNTERS
from hotpool.main_server.stream import RAW_TYPE, relay
from hotpool.main_server.web_request import MalformedResult, WebRequest, WebResponse
from hotpool.shared.auth import Principal, parse_token
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvalidRequest,
    InvocationTimeout,
    NotFound,
    Unauthorized,
)
from hotpool.shared.http import error_response
from hotpool.shared.keystore import INVALID_KEY
from hotpool.shared.models import FunctionVersion, qualify, split_qualified, validate_qualified
from hotpool.shared.pool import Admission
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
PUBLIC_ACCOUNT = "anonymous"  # requestContext.accountId of a public call, as function URLs
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


@dataclass(slots=True)
class _Caller:
    """Who calls a web function, and what the call passes in the pool's first script."""

    admission: Admission
    account_id: str
    drop: frozenset[str]


def _qualified(raw: str) -> str | None:
    """The qualified name of ``/fn/{raw}`` (``name`` or ``namespace.name``), or None."""
    try:
        namespace, name = split_qualified(validate_qualified(raw))
    except HotpoolError:
        return None
    return qualify(namespace, name)


def _not_found(raw: str) -> NotFound:
    # one message whatever the cause: unknown, another tenant's, http=off
    return NotFound(f"no web function {raw[:80]!r}")


class _Resolver:
    """The function and the caller of one web request (see the module docstring)."""

    def __init__(self, request: web.Request, raw_name: str) -> None:
        self.request = request
        self.raw_name = raw_name
        self.functions: FunctionService = request.app[FUNCTIONS]
        self.authenticator: Authenticator = request.app[AUTHENTICATOR]
        self.settings: Settings = request.app[SETTINGS]
        self.address = request.remote or ""
        self.principal: Principal | None = None
        self.bad_key = False
        self.metered = False

    async def function(self) -> FunctionVersion | None:
        """The function, if it exists and answers the web."""
        self.authenticator.check_address(self.address)
        token = _hotpool_key(self.request.headers.get("Authorization"))
        if token is not None:
            try:
                self.principal = await self.authenticator.verify(*token)
            except Unauthorized:
                self.bad_key = True
                await self.authenticator.failed(self.address)
        # the cache holds valid qualified names only: a hit needs no parsing
        fv = self.functions.cached(self.raw_name)
        if fv is None:
            name = _qualified(self.raw_name)
            if name is None:
                return None
            fv = self.functions.cached(name) or await self._load(name)
        return fv if fv is not None and fv.config.http != "off" else None

    async def _load(self, name: str) -> FunctionVersion | None:
        """The function read from the store (None: there is none), metered or counted."""
        if self.principal is not None:
            # as /invoke: no request reaches the database unmetered
            await self.authenticator.meter(self.principal)
            self.metered = True
        try:
            fv: FunctionVersion | None = await self.functions.get(name)
        except NotFound:
            fv = None
        anonymous = self.principal is None and not self.bad_key
        if anonymous and (fv is None or fv.config.http != "public"):
            await self.authenticator.failed(self.address)
        return fv

    def caller(self, fv: FunctionVersion | None) -> tuple[FunctionVersion, _Caller]:
        """The function and its caller once access is granted; else the error to answer."""
        settings = self.settings
        if fv is not None and fv.config.http == "public":
            admission = Admission(
                key_id=f"fn:{fv.name}",
                rate_per_s=settings.public_rate_per_s,
                burst=max(1, settings.public_rate_burst),
                namespace=fv.namespace,
                namespace_limit=settings.namespace_max_concurrency,
                hold_s=fv.config.timeout_s + settings.lease_grace_s,
            )
            return fv, _Caller(admission, PUBLIC_ACCOUNT, _NO_HEADERS)
        principal = self.principal
        if principal is None:
            if self.bad_key:
                raise Unauthorized(INVALID_KEY)
            # no key, or a header that holds none: parse_token says which and what to send
            parse_token(self.request.headers.get("Authorization"))
            raise Unauthorized(INVALID_KEY)  # not reached: a well-formed key was verified
        if fv is None:
            raise _not_found(self.raw_name)
        namespace, short_name = split_qualified(fv.name)  # once: each property splits anew
        try:
            principal.namespace(namespace)
            principal.check("invoke", namespace, short_name)
        except NotFound:
            raise _not_found(self.raw_name) from None
        hold_s = fv.config.timeout_s + settings.lease_grace_s
        admission = self.authenticator.admission(principal, namespace, hold_s, metered=self.metered)
        return fv, _Caller(admission, principal.key_id, _KEY_HEADERS)


def _hotpool_key(header: str | None) -> tuple[str, str] | None:
    """The (key id, secret) of an Authorization header holding a hotpool key; None when it
    holds none (no header, or the app's own)."""
    if not header:
        return None
    try:
        return parse_token(header)
    except Unauthorized:
        return None


def _app_path(request: web.Request) -> str:
    """The path the app sees: what follows ``/fn/{function}``, percent-encoded as sent."""
    rest = request.rel_url.raw_path.split("/", 3)
    return "/" + rest[3] if len(rest) > 3 else "/"


def _headers(request: web.Request, source_ip: str) -> tuple[tuple[str, str], ...]:
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
    request: web.Request, body: bytes, request_id: str, fv: FunctionVersion, caller: _Caller,
    source_ip: str,
) -> WebRequest:  # fmt: skip
    version = request.version
    return WebRequest(
        method=request.method,
        raw_path=_app_path(request),
        raw_query=request.rel_url.raw_query_string,
        headers=_headers(request, source_ip),
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
        resolver = _Resolver(request, request.match_info["function"])
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
            event = to_event(web_request, drop=caller.drop)
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

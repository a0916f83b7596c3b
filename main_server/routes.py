"""Main's public REST API under /v1, plus /healthz, /readyz and /system/status."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from hotpool.main_server.async_api import accept as accept_async
from hotpool.main_server.async_api import wants_async
from hotpool.main_server.auth import AUTHENTICATOR, PRINCIPAL
from hotpool.main_server.request_input import body_deadline, read_limited, target
from hotpool.main_server.state import (
    ASYNC_CONSUMER,
    ASYNC_QUEUE,
    FUNCTIONS,
    INVOKER,
    LOGS,
    METADATA,
    POOL,
    REAPER,
    REDIS,
    REGISTRY,
    SCHEDULER,
    SETTINGS,
    WEB_COUNTERS,
    WS_HUB,
    WS_SOCKETS,
)
from hotpool.main_server.stream import SSE_TYPE, relay, stream_response
from hotpool.shared.errors import (
    Forbidden,
    FunctionError,
    HotpoolError,
    InvalidEvent,
    InvalidRequest,
    PayloadTooLarge,
)
from hotpool.shared.http import error_response, json_response
from hotpool.shared.metrics import probe
from hotpool.shared.models import FunctionConfig
from hotpool.shared.paging import Position
from hotpool.shared.redis_conn import redis_errors

routes = web.RouteTableDef()

max_invocations_limit = 1000
# a deploy's form holds the code and a few settings; a body of 100,000 empty parts once took
# 13.5 s of Main's loop to refuse
max_multipart_parts = 16


async def _read_multipart(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    try:
        async with body_deadline(request):
            return await _parse_multipart(request, limit)
    except (BadHttpMessage, ValueError) as exc:
        # aiohttp's reader raises these for a missing boundary, a bad part header or a body
        # cut short: the caller's fault, so a 400 and not an unhandled 500
        detail = exc.message if isinstance(exc, BadHttpMessage) else str(exc)
        raise InvalidRequest(f"the multipart body is malformed: {detail}") from None


async def _parse_multipart(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    reader = await request.multipart()
    code: bytes | None = None
    params: dict[str, str] = {}
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > max_multipart_parts:
            raise InvalidRequest(f"the multipart body has more than {max_multipart_parts} parts")
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("nested multipart bodies are not supported")
        if part.filename is not None or part.name == "code":
            if code is not None:
                raise InvalidRequest("send exactly one code file (field 'code')")
            code = await _read_part(part, limit)
        elif part.name:
            params[part.name] = (await _read_part(part, 64 * 1024)).decode("utf-8", "replace")
    if code is None:
        if "image" in params or "image" in request.query:  # its code is the image
            return b"", params
        raise InvalidRequest("the multipart body has no code file; send it as field 'code'")
    return code, params


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the code package is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_event(event: bytes, max_depth: int) -> bytes:
    """The event as sent, once it is known to be JSON no deeper than ``max_depth``."""
    if not event.strip():
        return b"null"
    try:
        orjson.loads(event)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"the event (request body) is not valid JSON: {exc}") from None
    # fewer brackets than the limit cannot nest deeper than it: the scan is rarely needed
    if event.count(b"[") + event.count(b"{") > max_depth and _depth(event) > max_depth:
        raise InvalidEvent(f"the event nests deeper than {max_depth} levels")
    return event


def _depth(event: bytes) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in event:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


@routes.put("/v1/functions/{name}")
async def put_function(request: web.Request) -> web.Response:
    qualified = target(request, "deploy")
    settings_limit = request.app[FUNCTIONS].package_limit_bytes
    content_type = request.content_type
    if content_type == "multipart/form-data":
        data, params = await _read_multipart(request, settings_limit)
        # the namespace comes from the query only: a form field of that name is refused as
        # an unknown setting rather than silently ignored
        query = {k: v for k, v in request.query.items() if k != "namespace"}
        params = {**query, **params}
    elif content_type in ("application/zip", "application/octet-stream"):
        data = await read_limited(request, settings_limit, "the code package")
        params = {k: v for k, v in request.query.items() if k != "namespace"}
    elif "image" in request.query and not request.can_read_body:
        data = b""  # a container-image function: settings in the query, no body
        params = {k: v for k, v in request.query.items() if k != "namespace"}
    else:
        raise InvalidRequest(
            f"send the zip as Content-Type application/zip (settings as query parameters) "
            f"or as multipart/form-data with a 'code' file; got {content_type!r}",
        )
    config = FunctionConfig.from_params(params)
    fv = await request.app[FUNCTIONS].deploy(qualified, config, data)
    return json_response(fv.to_dict(), status=201 if fv.version == 1 else 200)


@routes.get("/v1/functions")
async def list_functions(request: web.Request) -> web.Response:
    namespace = target(request, "read")
    functions = await request.app[FUNCTIONS].list(namespace)
    return json_response({"functions": [fv.to_dict() for fv in functions]})


@routes.get("/v1/functions/{name}")
async def get_function(request: web.Request) -> web.Response:
    fv = await request.app[FUNCTIONS].get(target(request, "read"), fresh=True)
    return json_response(fv.to_dict())


@routes.delete("/v1/functions/{name}")
async def delete_function(request: web.Request) -> web.Response:
    fv, removed = await request.app[FUNCTIONS].delete(target(request, "deploy"))
    with redis_errors("the asynchronous queue"):
        await request.app[ASYNC_QUEUE].forget_function(fv.name)
    return json_response(
        {
            "deleted": fv.short_name,
            "namespace": fv.namespace,
            "version": fv.version,
            "containers_removed": removed,
        }
    )


@routes.post("/v1/functions/{name}/invoke", name="invoke")
async def invoke(request: web.Request) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    headers = {"X-Hotpool-Request-Id": request_id}
    functions, authenticator = request.app[FUNCTIONS], request.app[AUTHENTICATOR]
    try:
        name = target(request, "invoke")
        asynchronous = wants_async(request)
        # the hot path meters the key in the pool's first script; a function that is not
        # cached is metered first, so no request reaches the database unmetered
        fv = functions.cached(name)
        metered = fv is None
        if fv is None:
            await authenticator.meter(request[PRINCIPAL])
            fv = await functions.get(name)
        try:
            event = await read_limited(request, functions.event_limit_bytes, "the event")
            event = check_event(event, functions.event_max_depth)
        except HotpoolError:
            if not metered:  # a bad event costs a token too (429 first when over the rate)
                await authenticator.meter(request[PRINCIPAL])
            raise
        if asynchronous:
            if not metered:  # an accepted event is metered like a call
                await authenticator.meter(request[PRINCIPAL])
            return await accept_async(request, fv, event, request_id)
        hold_s = fv.config.timeout_s + functions.lease_grace_s
        admission = authenticator.admission(
            request[PRINCIPAL], fv.namespace, hold_s, metered=metered
        )
        async with request.app[INVOKER].invocation(fv, event, request_id, admission) as result:
            headers["X-Hotpool-Cold-Start"] = "true" if result.cold_start else "false"
            headers["X-Hotpool-Duration-Ms"] = f"{result.duration_ms:.3f}"
            if result.function_error is not None:
                headers["X-Hotpool-Function-Error"] = result.function_error
            if result.stream is not None:
                # relayed as the items come; the record is written once the stream ends
                sse = SSE_TYPE in request.headers.get("Accept", "")
                response = stream_response(headers, sse=sse)
                form = "sse" if sse else "raw"
                await relay(request, response, result.stream, request_id, form=form)
                return response
            response = web.Response(
                body=result.body, status=result.status, content_type="application/json",
                headers=headers,
            )  # fmt: skip
            # answered before the container is released (see Invoker.invocation); a client
            # that left meanwhile has nobody to tell
            with contextlib.suppress(ConnectionResetError):
                await response.prepare(request)
                await response.write_eof()
    except FunctionError as exc:  # the code failed to load, or its container died under it
        headers["X-Hotpool-Function-Error"] = exc.error_type
        return json_response(exc.invoke_body(request_id), status=exc.status, headers=headers)
    except HotpoolError as exc:
        return error_response(exc, headers)
    return response


@routes.get("/v1/functions/{name}/invocations")
async def list_invocations(request: web.Request) -> web.Response:
    raw_limit = request.query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_invocations_limit:
        raise InvalidRequest(f"limit must be a whole number from 1 to {max_invocations_limit}")
    cursor = request.query.get("cursor")
    after = Position.from_cursor(cursor) if cursor is not None else None
    fv = await request.app[FUNCTIONS].get(target(request, "read"), fresh=True)
    page = await request.app[LOGS].page(
        fv.name, int(raw_limit), after=after, max_bytes=request.app[SETTINGS].max_listing_bytes
    )
    for record in page.records:
        record["function"] = fv.short_name
    return json_response(
        {
            "function": fv.short_name,
            "namespace": fv.namespace,
            "invocations": page.records,
            "next_cursor": page.next_cursor,
        }
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness, for load balancers: 503 naming what is down while Redis or the metadata
    store does not answer (``/healthz`` stays liveness: the process runs)."""
    app = request.app
    down = await asyncio.gather(probe(app[REDIS].ping()), probe(app[METADATA].ping()))
    checks = {name: why or "ok" for name, why in zip(("redis", "metadata"), down, strict=True)}
    ready = not any(down)
    return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


@routes.get("/system/status")
async def system_status(request: web.Request) -> web.Response:
    if not request[PRINCIPAL].is_admin:
        raise Forbidden("the system status needs an admin key")
    app = request.app
    with redis_errors("the pool"):
        await app[REDIS].ping()
        managers = await app[REGISTRY].snapshot(fresh=True)
        counts = await app[POOL].counts()
        depths = await app[ASYNC_QUEUE].depths()
        backlog = await app[ASYNC_QUEUE].backlog()
        scheduler = await app[SCHEDULER].status()
    by_function: dict[str, dict[str, int]] = {}
    empty = {"warm": 0, "busy": 0, "starting": 0}
    for label, n in counts.idle.items():
        by_function.setdefault(label, dict(empty))["warm"] = n
    for label, n in counts.leased.items():
        by_function.setdefault(label, dict(empty))["busy"] = n
    for label, n in counts.starting.items():
        by_function.setdefault(label, dict(empty))["starting"] = n
    runtimes = await app[FUNCTIONS].runtimes_of({label.rsplit(":", 1)[0] for label in by_function})
    by_runtime: dict[str, dict[str, int]] = {}
    for label, figures in by_function.items():
        runtime = runtimes.get(label.rsplit(":", 1)[0], "unknown")
        total = by_runtime.setdefault(runtime, dict(empty))
        for kind in empty:
            total[kind] += figures[kind]
    alive = [m for m in managers if m.alive]
    return json_response(
        {
            "status": "online" if alive else "offline",
            "managers_online": len(alive),
            "managers": [m.to_dict() for m in managers],
            "containers": {"by_function": by_function, "by_runtime": by_runtime},
            "invocations_in_flight": app[INVOKER].in_flight,
            "busy_containers": sum(counts.leased.values()),
            "async": {
                "namespaces": {
                    ns: {"queued": d.queued, "oldest_age_s": d.oldest_age_s}
                    for ns, d in depths.items()
                },
                **backlog,
                "in_flight_here": app[ASYNC_CONSUMER].in_flight,
            },
            "scheduler": scheduler,
            "websocket": {
                "connections_here": len(app[WS_SOCKETS].live),
                "max_connections_here": app[WS_SOCKETS].limit,
            },
            # this replica's counters since it started
            "counters": dict(
                app[INVOKER].counters
                + app[REAPER].counters
                + app[WEB_COUNTERS]
                + app[ASYNC_CONSUMER].counters
                + app[WS_SOCKETS].counters
                + app[WS_HUB].counters
            ),
        }
    )

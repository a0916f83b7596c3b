"""aiohttp helpers shared by Main and Manager: JSON responses and the error middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from hotpool.shared.errors import FunctionError, HotpoolError, TooManyRequests

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Client = TypeVar("Client")
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def client_context(
    key: web.AppKey[Client],
    open_client: Callable[[web.Application], Awaitable[Client]],
    close: Callable[[Client], Awaitable[object]],
) -> CleanupContext:
    """A ``cleanup_ctx`` generator for one client under ``key``: the one passed to the app
    (used as it is and left open: whoever made it closes it), or one it opens and closes."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        given = app.get(key)
        client = given if given is not None else await open_client(app)
        app[key] = client
        yield
        if given is None:
            await close(client)

    return context


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: HotpoolError, headers: dict[str, str] | None = None) -> web.Response:
    """The HTTP answer for a hotpool error: its status and its JSON body."""
    extra = dict(headers or {})
    if isinstance(exc, TooManyRequests):
        extra["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, FunctionError):
        extra["X-Hotpool-Function-Error"] = exc.error_type
    return json_response(exc.to_dict(), status=exc.status, headers=extra)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn hotpool errors into their responses, and aiohttp's HTML errors into JSON."""
    try:
        return await handler(request)
    except HotpoolError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(
            {"error": {"code": exc.reason.replace(" ", ""), "message": exc.text or exc.reason}},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except ConnectionResetError:
        if not _client_gone(request):
            raise  # a connection of ours (Redis, a Manager) was reset: a fault, logged below
        # any client can hang up mid-body, as often as it likes: worth a line, not a traceback
        log.info("client disconnected during %s %s", request.method, request.path)
        return json_response(
            {"error": {"code": "ClientDisconnected", "message": "the client went away"}},
            status=400,
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(
            {"error": {"code": "InternalError", "message": "internal error; see the server log"}},
            status=500,
        )


async def read_json(request: web.Request) -> Any:
    from hotpool.shared.errors import InvalidRequest

    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None

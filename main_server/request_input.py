"""What Main's routes read from a request before they act: its body, within a size and a
time limit, and the function or namespace its key may act on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from hotpool.main_server.auth import PRINCIPAL
from hotpool.main_server.state import SETTINGS
from hotpool.shared.errors import PayloadTooLarge, RequestTimeout
from hotpool.shared.models import qualify, validate_name


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Bound the time a body takes to arrive: a client trickling one (slowloris) is cut off."""
    timeout_s = request.app[SETTINGS].http_body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s (HOTPOOL_HTTP_BODY_TIMEOUT_S)"
        ) from None


async def read_limited(request: web.Request, limit: int, what: str) -> bytes:
    """The body, refusing anything over ``limit`` bytes before and while reading it."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"{what} is {request.content_length} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async with body_deadline(request):
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def target(request: web.Request, scope: str) -> str:
    """The qualified function name (or, without one in the path, the namespace) a request
    may act on with ``scope``: another tenant's is a 404, never a 403 that confirms it."""
    principal = request[PRINCIPAL]
    namespace = principal.namespace(request.query.get("namespace"))
    name = request.match_info.get("name")
    if name is not None:
        validate_name(name)
    principal.check(scope, namespace, name)
    return qualify(namespace, name) if name is not None else namespace

"""Main's Manager client (main_server.manager_client) at its two boundaries: aiohttp's failures
mapped to hotpool's errors (``manager_errors``), and a Manager's error answers rebuilt from
their ``code``. The Manager here is a small in-process aiohttp app that answers through the
Manager's own error middleware; the registry is on fakeredis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import fakeredis
import orjson
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import TestServer

from hotpool.main_server.manager_client import ManagerClient, manager_errors
from hotpool.shared import keys
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    NoCapacity,
    NotDelivered,
    NotFound,
    RuntimeImageMissing,
    StoreUnavailable,
    Unauthorized,
)
from hotpool.shared.http import error_middleware, json_response
from hotpool.shared.models import PoolEntry
from hotpool.shared.registry import ManagerRegistry
from tests.fakes import ECHO_V1
from tests.helpers import free_port

pytestmark = pytest.mark.unit

FV = ECHO_V1
ENTRY = PoolEntry("echo", 1, "m1", "c1", "10.0.0.1:9000")
KEY = ConnectionKey("127.0.0.1", 1, False, True, None, None, None, None)


# --- aiohttp's failures, most specific first ------------------------------------------------------

MAPPING = {
    "connection refused": (
        aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused")), NotDelivered
    ),
    "name not resolved": (
        aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")),
        NotDelivered,
    ),
    "disconnected mid-answer": (aiohttp.ServerDisconnectedError(), NoCapacity),
    "broken payload": (aiohttp.ClientPayloadError("truncated"), NoCapacity),
    "read timed out": (aiohttp.SocketTimeoutError("read"), NoCapacity),
    "total timeout": (TimeoutError(), NoCapacity),
    "answer not JSON": (orjson.JSONDecodeError("bad", "<html>", 0), NoCapacity),
}  # fmt: skip


@pytest.mark.parametrize(("raised", "mapped"), MAPPING.values(), ids=MAPPING.keys())
def test_manager_errors_maps_each_failure(raised, mapped):
    with pytest.raises(mapped) as caught, manager_errors("m1", "start a container"):
        raise raised

    assert type(caught.value) is mapped
    assert caught.value.__cause__ is raised
    assert "m1" in caught.value.message


def test_manager_errors_lets_anything_else_through():
    with pytest.raises(KeyError), manager_errors("m1", "start a container"):
        raise KeyError("entry")


# --- a Manager's answers, through ManagerClient ---------------------------------------------------

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raising(error: HotpoolError) -> Answer:
    """A Manager that refuses with ``error`` (answered by its error middleware)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        raise error

    return answer


async def started(request: web.Request) -> web.StreamResponse:
    return json_response(
        {"entry": ENTRY.encode(), "start_ms": 20.0, "init_ms": 5.0, "total_ms": 30.0,
         "fetch_ms": 1.0, "prewarmed": True, "init_stdout": "booted\n", "init_stderr": 7},
        status=201,
    )  # fmt: skip


async def crashed(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("a bug in the Manager")  # the middleware answers 500 InternalError


async def proxy_page(request: web.Request) -> web.StreamResponse:
    return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")


class Rig:
    """A ManagerClient whose registry (on fakeredis) lists the Managers ``register`` adds."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.client = ManagerClient(ManagerRegistry(self.redis), http, timeout_s=5.0)
        self.servers: list[TestServer] = []

    async def register(self, manager_id: str, url: str, running: int = 0) -> None:
        info = {"url": url, "capacity": 10, "running": running, "heartbeat_at": 1.0}
        await self.redis.hset(keys.MANAGERS, manager_id, orjson.dumps(info))
        await self.redis.set(keys.manager_alive(manager_id), "1")

    async def manager(self, manager_id: str, **routes: Answer) -> list[str]:
        """Start a fake Manager answering POST /v1/containers with ``create`` and DELETE with
        ``delete``; returns the log of the requests it received."""
        seen: list[str] = []

        def logged(answer: Answer) -> Answer:
            async def handler(request: web.Request) -> web.StreamResponse:
                seen.append(f"{request.method} {request.path_qs}")
                return await answer(request)

            return handler

        app = web.Application(middlewares=[error_middleware])
        if "create" in routes:
            app.router.add_post("/v1/containers", logged(routes["create"]))
        if "delete" in routes:
            app.router.add_delete("/v1/containers/{id}", logged(routes["delete"]))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self.servers.append(server)
        await self.register(manager_id, str(server.make_url("")).rstrip("/"))
        return seen


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with aiohttp.ClientSession() as http:
        r = Rig(http)
        yield r
        for server in r.servers:
            await server.close()
        await r.redis.aclose()


async def test_a_cold_start_answer_becomes_a_cold_start(rig):
    await rig.manager("m1", create=started)

    cold = await rig.client.cold_start(FV)

    assert cold.entry == ENTRY and cold.prewarmed
    assert (cold.start_ms, cold.init_ms, cold.total_ms, cold.fetch_ms) == (20.0, 5.0, 30.0, 1.0)
    # what the module printed at import; a field that is not text is dropped
    assert (cold.init_stdout, cold.init_stderr) == ("booted\n", "")


REFUSALS: dict[str, tuple[Answer, type[HotpoolError], dict[str, Any]]] = {
    "at capacity: full": (
        raising(NoCapacity("manager m1 is at capacity (10 containers)", full=True)),
        NoCapacity, {"full": True},
    ),
    "shutting down: not full": (
        raising(NoCapacity("manager m1 is shutting down")), NoCapacity, {},
    ),
    "the code failed to load": (
        raising(FunctionError("loading the function failed: boom", error_type="ImportError",
                              traceback="Traceback ...", phase="init")),
        FunctionError, {"phase": "init"},
    ),
    "runtime image missing": (
        raising(RuntimeImageMissing("build hotpool/runtime-python")), RuntimeImageMissing, {},
    ),
    "the Manager's Redis is away": (
        raising(StoreUnavailable("the pool (Redis) is unreachable")), NoCapacity, {},
    ),
    "unknown code key": (raising(NotFound("no code 'x.zip'")), ContainerFailed, {}),
    "wrong secret": (raising(Unauthorized("needs the shared secret")), ContainerFailed, {}),
    "a bug in the Manager": (crashed, ContainerFailed, {}),
    "a proxy's HTML page": (proxy_page, NoCapacity, {}),
}  # fmt: skip


@pytest.mark.parametrize(("answer", "raises", "details"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_cold_start_is_rebuilt_from_the_answer(rig, answer, raises, details):
    seen = await rig.manager("m1", create=answer)

    with pytest.raises(raises) as caught:
        await rig.client.cold_start(FV)

    assert type(caught.value) is raises
    assert caught.value.details == details
    assert seen == ["POST /v1/containers"]  # refused, not unreachable: never retried
    if isinstance(caught.value, FunctionError):
        assert (caught.value.error_type, caught.value.traceback) == ("ImportError", "Traceback ...")


def closed_port_url() -> str:
    """A URL nothing listens on: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"


async def test_a_manager_refusing_connections_is_skipped_for_another(rig):
    await rig.register("m0", closed_port_url())  # the least loaded: chosen first
    seen = await rig.manager("m1", create=started)
    await rig.register("m1", str(rig.servers[0].make_url("")).rstrip("/"), running=5)

    cold = await rig.client.cold_start(FV)

    assert cold.entry == ENTRY and seen == ["POST /v1/containers"]


async def test_no_manager_reachable_is_no_capacity(rig):
    await rig.register("m0", closed_port_url())

    with pytest.raises(NoCapacity) as caught:
        await rig.client.cold_start(FV)

    assert not caught.value.details.get("full")


async def exited(request: web.Request) -> web.StreamResponse:
    assert request.query.get("failed") == "1"
    return json_response({"removed": request.match_info["id"], "exit": {"error_type": "OOM"}})


REMOVALS = {
    "how it ended": (exited, {"error_type": "OOM"}),
    "unknown container": (raising(NotFound("no container c1")), None),
    "a bug in the Manager": (crashed, None),
}


@pytest.mark.parametrize(("answer", "ended"), REMOVALS.values(), ids=REMOVALS.keys())
async def test_remove_answers_how_the_container_ended_or_none(rig, answer, ended):
    seen = await rig.manager("m1", delete=answer)

    assert await rig.client.remove(ENTRY, failed=True) == ended
    assert seen == ["DELETE /v1/containers/c1?failed=1"]


async def test_remove_through_an_unreachable_manager_is_none(rig):
    await rig.register("m1", closed_port_url())

    assert await asyncio.wait_for(rig.client.remove(ENTRY, failed=True), 10) is None

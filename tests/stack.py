"""An embedded hotpool (Main + Manager + process backend + fakeredis) per test.

With ``redis_url`` among the overrides both apps talk to that real Redis instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import fakeredis
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotpool.main_server.app import create_app
from hotpool.main_server.auth import AUTHENTICATOR
from hotpool.manager.app import SERVICE, create_manager_app
from hotpool.manager.service import ManagerService
from hotpool.shared import keys
from hotpool.shared.redis_conn import make_redis
from hotpool.shared.settings import Settings
from tests.helpers import free_port
from tests.services import RUNTIME_IMAGE, RUNTIME_IMAGE_NODEJS, missing_service


@dataclass
class Stack:
    """A running embedded hotpool and handles to look inside it."""

    client: TestClient
    manager_server: TestServer
    redis: Any
    settings: Settings
    fake_server: fakeredis.FakeServer | None  # None when the stack runs on a real Redis

    @property
    def manager_headers(self) -> dict[str, str]:
        """What Main sends the Manager: its shared secret."""
        return {"Authorization": f"Bearer {self.settings.manager_secret}"}

    async def key(self, namespace: str, scopes: str = "deploy,invoke,read", **extra: Any) -> str:
        """A new API key of ``namespace``."""
        authenticator = self.client.app[AUTHENTICATOR]
        key, _ = await authenticator.keystore.create(namespaces=[namespace], scopes=scopes, **extra)
        return key.token

    @property
    def manager(self) -> ManagerService:
        return self.manager_server.app[SERVICE]

    async def deploy(self, name: str, code: bytes, **params: Any) -> Any:
        query = {k: (orjson.dumps(v).decode() if k == "env" else str(v)) for k, v in params.items()}
        resp = await self.client.put(
            f"/v1/functions/{name}",
            data=code,
            params=query,
            headers={"Content-Type": "application/zip"},
        )
        return resp

    async def records(self, name: str, n: int) -> list[dict]:
        """The function's newest execution records, once there are at least ``n``."""
        found: list[dict] = []

        async def arrived() -> bool:
            nonlocal found
            resp = await self.client.get(f"/v1/functions/{name}/invocations")
            found = (await resp.json())["invocations"]
            return len(found) >= n

        assert await wait_for(arrived), found
        return found

    async def invoke(self, name: str, event: Any = None, *, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else orjson.dumps(event)
        return await self.client.post(
            f"/v1/functions/{name}/invoke",
            data=data,
            headers={"Content-Type": "application/json"},
        )

    async def pool_entries(self, name: str, version: int) -> list[str]:
        return [e.decode() for e in await self.redis.lrange(keys.pool(name, version), 0, -1)]

    async def idle_entries(self, name: str, version: int, n: int = 1) -> list[str]:
        """The version's pool list once it holds ``n`` entries: Main answers a call before it
        releases the container, so right after a response the release may not have run."""
        entries: list[str] = []

        async def released() -> bool:
            nonlocal entries
            entries = await self.pool_entries(name, version)
            return len(entries) == n

        assert await wait_for(released), f"{name} v{version}: pool holds {entries}, not {n}"
        return entries

    async def leases(self) -> list[str]:
        return [e.decode() for e in await self.redis.zrange(keys.LEASES, 0, -1)]

    def live_containers(self) -> set[str]:
        return {c["container_id"] for c in self.manager.describe()}


StackFactory = Callable[..., Awaitable[Stack]]

# Main and a Manager stop within seconds (drain_timeout_s is 2 s here); a stack still stopping
# after this long is a shutdown bug, reported with what each task was waiting on
teardown_s = 90.0


def task_stacks() -> str:
    """What every other task of the running loop is waiting on, innermost await last
    (``Task.print_stack`` shows only the outer frame of a suspended coroutine)."""
    lines = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        lines.append(repr(task))
        awaiting: Any = task.get_coro()
        while awaiting is not None:
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
            if frame is None:
                lines.append(f"    on {awaiting!r}")
                break
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}")
            awaiting = getattr(awaiting, "cr_await", None) or getattr(
                awaiting, "gi_yieldfrom", None
            )
    return "\n".join(lines)


@pytest.fixture
def stack_backend() -> str:
    """The container backend of ``hotpool_stack``; test modules override it to run on Docker."""
    return "process"


@pytest.fixture
async def hotpool_stack(tmp_path, stack_backend) -> AsyncIterator[StackFactory]:
    """Factory: ``await hotpool_stack(idle_ttl_s=1)`` starts a stack torn down after the test."""
    started: list[tuple[TestClient, TestServer]] = []
    clients: list[Any] = []  # Redis clients the stacks own, closed after the apps
    if stack_backend == "docker":
        await require_docker()

    async def start(**overrides: Any) -> Stack:
        port = free_port()
        values: dict[str, Any] = {
            "backend": stack_backend,
            "state_dir": tmp_path / f"state{len(started)}",
            "manager_port": port,
            "manager_url": f"http://127.0.0.1:{port}",
            "manager_id": f"mgr-test-{uuid.uuid4().hex[:8]}",
            # deterministic container counts; pre-warming has tests of its own
            "prewarm_count": 0,
            "drain_timeout_s": 2.0,
            "manager_secret": "test-manager-secret",
            "runtime_image_python": RUNTIME_IMAGE,
            "runtime_image_nodejs": RUNTIME_IMAGE_NODEJS,
        }
        values.update(overrides)
        settings = Settings.from_env({}, **values)
        server: fakeredis.FakeServer | None = None
        if settings.redis_url:
            manager_redis, main_redis = make_redis(settings), make_redis(settings)
            clients.extend((manager_redis, main_redis))
        else:
            server = fakeredis.FakeServer()
            manager_redis = fakeredis.FakeAsyncRedis(server=server)
            main_redis = fakeredis.FakeAsyncRedis(server=server)
        manager_server = TestServer(create_manager_app(settings, redis=manager_redis), port=port)
        await manager_server.start_server()
        # Main listens on ``port`` when a test names it (functions told its URL reach it)
        main_port = settings.port if "port" in overrides else None
        client = TestClient(TestServer(create_app(settings, redis=main_redis), port=main_port))
        await client.start_server()
        # every request of the test client carries an admin key of all namespaces
        key, _ = await client.app[AUTHENTICATOR].keystore.create(
            namespaces=["*"], scopes="admin", description="test stack"
        )
        client.session.headers["Authorization"] = f"Bearer {key.token}"
        started.append((client, manager_server))
        return Stack(client, manager_server, main_redis, settings, server)

    yield start

    async def stop() -> None:
        for client, manager_server in started:
            await client.close()
            await manager_server.close()

    stopping = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({stopping}, timeout=teardown_s)
    if not done:
        stacks = task_stacks()  # before the cancel unwinds them
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        pytest.fail(f"the stack did not stop within {teardown_s:g} s; its tasks:\n{stacks}")
    stopping.result()
    for redis in clients:
        await redis.aclose()
    await asyncio.sleep(0)


async def require_docker(image: str = RUNTIME_IMAGE) -> None:
    """Skip (locally) or fail (in CI) when the Docker engine or the runtime ``image`` (the
    Python one unless told) is missing."""
    import aiodocker

    problem = None
    try:
        async with aiodocker.Docker() as docker:
            await docker.images.inspect(image)
    except Exception as exc:  # daemon down or image missing
        problem = f"Docker or the image {image} is unavailable: {exc}"
    if problem is not None:
        missing_service(problem + "; .ci/run installs both, or run deploy/build-images.sh")


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return whether it held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return await predicate()

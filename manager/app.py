"""The Manager's HTTP API (aiohttp): ``create_manager_app(settings)`` builds it.

POST   /v1/containers        start a container and load a function version's code
DELETE /v1/containers/{id}   remove a container
GET    /v1/containers        the containers this Manager runs
GET    /healthz              liveness and load
GET    /readyz               readiness: backend reachable, registered, not draining

``/metrics`` listens on its own port (``manager.metrics``, started by ``main_server.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from hotpool.manager.backend import ContainerBackend
from hotpool.manager.docker_backend import DockerBackend
from hotpool.manager.metrics import ManagerMetrics
from hotpool.manager.package_cache import PackageCache
from hotpool.manager.process_backend import ProcessBackend
from hotpool.manager.service import ManagerService
from hotpool.manager.specialise import CreateRequest
from hotpool.shared.codestore import CodeStore, LocalCodeStore
from hotpool.shared.errors import InvalidRequest, Unauthorized
from hotpool.shared.http import client_context, error_middleware, json_response, read_json
from hotpool.shared.loops import every
from hotpool.shared.metrics import probe
from hotpool.shared.redis_conn import open_redis
from hotpool.shared.settings import Settings, SettingsError
from hotpool.shared.stores import open_code_store

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
BACKEND = web.AppKey("backend", ContainerBackend)
CODE_STORE = web.AppKey("code_store", CodeStore)
READER = web.AppKey("package_reader", CodeStore)  # the code store, or its disk cache
SERVICE = web.AppKey("service", ManagerService)
METRICS = web.AppKey("metrics", ManagerMetrics)


async def create_container(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    create = CreateRequest.from_json(await read_json(request))
    result = await service.create(create)
    request.app[METRICS].started(create.config.runtime, result)
    return json_response(result, status=201)


async def delete_container(request: web.Request) -> web.Response:
    """Remove a container; ``?failed=1`` also reports how it ended (OOM kill, crash)."""
    failed = request.query.get("failed") in ("1", "true")
    status = await request.app[SERVICE].remove(request.match_info["container_id"], failed=failed)
    exit_info = None
    if status is not None:
        error_type, message = status.describe()
        exit_info = {
            "exit_code": status.exit_code,
            "oom_killed": status.oom_killed,
            "error_type": error_type,
            "message": message,
        }
    return json_response({"removed": request.match_info["container_id"], "exit": exit_info})


async def resolve_image(request: web.Request) -> web.Response:
    """``{"image": reference}`` -> the image's pinned ID and ImageConfig on this node."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise InvalidRequest('send {"image": "<reference>"}')
    service = request.app[SERVICE]
    resolve = getattr(request.app[BACKEND], "resolve_image", None)
    if resolve is None:
        raise InvalidRequest(
            f"container-image functions need the Docker backend; manager {service.manager_id} "
            f"runs the {service.backend_name} backend (HOTPOOL_BACKEND=docker)"
        )
    return json_response(await resolve(body["image"]))


async def list_containers(request: web.Request) -> web.Response:
    return json_response({"containers": request.app[SERVICE].describe()})


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return json_response(
        {
            "status": "ok" if service.healthy else "unhealthy",
            "backend": service.backend_name,
            "prewarmed": service.prewarm.size,
            "manager_id": service.manager_id,
            "running": service.running,
            "capacity": service.settings.capacity_containers,
            "accepting": service.accepting,
        },
        status=200 if service.healthy else 503,
    )


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the backend answers now (the Docker daemon), the last heartbeat reached Redis
    within its TTL (Main sees this Manager), and it takes cold starts (not draining)."""
    app = request.app
    service, ttl_s = app[SERVICE], app[SETTINGS].heartbeat_ttl_s
    backend = await probe(_answers(app[BACKEND]))
    beat_age_s = time.time() - service.heartbeat_ok_at
    checks = {
        "backend": backend or "ok",
        "registered": "ok" if beat_age_s <= ttl_s else f"no heartbeat reached Redis in {ttl_s:g} s",
        "accepting": "ok" if service.accepting else "draining",
    }
    ready = all(v == "ok" for v in checks.values())
    return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def _answers(backend: ContainerBackend) -> None:
    if not await backend.healthy():
        raise ConnectionError("the container backend does not answer")


def secret_middleware(secret: str):
    """Only callers presenting the shared secret reach the Manager's API (not /healthz)."""
    expected = f"Bearer {secret}".encode()

    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise Unauthorized("the Manager's API needs the shared secret")
        return await handler(request)

    return check


def make_backend(settings: Settings) -> ContainerBackend:
    if settings.backend == "process":
        return ProcessBackend(
            settings.containers_dir,
            host=settings.advertise_host,
            ready_timeout_s=settings.container_ready_timeout_s,
        )
    return DockerBackend(
        manager_id=settings.effective_manager_id,
        images=settings.runtime_images,
        advertise_host=settings.advertise_host,
        docker_url=settings.docker_url or None,
        cpus=settings.container_cpus,
        pids_limit=settings.container_pids_limit,
        tmpfs_mb=settings.container_tmpfs_mb,
        create_concurrency=settings.docker_create_concurrency,
        ready_timeout_s=settings.container_ready_timeout_s,
        relay_memory_mb=settings.image_relay_memory_mb,
        reach=settings.docker_reach,
    )


def create_manager_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    backend: ContainerBackend | None = None,
    code_store: CodeStore | None = None,
) -> web.Application:
    """The Manager application; clients not passed in are built from ``settings``.

    Clients passed in are used as they are and left open: whoever made them closes them
    (a backend passed in is closed by the service's shutdown, as one it builds).
    """
    if not settings.manager_secret:
        raise SettingsError(
            "HOTPOOL_MANAGER_SECRET must be set: the Manager's API is only for Main, which "
            "presents the same secret (generate one with: openssl rand -hex 32)"
        )
    app = web.Application(
        middlewares=[error_middleware, secret_middleware(settings.manager_secret)],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = ManagerMetrics()
    given = ((REDIS, redis), (BACKEND, backend), (CODE_STORE, code_store))
    for key, client in given:
        if client is not None:
            app[key] = client
    app.cleanup_ctx.extend([redis_client, code_storage, manager_service, background_loops])
    app.add_routes(
        [
            web.post("/v1/containers", create_container),
            web.get("/v1/containers", list_containers),
            web.post("/v1/images/resolve", resolve_image),
            web.delete("/v1/containers/{container_id}", delete_container),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
    return app


# Redis: registration, heartbeats and the warm pool
redis_client = client_context(REDIS, lambda app: open_redis(app[SETTINGS]), lambda r: r.aclose())


async def code_storage(app: web.Application) -> AsyncIterator[None]:
    """Code packages; a remote store is read through the node's disk cache (one download
    per package)."""
    settings, given = app[SETTINGS], app.get(CODE_STORE)
    store = given if given is not None else await open_code_store(settings)
    app[CODE_STORE] = store
    app[READER] = (
        store
        if isinstance(store, LocalCodeStore)
        else PackageCache(
            store,
            settings.state_dir / "package-cache",
            max_bytes=settings.package_cache_mb * 1024 * 1024,
        )
    )
    yield
    if given is None:
        await store.close()


async def manager_service(app: web.Application) -> AsyncIterator[None]:
    """The service: registered, reconciled with what its backend runs, pre-warming; on
    shutdown it drains, removes its containers and deregisters."""
    settings = app[SETTINGS]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        app[BACKEND] = app.get(BACKEND) or make_backend(settings)
        service = ManagerService(
            settings,
            manager_id=settings.effective_manager_id,
            backend=app[BACKEND],
            code_store=app[READER],
            redis=app[REDIS],
            http=http,
        )
        app[SERVICE] = service
        app[METRICS].watch(service)
        await service.heartbeat()
        if service.healthy:
            await service.reconcile()
        else:
            log.error("the %s backend is unhealthy at start-up", settings.backend)
        service.prewarm.start()
        log.info("manager %s up at %s", service.manager_id, service.url)
        yield
        await service.shutdown()


async def background_loops(app: web.Application) -> AsyncIterator[None]:
    """Heartbeats, and removing containers idle for longer than ``idle_ttl_s``."""
    settings, service = app[SETTINGS], app[SERVICE]
    tasks = [
        asyncio.create_task(every(settings.heartbeat_interval_s, "heartbeat", service.heartbeat)),
        asyncio.create_task(
            every(settings.reaper_interval_s, "idle reaper", lambda: service.reap_idle(time.time()))
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task

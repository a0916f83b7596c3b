"""Main's aiohttp application: ``create_app(settings)`` wires every client and loop.

Each resource has its own ``cleanup_ctx`` generator: it opens the resource, stores it under
its typed key (``main_server.state``) and closes it after ``yield``. aiohttp runs them in the
order ``create_app`` lists them and closes them in reverse, also when a later one fails to
start (https://docs.aiohttp.org/en/stable/web_advanced.html#cleanup-context).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from hotpool.main_server import state
from hotpool.main_server.async_api import routes as async_routes
from hotpool.main_server.async_consumer import AsyncConsumer
from hotpool.main_server.auth import AUTHENTICATOR, Authenticator, auth_middleware
from hotpool.main_server.container_client import ContainerClient
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invoker, answer_limit_bytes
from hotpool.main_server.keys_api import routes as key_routes
from hotpool.main_server.layers import LayerService
from hotpool.main_server.layers_api import routes as layer_routes
from hotpool.main_server.manager_client import ManagerClient
from hotpool.main_server.metrics import MainMetrics, MainSources
from hotpool.main_server.openapi import routes as openapi_routes
from hotpool.main_server.reaper import Reaper
from hotpool.main_server.routes import routes
from hotpool.main_server.state import (
    ASYNC_CONSUMER,
    ASYNC_QUEUE,
    CODE_STORE,
    FUNCTIONS,
    HTTP,
    INVOKER,
    LAYERS,
    LOGS,
    MANAGERS,
    METADATA,
    METRICS,
    POOL,
    REAPER,
    RECORDS,
    REDIS,
    REGISTRY,
    SETTINGS,
    WEB_COUNTERS,
    WS_HUB,
    WS_SOCKETS,
    WS_TOKENS,
)
from hotpool.main_server.web import routes as web_routes
from hotpool.main_server.ws import close_websockets
from hotpool.main_server.ws import routes as ws_routes
from hotpool.main_server.ws_connection import SocketTable
from hotpool.main_server.ws_hub import ConnectionHub
from hotpool.main_server.ws_management import routes as ws_management_routes
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.codestore import CodeStore
from hotpool.shared.execlog import ExecutionLog, RecordWriter
from hotpool.shared.http import client_context, error_middleware
from hotpool.shared.keystore import SqlKeyStore
from hotpool.shared.layer_store import SqlLayerStore
from hotpool.shared.metadata import MetadataStore
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import open_redis
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.settings import Settings
from hotpool.shared.stores import open_code_store, open_execution_log, open_metadata
from hotpool.shared.ws_token import ConnectionTokens

log = logging.getLogger(__name__)


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    metadata: MetadataStore | None = None,
    code_store: CodeStore | None = None,
    execution_log: ExecutionLog | None = None,
) -> web.Application:
    """Main's application; any client not passed in is built from ``settings``.

    Clients passed in are used as they are and left open: whoever made them closes them.
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        # route handlers enforce their own, smaller limits while streaming
        client_max_size=settings.max_package_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = MainMetrics(settings.metrics_max_functions)
    app[WEB_COUNTERS] = Counter()
    app[WS_SOCKETS] = SocketTable(settings.ws_max_connections)
    given = ((REDIS, redis), (METADATA, metadata), (CODE_STORE, code_store), (LOGS, execution_log))
    for key, client in given:
        if client is not None:
            app[key] = client
    app.cleanup_ctx.extend(
        [
            state_directory,
            redis_client,
            metadata_store,
            authentication,
            code_storage,
            execution_log_store,
            record_writer,
            http_session,
            placement,
            function_service,
            layer_service,
            invocations,
            asynchronous_invocations,
            websocket_connections,
            lease_reaper,
            metrics_sources,
        ]
    )
    app.add_routes(routes)
    app.add_routes(key_routes)
    app.add_routes(layer_routes)
    app.add_routes(openapi_routes)
    app.add_routes(web_routes)
    app.add_routes(async_routes)
    # before /ws/{function}: a path with "@connections" is the management API's
    app.add_routes(ws_management_routes)
    app.add_routes(ws_routes)
    # WebSockets close (and get their $disconnect) before aiohttp waits for its handlers
    app.on_shutdown.append(close_websockets)
    return app


async def state_directory(app: web.Application) -> AsyncIterator[None]:
    app[SETTINGS].state_dir.mkdir(parents=True, exist_ok=True)
    yield


# Redis: the warm pool, leases, rate limits and the change feeds
redis_client = client_context(REDIS, lambda app: open_redis(app[SETTINGS]), lambda r: r.aclose())


# functions, versions and API keys
metadata_store = client_context(
    METADATA, lambda app: open_metadata(app[SETTINGS]), lambda store: store.close()
)


async def authentication(app: web.Application) -> AsyncIterator[None]:
    """API keys, and the feed of revocations other replicas announce."""
    authenticator = Authenticator(
        app[SETTINGS], keystore=SqlKeyStore(app[METADATA]), redis=app[REDIS]
    )
    app[AUTHENTICATOR] = authenticator
    revocations = asyncio.create_task(authenticator.follow_revocations(), name="key-revocations")
    yield
    await _cancel(revocations)


# code packages: S3 or the local directory
code_storage = client_context(
    CODE_STORE, lambda app: open_code_store(app[SETTINGS]), lambda store: store.close()
)


# execution records: MongoDB or the local SQLite log
execution_log_store = client_context(
    LOGS, lambda app: open_execution_log(app[SETTINGS]), lambda logs: logs.close()
)


async def record_writer(app: web.Application) -> AsyncIterator[None]:
    """Batches execution records into the log off the hot path, spilling to disk."""
    settings = app[SETTINGS]
    writer = RecordWriter(
        app[LOGS],
        batch_size=settings.record_batch_size,
        flush_interval_s=settings.record_flush_interval_s,
        spill_dir=settings.state_dir / "spill",
    )
    writer.start()
    app[RECORDS] = writer
    yield
    await writer.close()


async def http_session(app: web.Application) -> AsyncIterator[None]:
    """For the Managers and containers' health checks; invocations go through ContainerClient."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=75.0),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )
    app[HTTP] = session
    yield
    await session.close()


async def placement(app: web.Application) -> AsyncIterator[None]:
    """The warm pool, the registry of Managers, and the client asking them for containers."""
    settings, redis = app[SETTINGS], app[REDIS]
    registry = ManagerRegistry(redis)
    app[POOL] = Pool(redis)
    app[REGISTRY] = registry
    app[MANAGERS] = ManagerClient(
        registry, app[HTTP], timeout_s=settings.cold_start_timeout_s, secret=settings.manager_secret
    )
    yield


async def invocations(app: web.Application) -> AsyncIterator[None]:
    """The invoke path, with its kept-alive connections to containers."""
    settings = app[SETTINGS]
    containers = ContainerClient(
        keepalive=settings.container_keepalive,
        max_answer_bytes=answer_limit_bytes(settings),
        stream_buffer_bytes=settings.stream_buffer_bytes,
    )
    app[INVOKER] = Invoker(
        settings,
        pool=app[POOL],
        managers=app[MANAGERS],
        containers=containers,
        records=app[RECORDS],
        versions=app[FUNCTIONS],
        # with /metrics off (port 0) nothing reads the counts: the invoke path skips them
        metrics=app[METRICS] if settings.metrics_port else None,
    )
    yield
    await containers.close()


async def asynchronous_invocations(app: web.Application) -> AsyncIterator[None]:
    """The asynchronous queue, and this replica's consumer of it.

    On shutdown the consumer stops reading and its events in flight get ``drain_timeout_s`` to
    end; what is still running then is cancelled, stays pending and another replica reruns it.
    """
    settings = app[SETTINGS]
    queue = AsyncQueue(app[REDIS])
    consumer = AsyncConsumer(settings, queue=queue, invoker=app[INVOKER], functions=app[FUNCTIONS])
    app[ASYNC_QUEUE] = queue
    app[ASYNC_CONSUMER] = consumer
    consuming = asyncio.create_task(consumer.run_forever(), name="async-consumer")
    yield
    await consumer.stop(consuming, settings.drain_timeout_s)


async def function_service(app: web.Application) -> AsyncIterator[None]:
    """Functions, with a cache that drops what other replicas announce they changed."""
    functions = FunctionService(
        app[SETTINGS],
        metadata=app[METADATA],
        code_store=app[CODE_STORE],
        pool=app[POOL],
        managers=app[MANAGERS],
        redis=app[REDIS],
    )
    app[FUNCTIONS] = functions
    changes = asyncio.create_task(functions.follow_changes(), name="function-changes")
    yield
    await _cancel(changes)


async def layer_service(app: web.Application) -> AsyncIterator[None]:
    """Layer versions, in the metadata database, with their packages in the code store."""
    layers = SqlLayerStore(app[METADATA])
    app[LAYERS] = LayerService(app[SETTINGS], layers=layers, code_store=app[CODE_STORE])
    yield


async def websocket_connections(app: web.Application) -> AsyncIterator[None]:
    """This replica's WebSocket connections, registered in Redis and reachable from every
    replica through its channel; the replica is known by its async consumer's name. The
    sockets close on shutdown (close_websockets); stopping the hub then closes any left and
    stops listening."""
    hub = ConnectionHub(app[SETTINGS], app[REDIS], replica_id=app[ASYNC_CONSUMER].name)
    app[WS_HUB] = hub
    app[WS_TOKENS] = ConnectionTokens(app[REDIS])
    await hub.start()
    yield
    await hub.stop()


async def lease_reaper(app: web.Application) -> AsyncIterator[None]:
    """Reclaims expired leases and orphans, in one Main replica at a time."""
    reaper = Reaper(
        app[SETTINGS],
        pool=app[POOL],
        registry=app[REGISTRY],
        managers=app[MANAGERS],
        http=app[HTTP],
    )
    app[REAPER] = reaper
    reaping = asyncio.create_task(reaper.run_forever(), name="lease-reaper")
    yield
    await _cancel(reaping)
    await reaper.close()


async def metrics_sources(app: web.Application) -> AsyncIterator[None]:
    """What a scrape of /metrics reads (the metrics port is opened by main_server.serve)."""
    # the scheduler's key comes with the scheduler; until then the scrape has no scheduler part
    scheduler_key = getattr(state, "SCHEDULER", None)
    app[METRICS].watch(
        MainSources(
            redis=app[REDIS],
            metadata=app[METADATA],
            pool=app[POOL],
            registry=app[REGISTRY],
            queue=app[ASYNC_QUEUE],
            records=app[RECORDS],
            websockets=lambda: len(app[WS_SOCKETS].live),
            scheduler=lambda: app.get(scheduler_key) if scheduler_key is not None else None,
        )
    )
    yield

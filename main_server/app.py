"""Main's aiohttp application: ``create_app(settings)`` wires every client and loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from hotpool.main_server.auth import AUTHENTICATOR, Authenticator, auth_middleware
from hotpool.main_server.container_client import ContainerClient
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invoker
from hotpool.main_server.keys_api import routes as key_routes
from hotpool.main_server.manager_client import ManagerClient
from hotpool.main_server.openapi import routes as openapi_routes
from hotpool.main_server.reaper import Reaper
from hotpool.main_server.routes import routes
from hotpool.main_server.state import FUNCTIONS, INVOKER, LOGS, POOL, REAPER, REDIS, REGISTRY
from hotpool.shared.codestore import CodeStore
from hotpool.shared.execlog import ExecutionLog, RecordWriter
from hotpool.shared.http import error_middleware
from hotpool.shared.keystore import SqlKeyStore
from hotpool.shared.metadata import MetadataStore
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import check_redis, make_redis
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.settings import Settings
from hotpool.shared.stores import open_code_store, open_execution_log, open_metadata

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
    """Main's application; any client not passed in is built from ``settings``."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        # route handlers enforce their own, smaller limits while streaming
        client_max_size=settings.max_package_bytes + 1024 * 1024,
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            await _open(app, stack)
            yield

    async def _open(app: web.Application, stack: contextlib.AsyncExitStack) -> None:
        """Open every client, each closed by ``stack`` in reverse order on shutdown."""
        client = redis if redis is not None else make_redis(settings)
        if redis is None:
            stack.push_async_callback(client.aclose)
            await check_redis(client, settings)
        meta = metadata
        if meta is None:
            meta = await open_metadata(settings)
            stack.push_async_callback(meta.close)
        keystore = SqlKeyStore(meta)
        authenticator = Authenticator(settings, keystore=keystore, redis=client)
        app[AUTHENTICATOR] = authenticator
        revocations = asyncio.create_task(
            authenticator.follow_revocations(), name="key-revocations"
        )
        stack.push_async_callback(_cancel, revocations)
        store = code_store
        if store is None:
            store = await open_code_store(settings)
            stack.push_async_callback(store.close)
        logs = execution_log
        if logs is None:
            logs = await open_execution_log(settings)
            stack.push_async_callback(logs.close)
        writer = RecordWriter(
            logs,
            batch_size=settings.record_batch_size,
            flush_interval_s=settings.record_flush_interval_s,
            spill_dir=settings.state_dir / "spill",
        )
        writer.start()
        stack.push_async_callback(writer.close)
        # the Manager and containers' health checks; invocations go through ContainerClient
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=75.0),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
        )
        stack.push_async_callback(http.close)
        pool = Pool(client)
        registry = ManagerRegistry(client)
        managers = ManagerClient(
            registry, http, timeout_s=settings.cold_start_timeout_s, secret=settings.manager_secret
        )
        app[REDIS] = client
        app[POOL] = pool
        app[REGISTRY] = registry
        app[LOGS] = logs
        functions = FunctionService(
            settings, metadata=meta, code_store=store, pool=pool, managers=managers, redis=client
        )
        app[FUNCTIONS] = functions
        containers = ContainerClient(keepalive=settings.container_keepalive)
        stack.push_async_callback(containers.close)
        app[INVOKER] = Invoker(
            settings, pool=pool, managers=managers, containers=containers, records=writer
        )
        follower = asyncio.create_task(functions.follow_changes(), name="function-changes")
        stack.push_async_callback(_cancel, follower)
        reaper = Reaper(settings, pool=pool, registry=registry, managers=managers, http=http)
        app[REAPER] = reaper
        stack.push_async_callback(reaper.close)
        reaping = asyncio.create_task(reaper.run_forever(), name="lease-reaper")
        stack.push_async_callback(_cancel, reaping)

    app.cleanup_ctx.append(lifecycle)
    app.add_routes(routes)
    app.add_routes(key_routes)
    app.add_routes(openapi_routes)
    return app

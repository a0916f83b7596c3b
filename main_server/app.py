"""Main's aiohttp application: ``create_app(settings)`` wires every client and loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from main_server.functions import FunctionService
from main_server.invoke import Invoker
from main_server.manager_client import ManagerClient
from main_server.registry import ManagerRegistry
from main_server.routes import routes
from main_server.state import FUNCTIONS, INVOKER, LOGS, POOL, REDIS, REGISTRY
from shared.codestore import CodeStore, LocalCodeStore
from shared.execlog import ExecutionLog, RecordWriter, SqliteExecutionLog
from shared.http import error_middleware
from shared.metadata import MetadataStore, SqlMetadataStore
from shared.pool import Pool
from shared.redis_conn import make_redis
from shared.settings import Settings

log = logging.getLogger(__name__)


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
        middlewares=[error_middleware],
        # route handlers enforce their own, smaller limits while streaming
        client_max_size=settings.max_package_bytes + 1024 * 1024,
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        client = redis if redis is not None else make_redis(settings)
        meta = metadata
        if meta is None:
            sql = SqlMetadataStore.from_url(settings.effective_database_url)
            await sql.create_schema()
            meta = sql
        store = code_store or LocalCodeStore(settings.code_dir)
        logs = execution_log
        if logs is None:
            sqlite_log = SqliteExecutionLog(settings.state_dir / "executions.db")
            await sqlite_log.open()
            logs = sqlite_log
        writer = RecordWriter(logs)
        writer.start()
        # containers are called directly; keep their connections open between calls
        # (ADR-000's TIME_WAIT pile-up came from one new connection per call)
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=75.0),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
        )
        pool = Pool(client)
        registry = ManagerRegistry(client)
        managers = ManagerClient(registry, http, timeout_s=settings.cold_start_timeout_s)
        app[REDIS] = client
        app[POOL] = pool
        app[REGISTRY] = registry
        app[LOGS] = logs
        app[FUNCTIONS] = FunctionService(
            settings, metadata=meta, code_store=store, pool=pool, managers=managers
        )
        app[INVOKER] = Invoker(settings, pool=pool, managers=managers, http=http, records=writer)
        try:
            yield
        finally:
            await writer.close()
            await http.close()
            if execution_log is None:
                await logs.close()
            if metadata is None:
                await meta.close()
            if code_store is None:
                await store.close()
            if redis is None:
                await client.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.add_routes(routes)
    return app

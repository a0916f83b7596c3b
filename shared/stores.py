"""Building the stores a service needs from its settings: real adapters where configured,
embedded ones otherwise. Each builder returns an opened store and fails with one line naming
the setting when the store cannot be reached."""

from __future__ import annotations

import logging

from hotpool.shared.codestore import CodeStore, LocalCodeStore
from hotpool.shared.execlog import SECONDS_PER_DAY, ExecutionLog, SqliteExecutionLog
from hotpool.shared.metadata import SqlMetadataStore
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)


async def open_code_store(settings: Settings) -> CodeStore:
    """S3 when ``HOTPOOL_S3_BUCKET`` is set, else the local directory."""
    if not settings.s3_bucket:
        return LocalCodeStore(settings.code_dir)
    from hotpool.shared.s3_codestore import S3CodeStore

    store = S3CodeStore(
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region or None,
    )
    await store.open()
    try:
        await store.check()
    except BaseException:
        await store.close()
        raise
    return store


async def open_execution_log(settings: Settings) -> ExecutionLog:
    """MongoDB when ``HOTPOOL_MONGO_URL`` is set, else SQLite in the state directory."""
    if settings.mongo_url:
        from hotpool.shared.mongo_log import MongoExecutionLog

        mongo = MongoExecutionLog(
            settings.mongo_url,
            database=settings.mongo_database,
            retention_days=settings.log_retention_days,
        )
        # an unreachable MongoDB does not stop Main: records spill to disk and are
        # replayed when it is back
        try:
            await mongo.open()
        except Exception as exc:
            log.warning("MongoDB (HOTPOOL_MONGO_URL) unreachable at start-up: %s", exc)
        return mongo
    sqlite = SqliteExecutionLog(
        settings.state_dir / "executions.db",
        retention_s=settings.log_retention_days * SECONDS_PER_DAY,
    )
    await sqlite.open()
    return sqlite


async def open_metadata(settings: Settings) -> SqlMetadataStore:
    """The metadata store at the latest schema.

    The embedded SQLite default migrates itself; a production database must already be at
    the latest revision (``hotpool migrate``), else start-up stops with a message saying so.
    """
    from hotpool.shared.schema import check_schema, migrate

    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        await migrate(url)
    else:
        await check_schema(url)
    return SqlMetadataStore.from_url(url, pool_size=settings.database_pool_size)

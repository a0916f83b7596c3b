"""Function metadata: the ``MetadataStore`` port and its SQLAlchemy adapter.

The one adapter serves both the embedded default (SQLite through aiosqlite) and production
(MySQL through asyncmy): the URL decides. Versions are immutable rows; a function row keeps the
latest version number. Deleting a function hides it but keeps its rows, so a function created
again under the same name continues the version sequence: a version number is never reused,
which keeps every pool list (one per name and version) tied to exactly one code package.

The tables are made by the Alembic migrations in ``migrations/`` (``shared.schema``, ``hotpool
migrate``); ``create_schema`` only serves tests that need the tables without their history. A
database failure leaves every method as ``StoreUnavailable``; only an ``IntegrityError`` passes.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

# the database helpers lived here first; keystore, schema and tests import them from here too
from hotpool.shared.database import (  # noqa: F401
    DATABASE_URL_SETTING,
    as_utc,
    db_errors,
    describe_db_error,
    open_engine,
    safe_url,
    translate_errors,
)
from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.layer_rows import resolve_layers, unused_packages
from hotpool.shared.models import (
    DEFAULT_NAMESPACE,
    FunctionConfig,
    FunctionVersion,
    split_qualified,
)

# the tables lived here first; keystore, the migrations and tests import them from here too
from hotpool.shared.tables import (  # noqa: F401
    Base,
    FunctionRow,
    KeyRow,
    LayerVersionRow,
    ScheduleRow,
    UserRow,
    VersionRow,
)

# a deploy that lost a race for a version number runs again, at most this often in all
CREATE_ATTEMPTS = 5
# and first waits a random time up to this, times its attempt number
RACE_BACKOFF_S = 0.02
MYSQL_DEADLOCK = 1213  # ER_LOCK_DEADLOCK


class MetadataStore(Protocol):
    """Functions and their immutable versions."""

    async def create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion: ...

    async def latest(self, name: str) -> FunctionVersion: ...

    async def list_functions(self, namespace: str | None = None) -> list[FunctionVersion]: ...

    async def delete(self, name: str) -> FunctionVersion: ...

    async def prune(self, name: str, keep: int) -> list[str]: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query (/readyz)."""
        ...

    async def close(self) -> None: ...


def lost_race(exc: DBAPIError) -> bool:
    """Whether ``exc`` ended a transaction that lost a race and can simply be run again."""
    if isinstance(exc, IntegrityError):  # another deploy took the same version number
        return True
    # MySQL: the first deploys of a new name each lock the gap where its row would go, then
    # wait for each other to insert there; InnoDB rolls one back as a deadlock victim
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return isinstance(exc, OperationalError) and code == MYSQL_DEADLOCK


def _now() -> datetime:
    return datetime.now(UTC)


def _to_model(name: str, row: VersionRow) -> FunctionVersion:
    created = as_utc(row.created_at)
    return FunctionVersion(
        name=name,
        version=row.version,
        code_sha256=row.code_sha256,
        code_key=row.code_key,
        config=FunctionConfig.from_dict(
            {
                **(row.options or {}),
                "runtime": row.runtime,
                "handler": row.handler,
                "memory_mb": row.memory_mb,
                "timeout_s": row.timeout_s,
                "max_concurrency": row.max_concurrency,
                "env": dict(row.env),
            }
        ),
        created_at=created,
        layer_keys=tuple(row.layer_keys or ()),
    )


class SqlMetadataStore:
    """``MetadataStore`` over SQLAlchemy async: SQLite (aiosqlite) or MySQL (asyncmy)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def sessions(self) -> async_sessionmaker:
        return self._sessions

    @classmethod
    def from_url(cls, url: str, **engine_kwargs: Any) -> SqlMetadataStore:
        """A store on the database at ``url``; ``engine_kwargs`` go to ``create_async_engine``."""
        return cls(open_engine(url, pool_pre_ping=True, **engine_kwargs))

    @translate_errors
    async def create_schema(self) -> None:
        """Create missing tables (the embedded default; production runs migrations)."""
        async with self._engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    @translate_errors
    async def create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return await self._create_version(name, config, code_sha256, code_key)
            except DBAPIError as exc:
                if not lost_race(exc):
                    raise
                # two deploys of one name raced; the winner has committed or soon will:
                # let it finish, then take the next number
                await asyncio.sleep(random.uniform(0, RACE_BACKOFF_S * (attempt + 1)))
        raise StoreUnavailable(f"could not create a new version of {name!r}; try again")

    async def _create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion:
        now = _now()
        async with self._sessions.begin() as session:
            fn = await session.scalar(
                select(FunctionRow).where(FunctionRow.name == name).with_for_update()
            )
            if fn is None:
                fn = FunctionRow(name=name, latest_version=0, created_at=now, updated_at=now)
                session.add(fn)
                await session.flush()
            fn.latest_version += 1
            fn.updated_at = now
            fn.deleted_at = None
            # written before the layers are read: see resolve_layers
            await session.flush()
            layer_keys = await resolve_layers(session, split_qualified(name)[0], config.layers)
            row = VersionRow(
                function_id=fn.id,
                version=fn.latest_version,
                code_sha256=code_sha256,
                code_key=code_key,
                runtime=config.runtime,
                handler=config.handler,
                memory_mb=config.memory_mb,
                timeout_s=config.timeout_s,
                max_concurrency=config.max_concurrency,
                env=dict(config.env),
                options=config.options(),
                layer_keys=layer_keys or None,
                created_at=now,
            )
            session.add(row)
        return _to_model(name, row)

    @translate_errors
    async def latest(self, name: str) -> FunctionVersion:
        async with self._sessions() as session:
            result = await session.execute(
                select(VersionRow)
                .join(FunctionRow, FunctionRow.id == VersionRow.function_id)
                .where(
                    FunctionRow.name == name,
                    FunctionRow.deleted_at.is_(None),
                    VersionRow.version == FunctionRow.latest_version,
                )
            )
            row = result.scalar_one_or_none()
        if row is None:
            raise NotFound(f"function {name!r} does not exist")
        return _to_model(name, row)

    @translate_errors
    async def list_functions(self, namespace: str | None = None) -> list[FunctionVersion]:
        """Every function, or those of one namespace (names are namespace-qualified)."""
        query = (
            select(FunctionRow.name, VersionRow)
            .join(VersionRow, FunctionRow.id == VersionRow.function_id)
            .where(
                FunctionRow.deleted_at.is_(None),
                VersionRow.version == FunctionRow.latest_version,
            )
            .order_by(FunctionRow.name)
        )
        if namespace == DEFAULT_NAMESPACE:
            query = query.where(FunctionRow.name.not_like("%.%"))
        elif namespace is not None:
            query = query.where(FunctionRow.name.startswith(f"{namespace}.", autoescape=True))
        async with self._sessions() as session:
            result = await session.execute(query)
            return [_to_model(name, row) for name, row in result.all()]

    @translate_errors
    async def delete(self, name: str) -> FunctionVersion:
        latest = await self.latest(name)
        async with self._sessions.begin() as session:
            fn = await session.scalar(select(FunctionRow).where(FunctionRow.name == name))
            if fn is None or fn.deleted_at is not None:
                raise NotFound(f"function {name!r} does not exist")
            fn.deleted_at = _now()
            # its schedules go with it, in one transaction (shared.schedule_store)
            await session.execute(
                delete(ScheduleRow).where(
                    ScheduleRow.namespace == split_qualified(name)[0], ScheduleRow.function == name
                )
            )
        return latest

    @translate_errors
    async def prune(self, name: str, keep: int) -> list[str]:
        """Forget all but the newest ``keep`` versions of ``name`` (all of a deleted function
        with ``keep=0``); return the code keys that no version of any function uses any more."""
        async with self._sessions.begin() as session:
            fn = await session.scalar(
                select(FunctionRow).where(FunctionRow.name == name).with_for_update()
            )
            if fn is None:
                return []
            old = (
                await session.execute(
                    select(VersionRow.id, VersionRow.code_key, VersionRow.layer_keys).where(
                        VersionRow.function_id == fn.id,
                        VersionRow.version <= fn.latest_version - keep,
                    )
                )
            ).all()
            if not old:
                return []
            await session.execute(delete(VersionRow).where(VersionRow.id.in_([r.id for r in old])))
            # a deleted layer version's package lives on while a version uses it
            candidates = {r.code_key for r in old} | {k for r in old for k in r.layer_keys or ()}
            return sorted(await unused_packages(session, candidates))

    @translate_errors
    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @translate_errors
    async def close(self) -> None:
        await self._engine.dispose()

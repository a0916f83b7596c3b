"""Function metadata: the ``MetadataStore`` port and its SQLAlchemy adapter.

The one adapter serves both the embedded default (SQLite through aiosqlite) and production
(MySQL through asyncmy): the URL decides. Versions are immutable rows; a function row keeps the
latest version number. Deleting a function hides it but keeps its rows, so a function created
again under the same name continues the version sequence: a version number is never reused,
which keeps every pool list (one per name and version) tied to exactly one code package.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.errors import NotFound, StoreUnavailable
from shared.models import FunctionConfig, FunctionVersion


class MetadataStore(Protocol):
    """Functions and their immutable versions."""

    async def create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion: ...

    async def latest(self, name: str) -> FunctionVersion: ...

    async def list_functions(self) -> list[FunctionVersion]: ...

    async def delete(self, name: str) -> FunctionVersion: ...

    async def close(self) -> None: ...


class Base(DeclarativeBase):
    pass


class FunctionRow(Base):
    __tablename__ = "functions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VersionRow(Base):
    __tablename__ = "function_versions"
    __table_args__ = (UniqueConstraint("function_id", "version", name="uq_function_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    function_id: Mapped[int] = mapped_column(
        ForeignKey("functions.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    code_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    code_key: Mapped[str] = mapped_column(String(255), nullable=False)
    runtime: Mapped[str] = mapped_column(String(32), nullable=False)
    handler: Mapped[str] = mapped_column(String(255), nullable=False)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False)
    timeout_s: Mapped[float] = mapped_column(Float, nullable=False)
    env: Mapped[dict] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _to_model(name: str, row: VersionRow) -> FunctionVersion:
    created = row.created_at
    if created.tzinfo is None:  # SQLite returns naive datetimes
        created = created.replace(tzinfo=UTC)
    return FunctionVersion(
        name=name,
        version=row.version,
        code_sha256=row.code_sha256,
        code_key=row.code_key,
        config=FunctionConfig(
            runtime=row.runtime,
            handler=row.handler,
            memory_mb=row.memory_mb,
            timeout_s=row.timeout_s,
            env=dict(row.env),
        ),
        created_at=created,
    )


class SqlMetadataStore:
    """``MetadataStore`` over SQLAlchemy async: SQLite (aiosqlite) or MySQL (asyncmy)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> SqlMetadataStore:
        return cls(create_async_engine(url, pool_pre_ping=True))

    async def create_schema(self) -> None:
        """Create missing tables (the embedded default; production runs migrations)."""
        async with self._engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion:
        for _attempt in range(3):
            try:
                return await self._create_version(name, config, code_sha256, code_key)
            except IntegrityError:
                # two deploys of one name raced for the same version number; take the next
                continue
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
            row = VersionRow(
                function_id=fn.id,
                version=fn.latest_version,
                code_sha256=code_sha256,
                code_key=code_key,
                runtime=config.runtime,
                handler=config.handler,
                memory_mb=config.memory_mb,
                timeout_s=config.timeout_s,
                env=dict(config.env),
                created_at=now,
            )
            session.add(row)
        return _to_model(name, row)

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

    async def list_functions(self) -> list[FunctionVersion]:
        async with self._sessions() as session:
            result = await session.execute(
                select(FunctionRow.name, VersionRow)
                .join(VersionRow, FunctionRow.id == VersionRow.function_id)
                .where(
                    FunctionRow.deleted_at.is_(None),
                    VersionRow.version == FunctionRow.latest_version,
                )
                .order_by(FunctionRow.name)
            )
            return [_to_model(name, row) for name, row in result.all()]

    async def delete(self, name: str) -> FunctionVersion:
        latest = await self.latest(name)
        async with self._sessions.begin() as session:
            fn = await session.scalar(select(FunctionRow).where(FunctionRow.name == name))
            if fn is None or fn.deleted_at is not None:
                raise NotFound(f"function {name!r} does not exist")
            fn.deleted_at = _now()
        return latest

    async def close(self) -> None:
        await self._engine.dispose()

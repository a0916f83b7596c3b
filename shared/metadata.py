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
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.models import DEFAULT_NAMESPACE, FunctionConfig, FunctionVersion
from hotpool.shared.settings import SettingsError

DATABASE_URL_SETTING = "HOTPOOL_DATABASE_URL"
# a deploy that lost a race for a version number runs again, at most this often in all
CREATE_ATTEMPTS = 5
# and first waits a random time up to this, times its attempt number
RACE_BACKOFF_S = 0.02
MYSQL_DEADLOCK = 1213  # ER_LOCK_DEADLOCK

# Explicit constraint names, so the models, the migrations and every backend agree on them and a
# later migration can drop one by name (SQLite's batch mode needs that).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    # no "pk": MySQL names every primary key PRIMARY and answers any other name with a warning
}

# MySQL's DATETIME keeps whole seconds and its FLOAT is single precision; ask for the
# microseconds and the doubles SQLite keeps, so a row reads back exactly as it was written.
_Timestamp = DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)


class MetadataStore(Protocol):
    """Functions and their immutable versions."""

    async def create_version(
        self, name: str, config: FunctionConfig, code_sha256: str, code_key: str
    ) -> FunctionVersion: ...

    async def latest(self, name: str) -> FunctionVersion: ...

    async def list_functions(self, namespace: str | None = None) -> list[FunctionVersion]: ...

    async def delete(self, name: str) -> FunctionVersion: ...

    async def prune(self, name: str, keep: int) -> list[str]: ...

    async def close(self) -> None: ...


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FunctionRow(Base):
    __tablename__ = "functions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # unique: the index every lookup by name uses (uq_functions_name)
    # namespace-qualified: "name" in the default namespace, "namespace.name" elsewhere
    name: Mapped[str] = mapped_column(String(127), unique=True, nullable=False)
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(_Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(_Timestamp, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(_Timestamp, nullable=True)


class VersionRow(Base):
    __tablename__ = "function_versions"
    # Also the index of the hot-path lookup (function_id, version), and the one MySQL needs for
    # the foreign key: a second index over the same columns would only slow down writes.
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
    timeout_s: Mapped[float] = mapped_column(Double, nullable=False)
    max_concurrency: Mapped[int] = mapped_column(Integer, nullable=False, server_default="100")
    env: Mapped[dict] = mapped_column(JSON, nullable=False)
    # the settings added since (FunctionConfig.options): layers, logging, the web route
    options: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(_Timestamp, nullable=False)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(127), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(_Timestamp, nullable=False)


class KeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    # only a hash is stored: the key itself is shown once, at creation
    secret_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    namespaces: Mapped[list] = mapped_column(JSON, nullable=False)
    scopes: Mapped[str] = mapped_column(String(255), nullable=False)
    function: Mapped[str | None] = mapped_column(String(127), nullable=True)
    rate_per_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    description: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    created_at: Mapped[datetime] = mapped_column(_Timestamp, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(_Timestamp, nullable=True)


def safe_url(url: str) -> str:
    """``url`` with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def describe_db_error(exc: BaseException) -> str:
    """The driver's own words for a database failure, on one line, without SQL or links."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    args = cause.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (error {args[0]})"  # the MySQL drivers' (code, message)
    elif isinstance(cause, SQLAlchemyError) and len(args) == 1:
        text = str(args[0])  # str() would add a link to the SQLAlchemy docs
    else:
        text = str(cause)
    text = " ".join(text.split()).rstrip(".") or type(cause).__name__
    return text[:300]


def open_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; a malformed URL or a missing driver is a ``SettingsError``."""
    try:
        make_url(url)
    except ArgumentError:
        # the message does not repeat the URL: it may hold a password
        raise SettingsError(
            f"{DATABASE_URL_SETTING} is not a valid database URL; use "
            "mysql+asyncmy://user:password@host:3306/db or sqlite+aiosqlite:///path"
        ) from None
    try:
        return create_async_engine(url, **kwargs)
    except (ArgumentError, InvalidRequestError, ImportError) as exc:
        raise SettingsError(
            f"{DATABASE_URL_SETTING}={safe_url(url)} is not usable: {describe_db_error(exc)}; "
            "use mysql+asyncmy://user:password@host:3306/db or sqlite+aiosqlite:///path"
        ) from None


_P = ParamSpec("_P")
_T = TypeVar("_T")

# DBAPIError covers OperationalError, InterfaceError and ProgrammingError (a missing table is
# one); DisconnectionError and PoolTimeout (no free connection in time) come from the pool;
# OSError covers ConnectionError
_UNAVAILABLE = (DBAPIError, DisconnectionError, PoolTimeout, OSError)


@contextlib.contextmanager
def db_errors(what: str = "the metadata database is unreachable") -> Iterator[None]:
    """Let a database failure leave the block as ``StoreUnavailable`` (``"<what>: <the
    driver's words>"``), chained to its cause. An ``IntegrityError`` passes unchanged: a
    constraint said no, a fact about the data, not about the database."""
    try:
        yield
    except IntegrityError:
        raise
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"{what}: {describe_db_error(exc)}") from exc


def translate_errors(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Run the store method ``method`` inside ``db_errors()``."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with db_errors():
            return await method(*args, **kwargs)

    return wrapper


def _lost_race(exc: DBAPIError) -> bool:
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
    created = row.created_at
    if created.tzinfo is None:  # SQLite returns naive datetimes
        created = created.replace(tzinfo=UTC)
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
                if not _lost_race(exc):
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
                    select(VersionRow.id, VersionRow.code_key).where(
                        VersionRow.function_id == fn.id,
                        VersionRow.version <= fn.latest_version - keep,
                    )
                )
            ).all()
            if not old:
                return []
            await session.execute(delete(VersionRow).where(VersionRow.id.in_([r.id for r in old])))
            # packages are stored once per content: another version may share one
            candidates = {r.code_key for r in old}
            used = await session.scalars(
                select(VersionRow.code_key).where(VersionRow.code_key.in_(candidates))
            )
            return sorted(candidates - set(used))

    @translate_errors
    async def close(self) -> None:
        await self._engine.dispose()

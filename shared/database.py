"""The metadata database itself: opening an engine, and its failures as hotpool's errors.

Shared by every store on that database (``shared.metadata``, ``shared.keystore``,
``shared.layer_store``) and by the migrations (``shared.schema``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InvalidRequestError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hotpool.shared.errors import StoreUnavailable
from hotpool.shared.settings import SettingsError

DATABASE_URL_SETTING = "HOTPOOL_DATABASE_URL"


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite returns naive ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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

"""The schema of the metadata database: Alembic migrations run from code, no alembic.ini.

The same revisions (the ``migrations`` package) serve MySQL/MariaDB in production and SQLite in
the embedded default. ``migrate`` brings a database to the newest revision (``hotpool migrate``);
``check_schema`` lets a service refuse to start on a database that is behind.

Alembic's commands are synchronous; they run inside ``AsyncConnection.run_sync`` on a connection
handed to ``migrations/env.py`` (Alembic's connection-sharing recipe for asyncio), so they work
from within a running event loop. Alembic keeps its migration context in a module-level proxy:
run one command at a time in a process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from hotpool import migrations
from hotpool.shared.errors import SchemaOutOfDate, StoreUnavailable
from hotpool.shared.metadata import DATABASE_URL_SETTING, describe_db_error, open_engine, safe_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent

_T = TypeVar("_T")


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url``, built without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # new revisions are named like the first: 0002_users.py
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # the options go through ConfigParser interpolation: a percent-encoded password keeps its '%'
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def head_revision() -> str:
    """The newest revision of the migrations this hotpool ships."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


async def migrate(url: str) -> str:
    """Upgrade the database at ``url`` to the newest revision and return that revision."""

    def upgrade(connection: Connection, config: Config) -> str | None:
        command.upgrade(config, "head")
        return MigrationContext.configure(connection).get_current_revision()

    revision = await _run(url, "migrating", upgrade)
    assert revision is not None
    log.info("database %s at revision %s", safe_url(url), revision)
    return revision


async def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at ``url`` to ``revision`` (``base``: no hotpool tables at all)."""

    def run(connection: Connection, config: Config) -> None:
        command.downgrade(config, revision)

    await _run(url, "downgrading", run)
    log.info("database %s downgraded to %s", safe_url(url), revision)


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None if it was never migrated."""

    def read(connection: Connection, config: Config) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await _run(url, "reading the schema revision of", read)


async def check_schema(url: str) -> None:
    """Raise ``SchemaOutOfDate`` unless the database at ``url`` is at the newest revision."""
    current = await current_revision(url)
    needed = head_revision()
    if current is not None and current not in {s.revision for s in _scripts().walk_revisions()}:
        # a newer hotpool migrated this database: 'hotpool migrate' would not help
        raise SchemaOutOfDate(
            f"database schema is at revision {current}, which this hotpool does not know "
            f"(it needs {needed}); run the hotpool version that migrated it, or a newer one",
            current=current,
            needed=needed,
        )
    if current != needed:
        raise SchemaOutOfDate(
            f"database schema is at revision {current or 'none'} but hotpool needs {needed}; "
            "run 'hotpool migrate'",
            current=current,
            needed=needed,
        )


async def _run(url: str, doing: str, fn: Callable[[Connection, Config], _T]) -> _T:
    """Run ``fn`` with a sync connection to ``url`` in one transaction, translating failures."""
    config = alembic_config(url)
    engine = open_engine(url, poolclass=NullPool)
    try:
        try:
            connection = await engine.connect()
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable(
                f"the database at {DATABASE_URL_SETTING}={safe_url(url)} is unreachable: "
                f"{describe_db_error(exc)}"
            ) from exc

        def call(sync_connection: Connection) -> _T:
            config.attributes["connection"] = sync_connection  # read by migrations/env.py
            return fn(sync_connection, config)

        try:
            async with connection.begin():
                return await connection.run_sync(call)
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable(
                f"{doing} the database at {DATABASE_URL_SETTING}={safe_url(url)} failed: "
                f"{describe_db_error(exc)}"
            ) from exc
        except CommandError as exc:  # e.g. the database is at a revision this hotpool lacks
            raise SchemaOutOfDate(
                f"{doing} the database at {DATABASE_URL_SETTING}={safe_url(url)} failed: {exc}"
            ) from exc
        finally:
            await connection.close()
    finally:
        await engine.dispose()

"""The Alembic environment of hotpool's metadata database (MySQL/MariaDB or SQLite).

``shared.schema`` hands over an open connection in ``config.attributes["connection"]``, which
is Alembic's connection-sharing recipe for asyncio: the migrations run on the caller's event
loop, inside ``AsyncConnection.run_sync``. Run by the plain ``alembic`` command instead, this
opens its own async engine from the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from hotpool.shared.metadata import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    # render_as_batch: SQLite can ALTER almost nothing, so autogenerate writes changes as batch
    # operations (copy the table) there, and as plain ALTERs on MySQL
    context.configure(target_metadata=target_metadata, render_as_batch=True, **kwargs)


def run_migrations_offline() -> None:
    """Print the SQL of the migrations (``alembic upgrade --sql``) instead of running it."""
    _configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())
    else:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

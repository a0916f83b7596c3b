"""Tests of shared.schema: the Alembic migrations on SQLite and MariaDB, and ``hotpool migrate``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hotpool.main_server.cli import main
from hotpool.shared.errors import SchemaOutOfDate, StoreUnavailable
from hotpool.shared.metadata import Base
from hotpool.shared.schema import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    migrate,
)
from hotpool.shared.settings import SettingsError

HOTPOOL_TABLES = {
    "functions", "function_versions", "users", "api_keys", "layer_versions", "schedules",
}  # fmt: skip
UNREACHABLE_URL = "mysql+asyncmy://root:hunter2@127.0.0.1:1/x"  # nothing listens on port 1


async def on_connection(url: str, fn: Callable[[Connection], Any]) -> Any:
    """``fn(connection)`` on a sync connection to ``url``."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def tables(url: str) -> set[str]:
    return await on_connection(url, lambda c: set(sqlalchemy.inspect(c).get_table_names()))


@pytest.mark.contract
async def test_migrate_creates_the_tables_and_their_constraints(database_url):
    revision = await migrate(database_url)

    assert revision == head_revision() == "0006"
    assert await current_revision(database_url) == revision

    def describe(conn: Connection) -> dict[str, Any]:
        inspector = sqlalchemy.inspect(conn)
        return {
            "tables": set(inspector.get_table_names()),
            "unique": {
                (table, uc["name"], tuple(uc["column_names"]))
                for table in HOTPOOL_TABLES
                for uc in inspector.get_unique_constraints(table)
            },
            "fks": inspector.get_foreign_keys("function_versions"),
        }

    found = await on_connection(database_url, describe)

    assert found["tables"] == HOTPOOL_TABLES | {"alembic_version"}
    assert found["unique"] == {
        ("functions", "uq_functions_name", ("name",)),
        ("function_versions", "uq_function_version", ("function_id", "version")),
        ("users", "uq_users_name", ("name",)),
        ("api_keys", "uq_api_keys_key_id", ("key_id",)),
        ("layer_versions", "uq_layer_version", ("namespace", "name", "version")),
        ("schedules", "uq_schedule", ("namespace", "function", "name")),
    }
    [fk] = found["fks"]  # of function_versions
    assert fk["name"] == "fk_function_versions_function_id_functions"
    assert (fk["constrained_columns"], fk["referred_table"]) == (["function_id"], "functions")
    assert fk["referred_columns"] == ["id"]
    assert fk["options"].get("ondelete") == "CASCADE"


@pytest.mark.contract
async def test_the_hot_path_lookup_uses_the_unique_indexes(database_url):
    # the query of SqlMetadataStore.latest: one function by name, then one of its versions
    await migrate(database_url)
    sqlite = database_url.startswith("sqlite")
    explain = "EXPLAIN QUERY PLAN" if sqlite else "EXPLAIN"
    query = sqlalchemy.text(
        f"{explain} SELECT v.* FROM function_versions v "
        "JOIN functions f ON f.id = v.function_id "
        "WHERE f.name = 'echo' AND f.deleted_at IS NULL AND v.version = f.latest_version"
    )

    def plan(conn: Connection) -> list[dict[str, Any]]:
        # MySQL plans a lookup in an empty table as "impossible": give it rows to look up
        # (rolled back at the end)
        now = "2025-01-01 00:00:00"
        for fid, name in ((1, "echo"), (2, "other")):
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO functions (id, name, latest_version, created_at, updated_at) "
                    "VALUES (:fid, :name, 1, :now, :now)"
                ),
                {"fid": fid, "name": name, "now": now},
            )
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO function_versions (function_id, version, code_sha256, code_key, "
                    "runtime, handler, memory_mb, timeout_s, env, created_at) "
                    "VALUES (:fid, 1, 'x', 'x.zip', 'python', 'main.handler', 128, 30, '{}', :now)"
                ),
                {"fid": fid, "now": now},
            )
        return [dict(row) for row in conn.execute(query).mappings()]

    rows = await on_connection(database_url, plan)

    if sqlite:
        details = " | ".join(row["detail"] for row in rows)
        assert "SEARCH f USING INDEX" in details and "(name=?)" in details, details
        assert "SEARCH v USING INDEX" in details, details
        assert "(function_id=? AND version=?)" in details, details
    else:
        keys = {row["table"]: row["key"] for row in rows}
        assert keys == {"f": "uq_functions_name", "v": "uq_function_version"}, rows


@pytest.mark.contract
async def test_migrating_twice_is_a_no_op(database_url):
    first = await migrate(database_url)

    second = await migrate(database_url)

    assert second == first == head_revision()
    assert await tables(database_url) == HOTPOOL_TABLES | {"alembic_version"}


@pytest.mark.contract
async def test_check_schema_passes_at_head(database_url):
    await migrate(database_url)

    await check_schema(database_url)


@pytest.mark.contract
async def test_check_schema_of_an_empty_database_asks_for_hotpool_migrate(database_url):
    assert await current_revision(database_url) is None

    with pytest.raises(SchemaOutOfDate) as info:
        await check_schema(database_url)

    assert info.value.status == 503
    assert info.value.message == (
        f"database schema is at revision none but hotpool needs {head_revision()}; "
        "run 'hotpool migrate'"
    )


@pytest.mark.contract
async def test_downgrade_to_base_removes_the_tables_and_upgrade_restores_them(database_url):
    await migrate(database_url)

    await downgrade(database_url)

    assert await current_revision(database_url) is None
    assert await tables(database_url) == {"alembic_version"}  # Alembic keeps its own, empty
    with pytest.raises(SchemaOutOfDate):
        await check_schema(database_url)

    assert await migrate(database_url) == head_revision()
    assert HOTPOOL_TABLES <= await tables(database_url)
    await check_schema(database_url)


@pytest.mark.contract
async def test_migrated_schema_matches_the_models(database_url):
    await migrate(database_url)

    def differences(conn: Connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)

    # nothing to filter: the models spell MySQL's types out (DATETIME(6), DOUBLE) and
    # SQLAlchemy reflects MariaDB's JSON (a LONGTEXT with a json_valid check) as JSON
    assert await on_connection(database_url, differences) == []


@pytest.mark.integration
async def test_mariadb_timestamps_keep_microseconds(mariadb_url):
    # compare_metadata does not compare a DATETIME's fractional-second precision
    await migrate(mariadb_url)

    def precisions(conn: Connection) -> dict[str, int | None]:
        inspector = sqlalchemy.inspect(conn)
        return {
            f"{table}.{col['name']}": getattr(col["type"], "fsp", None)
            for table in HOTPOOL_TABLES
            for col in inspector.get_columns(table)
            if col["name"].endswith("_at")
        }

    assert await on_connection(mariadb_url, precisions) == {
        "functions.created_at": 6,
        "functions.updated_at": 6,
        "functions.deleted_at": 6,
        "layer_versions.created_at": 6,
        "layer_versions.deleted_at": 6,
        "users.created_at": 6,
        "api_keys.created_at": 6,
        "api_keys.revoked_at": 6,
        "function_versions.created_at": 6,
        "schedules.created_at": 6,
        "schedules.updated_at": 6,
    }


@pytest.mark.contract
async def test_a_database_from_a_newer_hotpool_is_refused_without_a_traceback(database_url):
    await migrate(database_url)

    def stamp_unknown(conn: Connection) -> None:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'f00d'"))
        conn.commit()

    await on_connection(database_url, stamp_unknown)

    with pytest.raises(SchemaOutOfDate) as info:
        await check_schema(database_url)
    assert "revision f00d, which this hotpool does not know" in info.value.message
    assert "hotpool migrate" not in info.value.message
    with pytest.raises(SchemaOutOfDate) as info:
        await migrate(database_url)
    assert "f00d" in info.value.message


OPERATIONS = {
    "migrate": migrate,
    "downgrade": downgrade,
    "current_revision": current_revision,
    "check_schema": check_schema,
}


@pytest.mark.unit
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_unreachable_database_is_store_unavailable_naming_the_setting(operation):
    with pytest.raises(StoreUnavailable) as info:
        await OPERATIONS[operation](UNREACHABLE_URL)

    message = info.value.message
    assert message.startswith(
        "the database at HOTPOOL_DATABASE_URL=mysql+asyncmy://root:***@127.0.0.1:1/x "
        "is unreachable: "
    )
    assert "hunter2" not in message
    assert "\n" not in message


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql+asyncmy//root:hunter2@127.0.0.1/db",  # no ':'
        "nosuchdb://root:hunter2@127.0.0.1/db",
        "sqlite:///hotpool.db",  # a sync driver
    ],
)
async def test_malformed_url_is_a_settings_error_naming_the_setting(url):
    with pytest.raises(SettingsError) as info:
        await migrate(url)

    message = str(info.value)
    assert message.startswith("HOTPOOL_DATABASE_URL")
    assert "hunter2" not in message
    assert "\n" not in message


# The CLI runs its own event loop (asyncio.run): these tests are synchronous.


@pytest.mark.contract
def test_cli_migrate_brings_the_database_to_head(database_url, capsys):
    assert main(["migrate", "--database-url", database_url]) == 0

    assert capsys.readouterr().out == f"database at revision {head_revision()}\n"
    assert asyncio.run(current_revision(database_url)) == head_revision()


@pytest.mark.unit
def test_cli_migrate_defaults_to_the_embedded_database(tmp_path, monkeypatch, capsys):
    state_dir = tmp_path / "state"  # not created yet
    monkeypatch.setenv("HOTPOOL_STATE_DIR", str(state_dir))
    monkeypatch.delenv("HOTPOOL_DATABASE_URL", raising=False)

    assert main(["migrate"]) == 0

    assert capsys.readouterr().out == f"database at revision {head_revision()}\n"
    url = f"sqlite+aiosqlite:///{state_dir / 'hotpool.db'}"
    assert asyncio.run(current_revision(url)) == head_revision()


@pytest.mark.unit
@pytest.mark.parametrize("url", [UNREACHABLE_URL, "not a url"])
def test_cli_migrate_reports_a_bad_database_in_one_line(url, capsys):
    assert main(["migrate", "--database-url", url]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("hotpool: ")
    assert "HOTPOOL_DATABASE_URL" in line
    assert "hunter2" not in line

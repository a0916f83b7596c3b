"""Contract tests of shared.metadata.SqlMetadataStore, over SQLite (the embedded default) and
MariaDB (production), each on a database migrated to the latest schema."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError

from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.metadata import SqlMetadataStore
from hotpool.shared.models import FunctionConfig, FunctionVersion
from hotpool.shared.schema import migrate

CONFIG = FunctionConfig()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlMetadataStore]:
    """A store on a fresh database of each backend (tests/shared/conftest.py), migrated."""
    await migrate(database_url)
    s = SqlMetadataStore.from_url(database_url)
    try:
        yield s
    finally:
        await s.close()


async def create(store: SqlMetadataStore, name: str, n: int = 1, **config) -> FunctionVersion:
    sha = f"{n:064x}"
    return await store.create_version(name, FunctionConfig(**config), sha, f"{sha}.zip")


@pytest.mark.contract
async def test_create_version_numbers_versions_from_one(store):
    v1 = await create(store, "echo", 1)
    v2 = await create(store, "echo", 2)
    v3 = await create(store, "echo", 3)

    assert [v1.version, v2.version, v3.version] == [1, 2, 3]


@pytest.mark.contract
async def test_versions_are_numbered_per_function(store):
    await create(store, "alpha")
    await create(store, "alpha")

    assert (await create(store, "beta")).version == 1


@pytest.mark.contract
async def test_create_version_returns_what_it_stored(store):
    created = await create(store, "echo", 7, memory_mb=256, timeout_s=2.5, handler="app.run")

    assert created.name == "echo"
    assert created.code_sha256 == f"{7:064x}"
    assert created.code_key == f"{7:064x}.zip"
    assert created.config == FunctionConfig(memory_mb=256, timeout_s=2.5, handler="app.run")
    assert isinstance(created.created_at, datetime)
    assert created.created_at.tzinfo is not None
    assert await store.latest("echo") == created


@pytest.mark.contract
async def test_latest_returns_the_newest_version(store):
    await create(store, "echo", 1, memory_mb=128)
    await create(store, "echo", 2, memory_mb=512)

    latest = await store.latest("echo")

    assert latest.version == 2
    assert latest.code_sha256 == f"{2:064x}"
    assert latest.config.memory_mb == 512
    assert latest.created_at.tzinfo is not None  # SQLite hands back naive datetimes


@pytest.mark.contract
async def test_numbers_and_timestamps_round_trip_exactly(store):
    # MySQL's plain FLOAT and DATETIME would give back 0.10000000149011612 and whole seconds
    created = await create(store, "echo", timeout_s=0.1)

    latest = await store.latest("echo")

    assert latest.config.timeout_s == 0.1
    assert latest.created_at == created.created_at
    assert latest.created_at.utcoffset() == timedelta(0)


@pytest.mark.contract
async def test_env_round_trips(store):
    env = {"GREETING": "héllo wörld", "EMPTY": "", "JSON": '{"a": [1, 2]}'}
    await create(store, "echo", env=env)

    assert dict((await store.latest("echo")).config.env) == env


@pytest.mark.contract
async def test_list_functions_gives_each_latest_version_by_name(store):
    await create(store, "zeta", 1)
    await create(store, "alpha", 2)
    await create(store, "alpha", 3)

    listed = await store.list_functions()

    assert [(f.name, f.version) for f in listed] == [("alpha", 2), ("zeta", 1)]


@pytest.mark.contract
async def test_list_functions_of_empty_store(store):
    assert await store.list_functions() == []


@pytest.mark.contract
async def test_delete_hides_the_function(store):
    await create(store, "echo", 1)
    await create(store, "keep", 2)

    deleted = await store.delete("echo")

    assert (deleted.name, deleted.version) == ("echo", 1)
    with pytest.raises(NotFound):
        await store.latest("echo")
    assert [f.name for f in await store.list_functions()] == ["keep"]


@pytest.mark.contract
async def test_delete_twice_is_not_found(store):
    await create(store, "echo")
    await store.delete("echo")

    with pytest.raises(NotFound):
        await store.delete("echo")


@pytest.mark.contract
async def test_recreating_a_deleted_function_continues_the_version_numbers(store):
    await create(store, "echo", 1)
    await create(store, "echo", 2)
    await store.delete("echo")

    again = await create(store, "echo", 3)

    # a version number is never reused, so no pool list can mix two code packages
    assert again.version == 3
    assert (await store.latest("echo")).version == 3
    assert [(f.name, f.version) for f in await store.list_functions()] == [("echo", 3)]


@pytest.mark.contract
@pytest.mark.parametrize("operation", ["latest", "delete"])
async def test_unknown_function_is_not_found(store, operation):
    with pytest.raises(NotFound) as info:
        await getattr(store, operation)("nope")

    assert info.value.status == 404
    assert "nope" in info.value.message


@pytest.mark.contract
async def test_concurrent_deploys_never_share_a_version_number(store):
    results = await asyncio.gather(
        *(create(store, "echo", n) for n in range(3)), return_exceptions=True
    )

    created = [r for r in results if isinstance(r, FunctionVersion)]
    # a lost race may be refused with "try again" (503), never answered with a reused number
    assert all(isinstance(r, (FunctionVersion, StoreUnavailable)) for r in results), results
    assert created
    versions = [v.version for v in created]
    assert len(set(versions)) == len(versions)
    assert (await store.latest("echo")).version == max(versions)


@pytest.mark.contract
async def test_concurrent_first_deploys_of_a_new_name_all_succeed(store):
    # on MariaDB the first deploys of a new name deadlock on InnoDB gap locks; the store
    # runs the losers again instead of answering 503
    results = await asyncio.gather(*(create(store, "fresh", n) for n in range(8)))

    assert sorted(r.version for r in results) == list(range(1, 9))
    assert (await store.latest("fresh")).version == 8


async def _aiosqlite_workers_finished() -> None:
    # aiosqlite stops the worker thread of a connection that failed to open without waiting for
    # it; the thread then reports to the event loop, which must still be running then
    # (https://github.com/omnilib/aiosqlite/pull/389)
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    for worker in workers:
        await asyncio.to_thread(worker.join, 5.0)


UNREACHABLE = {
    "mariadb": "mysql+asyncmy://root:hunter2@127.0.0.1:1/x",  # nothing listens on port 1
    "sqlite": "sqlite+aiosqlite:///{tmp_path}/no/such/dir/meta.db",
}
OPERATIONS = {
    "create_schema": lambda s: s.create_schema(),
    "create_version": lambda s: create(s, "echo"),
    "latest": lambda s: s.latest("echo"),
    "list_functions": lambda s: s.list_functions(),
    "delete": lambda s: s.delete("echo"),
}


@pytest.mark.contract
@pytest.mark.parametrize("backend", UNREACHABLE)
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_unreachable_database_is_store_unavailable(tmp_path, backend, operation):
    store = SqlMetadataStore.from_url(UNREACHABLE[backend].format(tmp_path=tmp_path))
    try:
        with pytest.raises(StoreUnavailable) as info:
            await OPERATIONS[operation](store)
    finally:
        await store.close()
        await _aiosqlite_workers_finished()

    message = info.value.message
    assert message.startswith("the metadata database is unreachable: ")
    assert "\n" not in message
    assert "hunter2" not in message
    assert info.value.status == 503
    assert isinstance(info.value.__cause__, (DBAPIError, OSError))


@pytest.mark.unit
async def test_versions_persist_across_store_instances(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    first = SqlMetadataStore.from_url(url)
    await first.create_schema()
    await create(first, "echo", 1)
    await first.close()

    second = SqlMetadataStore.from_url(url)
    await second.create_schema()  # idempotent
    try:
        assert (await create(second, "echo", 2)).version == 2
    finally:
        await second.close()


@pytest.mark.contract
async def test_prune_keeps_the_newest_versions_and_names_the_unused_packages(store):
    for n in (1, 2, 3, 4):
        await create(store, "echo", n)
    await create(store, "other", 1)  # shares version 1's package

    assert await store.prune("echo", 2) == [f"{2:064x}.zip"]
    assert (await store.latest("echo")).version == 4
    assert await store.prune("echo", 2) == []

    await store.delete("echo")
    assert await store.prune("echo", 0) == [f"{3:064x}.zip", f"{4:064x}.zip"]
    assert await store.prune("never-deployed", 0) == []
    assert (await create(store, "echo", 5)).version == 5  # numbering goes on
    assert (await store.latest("other")).code_key == f"{1:064x}.zip"

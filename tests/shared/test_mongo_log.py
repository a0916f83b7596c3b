"""Tests of the MongoDB ExecutionLog.

Three tiers: a contract suite over SqliteExecutionLog and MongoExecutionLog (on an injected
fake collection, and on a real server when ``HOTPOOL_TEST_MONGO_URL`` is set); the real
driver against a port nobody listens on (connection errors, spilling); and the adapter's
own logic (document shape, index specs, duplicate handling) on the fake.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from hotpool.shared.errors import StoreUnavailable
from hotpool.shared.execlog import Record, RecordWriter, SqliteExecutionLog
from hotpool.shared.mongo_log import MongoExecutionLog
from hotpool.shared.paging import Position
from hotpool.shared.spill import SpillDir

MONGO_URL = os.environ.get("HOTPOOL_TEST_MONGO_URL", "")
NO_MONGO = (
    "no MongoDB server can be installed on these machines; "
    "set HOTPOOL_TEST_MONGO_URL to run against one"
)
# nothing listens on port 1: the real driver fails fast, as with a MongoDB that is down
DEAD_MONGO_URL = "mongodb://127.0.0.1:1"
DEAD_SELECTION_TIMEOUT_MS = 200


def record(request_id: str, function: str = "echo", started_at: float = 0.0, **extra) -> Record:
    return {"request_id": request_id, "function": function, "started_at": started_at, **extra}


# --- a fake of the few PyMongo objects the adapter uses --------------------------------------


def _index_name(keys: Any) -> str:
    pairs = [(keys, 1)] if isinstance(keys, str) else keys
    return "_".join(f"{field}_{direction}" for field, direction in pairs)


def _matches(doc: dict, filter_: dict) -> bool:
    """The subset of MongoDB's query language the adapter uses: equality, $lt and $or."""
    for key, wanted in filter_.items():
        if key == "$or":
            if not any(_matches(doc, clause) for clause in wanted):
                return False
        elif isinstance(wanted, dict):
            if not doc.get(key) < wanted["$lt"]:
                return False
        elif doc.get(key) != wanted:
            return False
    return True


class FakeCursor:
    def __init__(self, collection: FakeCollection, filter_: dict, projection: dict) -> None:
        self._collection = collection
        self._filter = filter_
        self._projection = projection
        self._sort: list[tuple[str, int]] = []
        self._limit = 0
        self.closed = False

    def sort(self, keys: list[tuple[str, int]]) -> FakeCursor:
        self._sort = list(keys)
        return self

    def limit(self, n: int) -> FakeCursor:
        self._limit = n
        return self

    def batch_size(self, n: int) -> FakeCursor:
        return self

    async def close(self) -> None:
        self.closed = True

    async def __aiter__(self) -> AsyncIterator[dict]:
        for doc in await self.to_list():
            yield doc

    async def to_list(self) -> list[dict]:
        self._collection.find_calls.append(
            {
                "filter": self._filter,
                "projection": self._projection,
                "sort": self._sort,
                "limit": self._limit,
            }
        )
        if self._collection.find_error is not None:
            raise self._collection.find_error
        docs = [
            {k: v for k, v in doc.items() if self._projection.get(k, True)}
            for doc in self._collection.docs.values()
            if _matches(doc, self._filter)
        ]
        for key, direction in reversed(self._sort):  # stable sorts, least significant first
            docs.sort(key=lambda d, key=key: d[key], reverse=direction < 0)
        return docs[: self._limit] if self._limit else docs


class FakeCollection:
    """Documents by ``_id``, and every call the adapter made."""

    def __init__(self) -> None:
        self.docs: dict[Any, dict] = {}
        self.indexes: dict[str, dict] = {"_id_": {"key": [("_id", 1)]}}
        self.insert_calls: list[tuple[list[dict], bool]] = []
        self.create_index_calls: list[tuple[Any, dict]] = []
        self.find_calls: list[dict] = []
        self.insert_error: Exception | None = None
        self.find_error: Exception | None = None

    async def insert_many(self, documents: list[dict], ordered: bool = True) -> None:
        self.insert_calls.append(([dict(d) for d in documents], ordered))
        if self.insert_error is not None:
            raise self.insert_error
        errors = []
        for i, doc in enumerate(documents):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000, "errmsg": "E11000 duplicate key"})
            else:
                self.docs[doc["_id"]] = dict(doc)
        if errors:
            raise BulkWriteError(
                {"writeErrors": errors, "writeConcernErrors": [], "nInserted": len(self.docs)}
            )

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        self.create_index_calls.append((keys, kwargs))
        name = _index_name(keys)
        spec = {"key": [(keys, 1)] if isinstance(keys, str) else list(keys), **kwargs}
        existing = self.indexes.get(name)
        if existing is not None and existing != spec:
            raise OperationFailure("index exists with different options", code=85)
        self.indexes[name] = spec
        return name

    async def index_information(self) -> dict[str, dict]:
        return {name: dict(spec) for name, spec in self.indexes.items()}

    def find(self, filter_: dict, projection: dict) -> FakeCursor:
        return FakeCursor(self, filter_, projection)


class FakeDatabase:
    def __init__(self) -> None:
        self.collections: dict[str, FakeCollection] = {}
        self.commands: list[tuple[str, Any, dict]] = []

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection())

    async def command(self, name: str, value: Any = 1, **kwargs: Any) -> dict:
        self.commands.append((name, value, kwargs))
        if name == "collMod":
            index = kwargs["index"]
            name_ = _index_name(list(index["keyPattern"].items()))
            self[value].indexes[name_]["expireAfterSeconds"] = index["expireAfterSeconds"]
        return {"ok": 1}


class FakeClient:
    def __init__(self) -> None:
        self.databases: dict[str, FakeDatabase] = {}
        self.closed = False

    def __getitem__(self, name: str) -> FakeDatabase:
        return self.databases.setdefault(name, FakeDatabase())

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_client() -> FakeClient:
    return FakeClient()


def collection_of(client: FakeClient) -> FakeCollection:
    return client["hotpool"]["executions"]


async def opened_fake_log(client: FakeClient, **kwargs: Any) -> MongoExecutionLog:
    log = MongoExecutionLog("mongodb://unused", client=client, **kwargs)
    await log.open()
    return log


# --- a real server, when there is one --------------------------------------------------------


@contextlib.asynccontextmanager
async def real_mongo_database() -> AsyncIterator[Callable[..., Awaitable[MongoExecutionLog]]]:
    """Open MongoExecutionLogs on a throw-away database of the real server; drops it after."""
    if not MONGO_URL:
        pytest.skip(NO_MONGO)
    client: AsyncMongoClient = AsyncMongoClient(
        MONGO_URL, serverSelectionTimeoutMS=2000, tz_aware=True
    )
    database = f"hotpool_test_{uuid.uuid4().hex[:12]}"

    async def make(**kwargs: Any) -> MongoExecutionLog:
        log = MongoExecutionLog(MONGO_URL, database=database, client=client, **kwargs)
        await log.open()
        return log

    try:
        yield make
    finally:
        await client.drop_database(database)
        await client.close()


@pytest.fixture
async def real_mongo() -> AsyncIterator[Callable[..., Awaitable[MongoExecutionLog]]]:
    async with real_mongo_database() as make:
        yield make


# --- contract: every ExecutionLog behaves the same -------------------------------------------


@pytest.fixture(params=["sqlite", "mongo-fake", "mongo-real"])
async def execution_log(request, tmp_path) -> AsyncIterator[Any]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            store: Any = SqliteExecutionLog(tmp_path / "executions.db")
            await store.open()
        elif request.param == "mongo-fake":
            store = await opened_fake_log(FakeClient())
        else:
            store = await (await stack.enter_async_context(real_mongo_database()))()
        stack.push_async_callback(store.close)
        yield store


@pytest.mark.contract
async def test_contract_latest_is_newest_first_and_limited(execution_log):
    await execution_log.insert_many([record(f"r{i}", started_at=float(i)) for i in range(6)])

    assert [r["request_id"] for r in await execution_log.latest("echo", 3)] == ["r5", "r4", "r3"]


@pytest.mark.contract
async def test_contract_pages_give_every_record_once_newest_first(execution_log):
    # ties on started_at: the request id orders them, so no page boundary loses or repeats one
    records = [record(f"r{i:02}", started_at=float(i // 3)) for i in range(20)]
    await execution_log.insert_many(records)

    seen: list[str] = []
    after = None
    while True:
        page = await execution_log.page("echo", 3, after=after)
        assert len(page.records) <= 3
        seen += [r["request_id"] for r in page.records]
        if page.next_cursor is None:
            break
        after = Position.from_cursor(page.next_cursor)

    assert seen == [f"r{i:02}" for i in reversed(range(20))]


@pytest.mark.contract
async def test_contract_a_page_stops_at_its_byte_budget(execution_log):
    await execution_log.insert_many(
        [record(f"r{i}", started_at=float(i), stdout="x" * 10_000) for i in range(10)]
    )

    page = await execution_log.page("echo", 10, max_bytes=35_000)

    assert [r["request_id"] for r in page.records] == ["r9", "r8", "r7"]
    assert page.more
    # a record larger than the budget still comes, alone: the listing always moves on
    alone = await execution_log.page("echo", 10, max_bytes=100)
    assert [r["request_id"] for r in alone.records] == ["r9"]
    assert alone.next_cursor is not None


@pytest.mark.contract
async def test_contract_records_round_trip_as_plain_dicts(execution_log):
    original = record("r1", started_at=1.5, status="ok", cold=True, logs="hi\n", duration_ms=3.25)

    await execution_log.insert_many([original])

    assert await execution_log.latest("echo", 1) == [original]


@pytest.mark.contract
async def test_contract_a_request_id_is_stored_once_first_copy_kept(execution_log):
    await execution_log.insert_many([record("r1", started_at=1.0, attempt=1)])
    await execution_log.insert_many([record("r1", started_at=2.0, attempt=2), record("r2")])

    latest = await execution_log.latest("echo", 10)

    assert sorted(r["request_id"] for r in latest) == ["r1", "r2"]
    assert next(r for r in latest if r["request_id"] == "r1")["attempt"] == 1


@pytest.mark.contract
async def test_contract_only_the_functions_own_records(execution_log):
    await execution_log.insert_many([record("a1", "alpha", 1.0), record("b1", "beta", 2.0)])

    assert [r["request_id"] for r in await execution_log.latest("alpha", 10)] == ["a1"]
    assert await execution_log.latest("gamma", 10) == []


# --- the real server only --------------------------------------------------------------------


@pytest.mark.integration
async def test_real_documents_carry_the_request_id_and_a_utc_recorded_at(real_mongo):
    store = await real_mongo()
    before = datetime.now(UTC)
    await store.insert_many([record("r1")])

    doc = await store._coll.find_one({"_id": "r1"})

    assert doc["request_id"] == "r1"
    assert before - timedelta(seconds=1) <= doc["recorded_at"] <= datetime.now(UTC)


@pytest.mark.integration
async def test_real_indexes_and_retention_changes_take_effect(real_mongo):
    store = await real_mongo(retention_days=30)
    indexes = await store._coll.index_information()
    by_key = {tuple((k, int(d)) for k, d in spec["key"]): spec for spec in indexes.values()}

    assert (("function", 1), ("started_at", -1)) in by_key
    assert by_key[(("request_id", 1),)]["unique"] is True
    assert by_key[(("recorded_at", 1),)]["expireAfterSeconds"] == 30 * 86_400

    reopened = await real_mongo(retention_days=7)  # e.g. a restart with a new setting
    indexes = await reopened._coll.index_information()
    ttl = next(s for s in indexes.values() if s["key"] == [("recorded_at", 1)])
    assert ttl["expireAfterSeconds"] == 7 * 86_400


# --- the real driver, with no server ---------------------------------------------------------


@pytest.fixture
async def dead_mongo() -> AsyncIterator[MongoExecutionLog]:
    client: AsyncMongoClient = AsyncMongoClient(
        DEAD_MONGO_URL, serverSelectionTimeoutMS=DEAD_SELECTION_TIMEOUT_MS
    )
    try:
        yield MongoExecutionLog(DEAD_MONGO_URL, client=client)
    finally:
        await client.close()


@pytest.mark.unit
async def test_unreachable_insert_raises_the_drivers_connection_error(dead_mongo):
    with pytest.raises(ConnectionFailure):
        await dead_mongo.insert_many([record("r1")])


@pytest.mark.unit
async def test_unreachable_latest_and_open_raise_store_unavailable(dead_mongo):
    with pytest.raises(StoreUnavailable, match=r"execution log \(MongoDB\) is unreachable") as e:
        await dead_mongo.latest("echo", 10)
    assert isinstance(e.value.__cause__, ConnectionFailure)
    assert e.value.status == 503

    with pytest.raises(StoreUnavailable):
        await dead_mongo.open()


@pytest.mark.unit
async def test_writer_spills_every_record_when_mongo_is_unreachable(dead_mongo, tmp_path):
    writer = RecordWriter(
        dead_mongo, batch_size=10, flush_interval_s=0.01, spill_dir=tmp_path / "spill"
    )
    writer.start()
    submitted = {f"r{i}" for i in range(35)}
    for request_id in sorted(submitted):
        writer.submit(record(request_id))

    await writer.close()

    spill = SpillDir(tmp_path / "spill")
    spilled = [r for path in spill.files() for r in spill.read(path)[0]]
    assert sorted(r["request_id"] for r in spilled) == sorted(submitted)
    assert (writer.spilled, writer.written, writer.dropped) == (35, 0, 0)


# --- adapter logic on the fake ---------------------------------------------------------------


@pytest.mark.unit
async def test_documents_are_the_record_plus_id_and_a_tz_aware_recorded_at(fake_client):
    store = await opened_fake_log(fake_client)
    original = record("r1", started_at=5.0, status="ok")

    await store.insert_many([original])

    [(documents, ordered)] = collection_of(fake_client).insert_calls
    [doc] = documents
    assert ordered is False
    assert doc["_id"] == "r1"
    assert doc["recorded_at"].tzinfo is not None
    assert doc["recorded_at"].utcoffset() == timedelta(0)
    assert {k: v for k, v in doc.items() if k not in ("_id", "recorded_at")} == original
    assert original == record("r1", started_at=5.0, status="ok")  # the caller's dict unchanged


@pytest.mark.unit
async def test_the_first_insert_creates_the_indexes_if_open_could_not(fake_client):
    # open() raised StoreUnavailable at start-up; MongoDB is back for the first batch
    store = MongoExecutionLog("mongodb://unused", client=fake_client, retention_days=2)
    collection = collection_of(fake_client)

    await store.insert_many([record("r1")])
    await store.insert_many([record("r2")])

    assert collection.indexes["recorded_at_1"]["expireAfterSeconds"] == 2 * 86_400
    assert [keys for keys, _ in collection.create_index_calls].count("request_id") == 1
    assert set(collection.docs) == {"r1", "r2"}


@pytest.mark.unit
async def test_inserting_nothing_does_not_call_the_driver(fake_client):
    store = await opened_fake_log(fake_client)

    await store.insert_many([])

    assert collection_of(fake_client).insert_calls == []


@pytest.mark.unit
@pytest.mark.parametrize("retention_days", [30, 7.5, 0.5])
async def test_open_creates_the_three_indexes(fake_client, retention_days):
    await opened_fake_log(fake_client, retention_days=retention_days)

    calls = collection_of(fake_client).create_index_calls
    assert ([("function", 1), ("started_at", -1)], {}) in calls
    assert ("request_id", {"unique": True}) in calls
    assert ("recorded_at", {"expireAfterSeconds": retention_days * 86_400}) in calls
    assert fake_client["hotpool"].commands == []


@pytest.mark.unit
async def test_open_twice_with_the_same_retention_changes_nothing(fake_client):
    await opened_fake_log(fake_client, retention_days=30)
    await opened_fake_log(fake_client, retention_days=30)

    assert fake_client["hotpool"].commands == []


@pytest.mark.unit
async def test_a_new_retention_is_applied_to_the_existing_ttl_index_with_collmod(fake_client):
    await opened_fake_log(fake_client, retention_days=30)
    ttl_creations = len(collection_of(fake_client).create_index_calls)

    await opened_fake_log(fake_client, retention_days=7)

    assert fake_client["hotpool"].commands == [
        (
            "collMod",
            "executions",
            {"index": {"keyPattern": {"recorded_at": 1}, "expireAfterSeconds": 7 * 86_400}},
        )
    ]
    assert collection_of(fake_client).indexes["recorded_at_1"]["expireAfterSeconds"] == 604_800
    new_calls = collection_of(fake_client).create_index_calls[ttl_creations:]
    assert not any(keys == "recorded_at" for keys, _ in new_calls)


@pytest.mark.unit
async def test_a_ttl_index_created_meanwhile_by_another_replica_is_updated(fake_client):
    store = MongoExecutionLog("mongodb://unused", client=fake_client, retention_days=7)
    collection = collection_of(fake_client)
    real_index_information = collection.index_information

    async def stale_index_information() -> dict[str, dict]:
        # the other replica creates its TTL index right after we looked
        info = await real_index_information()
        collection.indexes["recorded_at_1"] = {
            "key": [("recorded_at", 1)],
            "expireAfterSeconds": 30 * 86_400,
        }
        return info

    collection.index_information = stale_index_information

    await store.open()

    assert collection.indexes["recorded_at_1"]["expireAfterSeconds"] == 7 * 86_400


def bulk_error(*codes: int, write_concern_errors: list | None = None) -> BulkWriteError:
    return BulkWriteError(
        {
            "writeErrors": [{"index": i, "code": c, "errmsg": "x"} for i, c in enumerate(codes)],
            "writeConcernErrors": write_concern_errors or [],
            "nInserted": 0,
        }
    )


@pytest.mark.unit
@pytest.mark.parametrize("codes", [(11000,), (11000, 11000, 11000)])
async def test_a_bulk_error_of_only_duplicates_is_success(fake_client, codes):
    store = await opened_fake_log(fake_client)
    collection_of(fake_client).insert_error = bulk_error(*codes)

    await store.insert_many([record(f"r{i}") for i in range(len(codes))])


@pytest.mark.unit
@pytest.mark.parametrize(
    "error",
    [
        bulk_error(11000, 121),  # one duplicate, one document validation failure
        bulk_error(10334),  # a document too large
        bulk_error(11000, write_concern_errors=[{"code": 64, "errmsg": "wtimeout"}]),
        bulk_error(),  # no write errors at all: nothing says the writes landed
        ServerSelectionTimeoutError("no server"),
    ],
    ids=["mixed", "too-large", "write-concern", "empty", "server-selection"],
)
async def test_other_insert_errors_propagate(fake_client, error):
    store = await opened_fake_log(fake_client)
    collection_of(fake_client).insert_error = error

    with pytest.raises(type(error)) as raised:
        await store.insert_many([record("r1"), record("r2")])
    assert raised.value is error


@pytest.mark.unit
async def test_latest_asks_for_the_functions_records_newest_first_without_internals(fake_client):
    store = await opened_fake_log(fake_client)
    await store.insert_many([record("r1", started_at=1.0), record("r2", started_at=2.0)])

    latest = await store.latest("echo", 5)

    assert latest == [record("r2", started_at=2.0), record("r1", started_at=1.0)]
    assert all(type(r) is dict for r in latest)
    [call] = collection_of(fake_client).find_calls
    assert call["filter"] == {"function": "echo"}
    assert call["projection"] == {"_id": False, "recorded_at": False}
    assert call["sort"] == [("started_at", -1), ("request_id", -1)]
    assert call["limit"] == 6  # one more than asked: whether another page follows


@pytest.mark.unit
@pytest.mark.parametrize(
    "error",
    [
        ServerSelectionTimeoutError("no primary"),
        NetworkTimeout("timed out"),
        AutoReconnect("connection reset"),
        ConnectionFailure("refused"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_latest_maps_every_connection_failure_to_store_unavailable(fake_client, error):
    store = await opened_fake_log(fake_client)
    collection_of(fake_client).find_error = error

    with pytest.raises(StoreUnavailable, match="unreachable") as raised:
        await store.latest("echo", 5)
    assert raised.value.__cause__ is error


@pytest.mark.unit
async def test_latest_lets_other_driver_errors_through(fake_client):
    store = await opened_fake_log(fake_client)
    error = OperationFailure("not authorized", code=13)
    collection_of(fake_client).find_error = error

    with pytest.raises(OperationFailure) as raised:
        await store.latest("echo", 5)
    assert raised.value is error


@pytest.mark.unit
async def test_close_leaves_an_injected_client_open(fake_client):
    store = await opened_fake_log(fake_client)

    await store.close()

    assert fake_client.closed is False


@pytest.mark.unit
def test_retention_must_be_positive(fake_client):
    with pytest.raises(ValueError, match="retention_days"):
        MongoExecutionLog("mongodb://unused", client=fake_client, retention_days=0)

"""``ExecutionLog`` on MongoDB (production), through PyMongo's ``AsyncMongoClient``.

A record is stored as itself plus ``_id = request_id`` (so a request id is unique by
construction and a replayed record is never stored twice) and ``recorded_at``, the UTC time
it was stored, which a TTL index uses to expire records after the retention period.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure

from hotpool.shared.errors import StoreUnavailable
from hotpool.shared.execlog import SECONDS_PER_DAY
from hotpool.shared.paging import Page, Position, Record, fill_page

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
INDEX_OPTIONS_CONFLICT = 85  # an index on these keys exists with other options
TTL_FIELD = "recorded_at"
LATEST_INDEX = [("function", ASCENDING), ("started_at", DESCENDING)]
NEWEST_FIRST = [("started_at", DESCENDING), ("request_id", DESCENDING)]


class MongoExecutionLog:
    """``ExecutionLog`` in one MongoDB collection.

    ``insert_many`` lets connection errors through (``RecordWriter`` spills the batch);
    ``latest`` and ``open`` turn them into ``StoreUnavailable``.
    """

    def __init__(
        self,
        url: str,
        *,
        database: str = "hotpool",
        collection: str = "executions",
        retention_days: float = 30,
        server_selection_timeout_s: float = 2.0,
        client: Any = None,
    ) -> None:
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self._owns_client = client is None
        if client is None:
            client = AsyncMongoClient(
                url,
                serverSelectionTimeoutMS=int(server_selection_timeout_s * 1000),
                tz_aware=True,
                appname="hotpool",
            )
        self._client = client
        self._db = client[database]
        self._coll = self._db[collection]
        self._collection_name = collection
        # MongoDB wants whole seconds
        self.ttl_s = max(1, round(retention_days * SECONDS_PER_DAY))
        self._indexed = False

    async def open(self) -> None:
        """Create the indexes, or bring the TTL of an existing one to ``retention_days``.

        If MongoDB is unreachable this raises ``StoreUnavailable``, and the first
        ``insert_many`` that reaches MongoDB creates the indexes instead.
        """
        try:
            await self._create_indexes()
        except ConnectionFailure as exc:
            raise _unavailable(exc) from exc

    async def _create_indexes(self) -> None:
        await self._coll.create_index(LATEST_INDEX)
        await self._coll.create_index("request_id", unique=True)
        await self._ensure_ttl_index()
        self._indexed = True

    async def _ensure_ttl_index(self) -> None:
        current = _ttl_of(await self._coll.index_information())
        if current == self.ttl_s:
            return
        if current is None:
            try:
                await self._coll.create_index(TTL_FIELD, expireAfterSeconds=self.ttl_s)
                return
            except OperationFailure as exc:
                # another replica created it meanwhile, with another retention
                if exc.code != INDEX_OPTIONS_CONFLICT:
                    raise
        # createIndex cannot change expireAfterSeconds of an existing index; collMod can
        await self._db.command(
            "collMod",
            self._collection_name,
            index={"keyPattern": {TTL_FIELD: 1}, "expireAfterSeconds": self.ttl_s},
        )
        log.info("execution log retention set to %d s (was %s)", self.ttl_s, current)

    async def insert_many(self, records: list[Record]) -> None:
        if not records:
            return
        if not self._indexed:
            # Main started while MongoDB was away: index before the first records land, or
            # they would never expire
            await self._create_indexes()
        now = datetime.now(UTC)
        # new dicts: the caller's records stay JSON-able (they may be spilled to disk later)
        documents = [{**r, "_id": r["request_id"], TTL_FIELD: now} for r in records]
        try:
            await self._coll.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc.details):
                raise
            # a replay of records already stored: they are kept as first written
            log.debug("%d execution records were already stored", len(exc.details["writeErrors"]))

    async def latest(self, function: str, limit: int) -> list[Record]:
        """The ``limit`` newest records of ``function``."""
        return (await self.page(function, limit)).records

    async def page(
        self, function: str, limit: int, *, after: Position | None = None, max_bytes: int = 0
    ) -> Page:
        query: dict[str, Any] = {"function": function}
        if after is not None:
            query["$or"] = [
                {"started_at": {"$lt": after.started_at}},
                {"started_at": after.started_at, "request_id": {"$lt": after.request_id}},
            ]
        cursor = (
            self._coll.find(query, projection={"_id": False, TTL_FIELD: False})
            .sort(NEWEST_FIRST)
            .limit(limit + 1)
            .batch_size(min(limit + 1, 100))
        )
        rows: list[tuple[Record, int]] = []
        size = 0
        cut = False
        try:
            # documents come a batch at a time, and no further than the byte budget needs
            async for doc in cursor:
                record = dict(doc)
                record_bytes = len(orjson.dumps(record))
                rows.append((record, record_bytes))
                size += record_bytes
                if max_bytes and size > max_bytes:
                    cut = True
                    break
        except ConnectionFailure as exc:
            # ServerSelectionTimeoutError, AutoReconnect and NetworkTimeout are all
            # ConnectionFailures
            raise _unavailable(exc) from exc
        finally:
            await cursor.close()
        return fill_page(rows, limit, max_bytes, cut=cut)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the execution log (MongoDB) is unreachable: {exc}")


def _only_duplicates(details: dict[str, Any]) -> bool:
    """Whether a bulk write failed only because some documents were already there."""
    errors = details.get("writeErrors") or []
    # a write concern error means even the inserted documents may not be durable
    if details.get("writeConcernErrors"):
        return False
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)


def _ttl_of(indexes: dict[str, Any]) -> int | None:
    """expireAfterSeconds of the TTL index on ``recorded_at``, or None if there is none."""
    for spec in indexes.values():
        if [tuple(k) for k in spec.get("key", [])] == [(TTL_FIELD, 1)]:
            ttl = spec.get("expireAfterSeconds")
            return None if ttl is None else int(ttl)
    return None

"""Execution records: the ``ExecutionLog`` port, its local SQLite adapter, and the writer
that keeps record writes off the invocation path.

A record is a JSON-able dict with at least ``request_id``, ``function`` and ``started_at``
(unix seconds). ``request_id`` is unique: writing a record twice stores it once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import orjson

log = logging.getLogger(__name__)

Record = dict[str, Any]


class ExecutionLog(Protocol):
    """Where per-invocation records are kept."""

    async def insert_many(self, records: list[Record]) -> None: ...

    async def latest(self, function: str, limit: int) -> list[Record]: ...

    async def close(self) -> None: ...


class SqliteExecutionLog:
    """``ExecutionLog`` in a local SQLite file (the embedded default)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS executions ("
            " request_id TEXT PRIMARY KEY, function TEXT NOT NULL,"
            " started_at REAL NOT NULL, doc TEXT NOT NULL)"
        )
        await self._db.execute(
            "CREATE INDEX IF NOT EXISTS ix_executions_function_started"
            " ON executions (function, started_at DESC)"
        )
        await self._db.commit()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("SqliteExecutionLog.open() was not awaited")
        return self._db

    async def insert_many(self, records: list[Record]) -> None:
        await self.db.executemany(
            "INSERT OR IGNORE INTO executions (request_id, function, started_at, doc)"
            " VALUES (?, ?, ?, ?)",
            [
                (r["request_id"], r["function"], r["started_at"], orjson.dumps(r).decode())
                for r in records
            ],
        )
        await self.db.commit()

    async def latest(self, function: str, limit: int) -> list[Record]:
        async with self.db.execute(
            "SELECT doc FROM executions WHERE function = ? ORDER BY started_at DESC LIMIT ?",
            (function, limit),
        ) as cursor:
            return [orjson.loads(row[0]) async for row in cursor]

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


class RecordWriter:
    """A bounded in-memory queue of records, flushed to an ``ExecutionLog`` in batches.

    ``submit`` never waits for the store, so records stay off the invocation path. A batch
    is written when ``batch_size`` records are queued or ``flush_interval_s`` has passed;
    ``close`` flushes what is left.
    """

    def __init__(
        self,
        store: ExecutionLog,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.2,
        max_queued: int = 100_000,
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._interval_s = flush_interval_s
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def submit(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("execution record queue full; dropped %s", record.get("request_id"))

    async def flush(self) -> None:
        """Write everything queued now."""
        while not self._queue.empty():
            size = min(self._batch_size, self._queue.qsize())
            await self._write([self._queue.get_nowait() for _ in range(size)])

    async def _write(self, batch: list[Record]) -> None:
        try:
            await self._store.insert_many(batch)
        except Exception:
            log.exception("writing %d execution records failed; will retry", len(batch))
            for record in batch:
                self.submit(record)
            raise
        self.written += len(batch)

    async def _collect(self) -> list[Record]:
        """Wait for one record, then gather more until the batch is full or time is up."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval_s
        try:
            while len(batch) < self._batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # shutting down: put the batch back so close() flushes it
            for record in batch:
                self.submit(record)
            raise
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                # the write may or may not have landed; request ids are unique, so
                # writing the batch again in close() cannot store a record twice
                for record in batch:
                    self.submit(record)
                raise
            except Exception:
                await asyncio.sleep(self._interval_s)  # the store is down; do not spin

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

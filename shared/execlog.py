"""Execution records: the ``ExecutionLog`` port, its local SQLite adapter, and the writer
that keeps record writes off the invocation path.

A record is a JSON-able dict with at least ``request_id``, ``function`` and ``started_at``
(unix seconds). ``request_id`` is unique: writing a record twice stores it once.

Records are listed newest first, a page at a time (``shared.paging``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import orjson

from hotpool.shared.paging import Page, Position, Record, fill_page
from hotpool.shared.spill import Journal, SpillDir

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400  # HOTPOOL_LOG_RETENTION_DAYS is in days; the adapters work in seconds


class ExecutionLog(Protocol):
    """Where per-invocation records are kept."""

    async def insert_many(self, records: list[Record]) -> None: ...

    async def page(
        self, function: str, limit: int, *, after: Position | None = None, max_bytes: int = 0
    ) -> Page:
        """Up to ``limit`` records of ``function`` older than ``after`` (default: the newest),
        newest first, within ``max_bytes`` of JSON (0: unbounded)."""
        ...

    async def close(self) -> None: ...


class SqliteExecutionLog:
    """``ExecutionLog`` in a local SQLite file (the embedded default).

    Records older than ``retention_s`` (by ``started_at``; None keeps them for ever) are
    deleted at open and with every batch written, as MongoDB's TTL index does for its adapter.
    """

    def __init__(self, path: Path, *, retention_s: float | None = None) -> None:
        self._path = path
        self._retention_s = retention_s
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
        # the retention's delete finds the expired records without a full scan
        await self._db.execute(
            "CREATE INDEX IF NOT EXISTS ix_executions_started ON executions (started_at)"
        )
        await self._expire()
        await self._db.commit()

    async def _expire(self) -> None:
        if self._retention_s is not None:
            cutoff = time.time() - self._retention_s
            await self.db.execute("DELETE FROM executions WHERE started_at < ?", (cutoff,))

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
        await self._expire()
        await self.db.commit()

    async def latest(self, function: str, limit: int) -> list[Record]:
        """The ``limit`` newest records of ``function``."""
        return (await self.page(function, limit)).records

    async def page(
        self, function: str, limit: int, *, after: Position | None = None, max_bytes: int = 0
    ) -> Page:
        query = "SELECT doc FROM executions WHERE function = ?"
        params: list[Any] = [function]
        if after is not None:
            query += " AND (started_at < ? OR (started_at = ? AND request_id < ?))"
            params += [after.started_at, after.started_at, after.request_id]
        query += " ORDER BY started_at DESC, request_id DESC LIMIT ?"
        rows: list[tuple[Record, int]] = []
        size = 0
        cut = False
        # rows are read a few at a time, and no further than the byte budget needs
        async with self.db.execute(query, (*params, limit + 1)) as cursor:
            async for (doc,) in cursor:
                rows.append((orjson.loads(doc), len(doc)))
                size += len(doc)
                if max_bytes and size > max_bytes:
                    cut = True
                    break
        return fill_page(rows, limit, max_bytes, cut=cut)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


class RecordWriter:
    """A bounded in-memory queue of records, flushed to an ``ExecutionLog`` in batches.

    ``submit`` never waits for the store, so records stay off the invocation path. A batch
    is written when ``batch_size`` records are queued or ``flush_interval_s`` has passed;
    ``close`` flushes what is left.

    With a ``spill_dir`` nothing is lost while the store is down (BRIEF.md §3.5): a batch
    the store refuses goes to a spill file (``shared.spill``), and so does every later batch
    until a replay task, every ``replay_interval_s``, has written all spill files back. A full
    queue moves its oldest batch to a spill file instead of dropping. Files left at exit are
    replayed by the next writer on the same directory. Without a spill directory a failed
    batch is retried until the store takes it, and a full queue drops.

    Each record is in one place at a time: the queue, a batch being written, a spill file,
    or the store. A record reaches the store twice only when a write's outcome is unknown
    (it was cancelled or timed out, or the process died between replaying a spill file and
    deleting it); stores keep the first copy, as request ids are unique.

    Counters: ``written`` (from the queue into the store), ``spilled`` (into spill files),
    ``replayed`` (from spill files into the store), ``dropped`` (lost).
    """

    def __init__(
        self,
        store: ExecutionLog,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.2,
        max_queued: int = 100_000,
        spill_dir: Path | None = None,
        replay_interval_s: float = 2.0,
        write_timeout_s: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._store = store
        self._batch_size = batch_size
        self._interval_s = flush_interval_s
        self._replay_interval_s = replay_interval_s
        # a store that never answers must not hold records (or close()) forever
        self._write_timeout_s = write_timeout_s
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=max_queued)
        # wakes the flusher before its interval once the records it still wants are queued
        self._batch_full = asyncio.Event()
        self._wanted = batch_size
        # batches taken from the queue but not yet stored or spilled, oldest first; they
        # outlive a cancelled flusher task, so close() still writes them
        self._held: list[list[Record]] = []
        self._held_lock = asyncio.Lock()  # the flusher and flush() must not write one batch twice
        self._spill = SpillDir(spill_dir) if spill_dir is not None else None
        # with a spill dir, a record is journaled before submit() returns, so a Main killed
        # with records still queued loses none of them (BRIEF §3.5)
        self._journal = Journal(self._spill) if self._spill is not None else None
        self._generation_of: dict[str, int] = {}
        self._store_down = False  # with a spill dir: skip the store until replay succeeds
        self._replay_failing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        """Records in memory waiting for the store: queued, and in batches being written."""
        return self._queue.qsize() + sum(map(len, self._held))

    def start(self) -> None:
        """Start the flusher and, with a spill dir, the replay of spill files."""
        self._tasks.append(asyncio.create_task(self._run(), name="record-writer"))
        if self._spill is not None:
            self._tasks.append(asyncio.create_task(self._replay_loop(), name="record-replay"))

    def submit(self, record: Record) -> None:
        if self._journal is not None:
            try:
                self._generation_of[record["request_id"]] = self._journal.append(record)
            except OSError:
                log.exception("journaling execution record %s failed", record["request_id"])
        try:
            self._queue.put_nowait(record)
            if self._queue.qsize() >= self._wanted:
                self._batch_full.set()
            return
        except asyncio.QueueFull:
            pass
        if self._spill is not None:
            # the store cannot keep up: move the oldest batch to disk to make room
            size = min(self._batch_size, self._queue.qsize())
            oldest = [self._queue.get_nowait() for _ in range(size)]
            try:
                self._write_spill(oldest)
                self._journal_done(oldest)
            except OSError:
                log.exception("spilling %d execution records failed", len(oldest))
                for queued in oldest:
                    self._queue.put_nowait(queued)  # there is room: they just left
            else:
                self._queue.put_nowait(record)
                return
        self.dropped += 1
        log.error("execution record queue full; dropped %s", record.get("request_id"))

    async def flush(self) -> None:
        """Write everything held and queued now (to a spill file if the store fails)."""
        async with self._held_lock:
            while True:
                if not self._held:
                    if self._queue.empty():
                        return
                    size = min(self._batch_size, self._queue.qsize())
                    self._held.append([self._queue.get_nowait() for _ in range(size)])
                await self._store_or_spill(self._held[0])
                self._held.pop(0)

    async def close(self) -> None:
        """Stop the tasks and flush; spill files still left are replayed by the next start."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # unlike awaiting the tasks, asyncio.wait raises CancelledError only when close()
            # itself is cancelled, so a shutdown timeout still reaches our caller
            await asyncio.wait(self._tasks)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed", task.get_name(), exc_info=task.exception())
        self._tasks = []
        await self.flush()
        if self._journal is not None:
            self._journal.close()

    async def _store_or_spill(self, batch: list[Record]) -> None:
        """Write ``batch`` to the store or, failing that, to a spill file; raise if neither."""
        if self._spill is None or not self._store_down:
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    await self._store.insert_many(batch)
            except Exception as exc:
                if self._spill is None:
                    raise
                if not self._store_down:
                    log.warning(
                        "the execution log refused %d records (%r); spilling to %s until it "
                        "is back",
                        len(batch),
                        exc,
                        self._spill.path,
                    )
                self._store_down = True
            else:
                self.written += len(batch)
                self._journal_done(batch)
                return
        self._write_spill(batch)
        self._journal_done(batch)

    def _journal_done(self, batch: list[Record]) -> None:
        if self._journal is None:
            return
        generations = [self._generation_of.pop(r.get("request_id"), None) for r in batch]
        self._journal.done(g for g in generations if g is not None)

    def _write_spill(self, batch: list[Record]) -> None:
        # synchronous on purpose: once it returns the batch is on disk, and no cancellation
        # can leave it half spilled (and later spilled twice)
        assert self._spill is not None
        self._spill.write(batch)
        self.spilled += len(batch)

    async def _collect(self) -> list[Record]:
        """Wait for one record, then let more gather until the batch is full or time is up.

        The writer wakes once per batch, not once per record: on the invocation path a
        record costs an append and nothing else.
        """
        batch: list[Record] = []
        try:
            batch.append(await self._queue.get())
            if self._journal is not None:
                self._journal.rotate()  # records from now on go to the next generation
            self._take_queued(batch)
            if len(batch) < self._batch_size:
                self._wanted = self._batch_size - len(batch)
                self._batch_full.clear()
                # asyncio.timeout, unlike wait_for on 3.11, never swallows a cancel; records
                # stay in the queue until they are taken
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval_s):
                        await self._batch_full.wait()
                self._take_queued(batch)
        except asyncio.CancelledError:
            if batch:
                self._held.append(batch)  # shutting down: close() writes it
            raise
        return batch

    def _take_queued(self, batch: list[Record]) -> None:
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _run(self) -> None:
        while True:
            if not self._held:
                self._held.append(await self._collect())
            try:
                async with self._held_lock:
                    while self._held:
                        await self._store_or_spill(self._held[0])
                        self._held.pop(0)
            except Exception:
                n = sum(map(len, self._held))
                log.exception("writing %d execution records failed; will retry", n)
                await asyncio.sleep(self._interval_s)  # the store is down; do not spin

    async def _replay_loop(self) -> None:
        while True:
            try:
                await self._replay()
            except Exception as exc:
                if not self._replay_failing:
                    log.warning("replaying spilled execution records failed: %r", exc)
                self._replay_failing = True
            await asyncio.sleep(self._replay_interval_s)

    async def _replay(self) -> None:
        """Write spill files back to the store, oldest first, deleting each once stored."""
        assert self._spill is not None
        while files := self._spill.files():
            for path in files:
                records, unreadable = self._spill.read(path)
                for start in range(0, len(records), self._batch_size):
                    async with asyncio.timeout(self._write_timeout_s):
                        await self._store.insert_many(records[start : start + self._batch_size])
                # dying right here re-writes this file's records at the next start, which the
                # store ignores (request ids are unique)
                self._spill.remove(path)
                self.replayed += len(records)
                self.dropped += unreadable
        # no await between finding no files and this: a batch spilled meanwhile is either
        # in a file found above or comes after the store is marked up again
        if self._store_down or self._replay_failing:
            log.info("the execution log is back; spilled records replayed")
        self._store_down = False
        self._replay_failing = False

"""Execution-record throughput through ``RecordWriter``, per store.

    python -m hotpool.benchmarks.record_writer [--n 100000] [--batch-size 200]

Submits N records, a thousand per event-loop turn as a busy Main would, and times from the
first submit to the end of ``close()`` (everything stored). Stores: ``SqliteExecutionLog``
in a temporary directory; an in-memory store (the upper bound of the writer itself); the
degraded path, a store that is down so every batch goes to spill files on local disk; and
``MongoExecutionLog`` when ``HOTPOOL_TEST_MONGO_URL`` is set (a throw-away database).
Prints records per second as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hotpool.shared.execlog import ExecutionLog, Record, RecordWriter, SqliteExecutionLog

SUBMITS_PER_TURN = 1000


def make_records(n: int) -> list[Record]:
    """Records shaped like Main's: ids, timings, a cold-start flag and a little output."""
    now = time.time()
    return [
        {
            "request_id": uuid.uuid4().hex,
            "function": f"fn-{i % 50}",
            "version": 1 + i % 3,
            "started_at": now + i * 1e-4,
            "duration_ms": 1.5 + (i % 100) / 10,
            "status": "success",
            "cold": i % 97 == 0,
            "logs": f"handled request {i}\n",
        }
        for i in range(n)
    ]


class MemoryStore:
    """An ExecutionLog that keeps records in a dict: no I/O at all."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    async def insert_many(self, records: list[Record]) -> None:
        for r in records:
            self.records.setdefault(r["request_id"], r)

    async def latest(self, function: str, limit: int) -> list[Record]:
        return []

    async def close(self) -> None:
        return None


class DownStore(MemoryStore):
    """A store that refuses every write, so the writer spills everything."""

    async def insert_many(self, records: list[Record]) -> None:
        raise ConnectionError("down")


async def run_writer(
    store: ExecutionLog, records: list[Record], batch_size: int, spill_dir: Path | None = None
) -> float:
    """Records per second from the first submit until ``close()`` returned."""
    writer = RecordWriter(
        store,
        batch_size=batch_size,
        max_queued=len(records) + 1,
        spill_dir=spill_dir,
        replay_interval_s=3600,  # measure the writer, not a replay racing it
    )
    writer.start()
    begun = time.perf_counter()
    for i, record in enumerate(records, 1):
        writer.submit(record)
        if i % SUBMITS_PER_TURN == 0:
            await asyncio.sleep(0)
    await writer.close()
    elapsed = time.perf_counter() - begun
    stored = writer.written + writer.spilled
    if stored != len(records) or writer.dropped:
        raise RuntimeError(f"stored {stored} of {len(records)}, dropped {writer.dropped}")
    return len(records) / elapsed


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[ExecutionLog]:
    with tempfile.TemporaryDirectory(prefix="hotpool-bench-") as tmp:
        store = SqliteExecutionLog(Path(tmp) / "executions.db")
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def mongo_store(url: str) -> AsyncIterator[ExecutionLog]:
    from pymongo import AsyncMongoClient

    from hotpool.shared.mongo_log import MongoExecutionLog

    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=2000)
    database = f"hotpool_bench_{uuid.uuid4().hex[:12]}"
    store = MongoExecutionLog(url, database=database, client=client)
    await store.open()
    try:
        yield store
    finally:
        await client.drop_database(database)
        await client.close()


async def measure(n: int, batch_size: int, mongo_url: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}

    async def timed(name: str, store_cm: Callable[[], Any], spill: bool = False) -> None:
        async with store_cm() as store:
            with tempfile.TemporaryDirectory(prefix="hotpool-spill-") as tmp:
                spill_dir = Path(tmp) if spill else None
                rate = await run_writer(store, make_records(n), batch_size, spill_dir)
        figures[name] = round(rate)

    @asynccontextmanager
    async def memory() -> AsyncIterator[ExecutionLog]:
        yield MemoryStore()

    @asynccontextmanager
    async def down() -> AsyncIterator[ExecutionLog]:
        yield DownStore()

    await timed("sqlite_records_per_s", sqlite_store)
    await timed("memory_records_per_s", memory)
    await timed("spill_records_per_s", down, spill=True)
    if mongo_url:
        await timed("mongo_records_per_s", lambda: mongo_store(mongo_url))
    figures.update(
        n=n,
        batch_size=batch_size,
        python=platform.python_version(),
        platform=sys.platform,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="records per store")
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    # the down store's spill warnings are expected here
    logging.getLogger("hotpool.shared.execlog").setLevel(logging.ERROR)
    # benchmarks are outside the service, so the settings module's rule does not apply
    mongo_url = os.environ.get("HOTPOOL_TEST_MONGO_URL", "")
    figures = asyncio.run(measure(args.n, args.batch_size, mongo_url))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

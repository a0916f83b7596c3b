"""Tests of execution records: the SQLite ExecutionLog and the batching RecordWriter.

The oracle is BRIEF.md §3.5: every record submitted is stored exactly once, even when the
store was down for a while.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hotpool.shared.execlog import Record, RecordWriter, SqliteExecutionLog

pytestmark = pytest.mark.unit

WAIT_S = 5.0  # an upper bound for "soon", never a timing assertion
HANG_GUARD_S = 1.0  # close() of an idle writer is immediate; this only catches a hang


async def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.005)


def record(request_id: str, function: str = "echo", started_at: float = 0.0, **extra) -> Record:
    return {"request_id": request_id, "function": function, "started_at": started_at, **extra}


# --- SqliteExecutionLog ------------------------------------------------------------------------


@pytest.fixture
async def sqlite_log(tmp_path) -> AsyncIterator[SqliteExecutionLog]:
    store = SqliteExecutionLog(tmp_path / "logs" / "executions.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_latest_returns_newest_first_by_started_at(sqlite_log):
    await sqlite_log.insert_many(
        [
            record("r2", started_at=20.0),
            record("r1", started_at=10.0),
            record("r3", started_at=30.0),
        ]
    )

    latest = await sqlite_log.latest("echo", 10)

    assert [r["request_id"] for r in latest] == ["r3", "r2", "r1"]


async def test_latest_honours_the_limit(sqlite_log):
    await sqlite_log.insert_many([record(f"r{i}", started_at=float(i)) for i in range(10)])

    latest = await sqlite_log.latest("echo", 3)

    assert [r["request_id"] for r in latest] == ["r9", "r8", "r7"]


async def test_records_round_trip_with_their_fields(sqlite_log):
    original = record("r1", started_at=1.5, status="ok", cold=True, logs="hi\n", duration_ms=3.25)

    await sqlite_log.insert_many([original])

    assert await sqlite_log.latest("echo", 1) == [original]


async def test_duplicate_request_id_is_stored_once(sqlite_log):
    await sqlite_log.insert_many([record("r1", started_at=1.0, attempt=1)])
    await sqlite_log.insert_many([record("r1", started_at=2.0, attempt=2)])
    await sqlite_log.insert_many([record("r1", started_at=3.0, attempt=3), record("r2")])

    latest = await sqlite_log.latest("echo", 10)

    assert sorted(r["request_id"] for r in latest) == ["r1", "r2"]
    assert next(r for r in latest if r["request_id"] == "r1")["attempt"] == 1


async def test_other_functions_records_are_not_returned(sqlite_log):
    await sqlite_log.insert_many(
        [record("a1", "alpha", 1.0), record("b1", "beta", 2.0), record("a2", "alpha", 3.0)]
    )

    assert [r["request_id"] for r in await sqlite_log.latest("alpha", 10)] == ["a2", "a1"]
    assert [r["request_id"] for r in await sqlite_log.latest("beta", 10)] == ["b1"]
    assert await sqlite_log.latest("gamma", 10) == []


async def test_records_survive_reopening(tmp_path):
    path = tmp_path / "executions.db"
    first = SqliteExecutionLog(path)
    await first.open()
    await first.insert_many([record("r1")])
    await first.close()

    second = SqliteExecutionLog(path)
    await second.open()
    try:
        assert [r["request_id"] for r in await second.latest("echo", 10)] == ["r1"]
    finally:
        await second.close()


async def test_using_an_unopened_log_is_a_clear_error(tmp_path):
    store = SqliteExecutionLog(tmp_path / "x.db")

    with pytest.raises(RuntimeError, match="open"):
        await store.latest("echo", 1)


# --- RecordWriter ------------------------------------------------------------------------------


class FakeLog:
    """An ExecutionLog in memory: records by request id, and every successful insert call.

    ``fail_first`` makes the first K calls raise, as a log store that is down would.
    ``gate``, when set, makes every call wait for it first, as a slow store would.
    """

    def __init__(self, fail_first: int = 0, gate: asyncio.Event | None = None) -> None:
        self.records: dict[str, Record] = {}
        self.inserts: Counter[str] = Counter()  # request id -> successful inserts
        self.batches: list[int] = []  # sizes of the successful insert calls
        self.calls = 0
        self.fail_first = fail_first
        self.gate = gate

    async def insert_many(self, records: list[Record]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a real store yields to the loop
        if self.calls <= self.fail_first:
            raise ConnectionError("log store is down")
        for r in records:
            self.records[r["request_id"]] = r
            self.inserts[r["request_id"]] += 1
        self.batches.append(len(records))

    async def latest(self, function: str, limit: int) -> list[Record]:
        return []

    async def close(self) -> None:
        return None


@pytest.fixture
async def make_writer() -> AsyncIterator[Callable[..., Awaitable[RecordWriter]]]:
    """Start RecordWriters; any the test did not close are closed afterwards."""
    writers: list[RecordWriter] = []

    async def make(store, **kwargs) -> RecordWriter:
        writer = RecordWriter(store, **kwargs)
        writer.start()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        try:
            await writer.close()
        except Exception:
            pass  # the test's store may still be failing; the test asserted what it needed


async def test_submit_returns_without_waiting_for_the_store(make_writer):
    gate = asyncio.Event()  # the store blocks until this is set
    store = FakeLog(gate=gate)
    writer = await make_writer(store, batch_size=10, flush_interval_s=0.01)

    for i in range(500):
        assert writer.submit(record(f"r{i}")) is None

    assert store.records == {}
    assert writer.dropped == 0
    gate.set()
    await writer.close()
    assert set(store.records) == {f"r{i}" for i in range(500)}


async def test_records_are_flushed_within_the_interval(make_writer):
    store = FakeLog()
    writer = await make_writer(store, batch_size=1000, flush_interval_s=0.02)

    for i in range(3):
        writer.submit(record(f"r{i}"))

    await eventually(lambda: len(store.records) == 3)
    assert writer.written == 3


async def test_a_full_batch_is_written_without_waiting_for_the_interval(make_writer):
    store = FakeLog()
    # the interval is far longer than the wait: only the batch size can trigger this write
    writer = await make_writer(store, batch_size=5, flush_interval_s=3600)

    for i in range(7):
        writer.submit(record(f"r{i}"))

    await eventually(lambda: store.batches == [5])
    assert set(store.records) == {f"r{i}" for i in range(5)}
    await writer.close()
    assert store.batches == [5, 2]
    assert set(store.records) == {f"r{i}" for i in range(7)}


async def test_close_flushes_everything_queued(make_writer):
    store = FakeLog()
    writer = await make_writer(store, batch_size=50, flush_interval_s=3600)

    for i in range(120):
        writer.submit(record(f"r{i}"))
    await writer.close()

    assert set(store.records) == {f"r{i}" for i in range(120)}
    assert all(n == 1 for n in store.inserts.values())
    assert writer.written == 120


async def test_close_without_start_flushes_in_batches():
    store = FakeLog()
    writer = RecordWriter(store, batch_size=4)

    for i in range(10):
        writer.submit(record(f"r{i}"))
    await writer.close()

    assert store.batches == [4, 4, 2]
    assert len(store.records) == 10


async def test_nothing_is_lost_or_stored_twice_when_the_store_recovers(make_writer):
    store = FakeLog(fail_first=3)
    writer = await make_writer(store, batch_size=4, flush_interval_s=0.01)
    submitted = {f"r{i}" for i in range(25)}

    for request_id in sorted(submitted):
        writer.submit(record(request_id))
        await asyncio.sleep(0)  # let the writer take partial batches, so several fail
    await eventually(lambda: set(store.records) == submitted)
    await writer.close()

    assert store.calls > 3  # it did fail, and retried
    assert set(store.records) == submitted
    assert store.inserts == Counter(dict.fromkeys(submitted, 1))
    assert writer.written == len(submitted)
    assert writer.dropped == 0


async def test_records_queued_while_the_store_is_down_are_kept_through_close(make_writer):
    store = FakeLog(fail_first=10**9)
    writer = await make_writer(store, batch_size=10, flush_interval_s=0.01)

    for i in range(5):
        writer.submit(record(f"r{i}"))
    await eventually(lambda: store.calls >= 2)

    with pytest.raises(ConnectionError):
        await writer.close()

    # the store comes back: a later flush writes every record exactly once
    store.fail_first = 0
    await writer.flush()
    assert store.inserts == Counter({f"r{i}": 1 for i in range(5)})


async def test_a_full_queue_drops_and_counts():
    store = FakeLog()
    writer = RecordWriter(store, max_queued=3)

    for i in range(5):
        writer.submit(record(f"r{i}"))
    await writer.close()

    assert writer.dropped == 2
    assert set(store.records) == {"r0", "r1", "r2"}


async def test_writer_with_the_sqlite_log_stores_each_record_once(tmp_path):
    store = SqliteExecutionLog(tmp_path / "executions.db")
    await store.open()
    try:
        writer = RecordWriter(store, batch_size=7, flush_interval_s=0.01)
        writer.start()
        for i in range(30):
            writer.submit(record(f"r{i}", started_at=float(i)))
        writer.submit(record("r5", started_at=99.0))  # a duplicate request id
        await writer.close()

        latest = await store.latest("echo", 100)
    finally:
        await store.close()

    assert len(latest) == 30
    assert [r["request_id"] for r in latest] == [f"r{i}" for i in reversed(range(30))]


async def test_close_right_after_a_submit_does_not_hang(make_writer):
    store = FakeLog()
    writer = await make_writer(store, batch_size=100, flush_interval_s=3600)
    writer.submit(record("r0"))
    await eventually(writer._queue.empty)  # the writer took r0 and is collecting a batch
    for _ in range(3):
        await asyncio.sleep(0)  # ... and waits in queue.get() for a second record
    watchdog_fired = []
    this_task = asyncio.current_task()

    def watchdog() -> None:
        watchdog_fired.append(True)
        this_task.cancel()

    handle = asyncio.get_running_loop().call_later(HANG_GUARD_S, watchdog)
    try:
        # a last record and close() in one loop turn, as at shutdown
        writer.submit(record("r1"))
        await writer.close()
    finally:
        handle.cancel()

    assert not watchdog_fired, "close() hung until the watchdog cancelled it"
    assert set(store.records) == {"r0", "r1"}


class SlowToCancelLog(FakeLog):
    """A store whose first write hangs, and which takes a while to clean up when cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cleanup_done = asyncio.Event()

    async def insert_many(self, records: list[Record]) -> None:
        if self.calls == 0:
            self.calls += 1
            try:
                await asyncio.Event().wait()  # never answers
            except asyncio.CancelledError:
                await self.cleanup_done.wait()  # e.g. a driver rolling back
                raise
        await super().insert_many(records)


async def test_close_does_not_swallow_its_callers_cancellation(make_writer):
    store = SlowToCancelLog()
    writer = await make_writer(store, batch_size=10, flush_interval_s=0.01)
    writer.submit(record("r0"))
    await eventually(lambda: store.calls == 1)  # the writer is stuck in the first write

    closing = asyncio.create_task(writer.close())
    for _ in range(3):
        await asyncio.sleep(0)  # close() cancelled the writer and waits for it to end
    closing.cancel()  # the caller gives up, e.g. a shutdown timeout
    await asyncio.wait([closing], timeout=WAIT_S)
    store.cleanup_done.set()

    assert closing.done()
    assert closing.cancelled(), "close() returned normally although it was cancelled"

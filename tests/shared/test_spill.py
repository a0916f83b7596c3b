"""Tests of spilling: a RecordWriter with a spill directory never loses a record.

The oracle is BRIEF.md §3.5: every record submitted ends in the store exactly once, even
when the store was down at the time, the queue overflowed, or the process stopped before
the store came back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from hotpool.shared.execlog import Record, RecordWriter
from hotpool.shared.spill import SpillDir

pytestmark = pytest.mark.unit

WAIT_S = 5.0  # an upper bound for "soon", never a timing assertion
FAST = {"batch_size": 10, "flush_interval_s": 0.01, "replay_interval_s": 0.01}


async def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.005)


def record(request_id: str, started_at: float = 0.0) -> Record:
    return {"request_id": request_id, "function": "echo", "started_at": started_at}


def ids(n: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


class FlakyStore:
    """An ExecutionLog in memory that refuses every write while ``down`` is set.

    Like the real stores it keeps the first copy of a request id; ``inserts`` counts how
    often each id reached a successful write, so a record written twice shows.
    ``gate``, when set, makes every write wait for it first, as a slow store would.
    """

    def __init__(self, *, down: bool = False, gate: asyncio.Event | None = None) -> None:
        self.down = down
        self.gate = gate
        self.records: dict[str, Record] = {}
        self.inserts: Counter[str] = Counter()
        self.failed_calls = 0

    async def insert_many(self, records: list[Record]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a real store yields to the loop
        if self.down:
            self.failed_calls += 1
            raise ConnectionError("log store is down")
        for r in records:
            self.records.setdefault(r["request_id"], r)
            self.inserts[r["request_id"]] += 1

    async def latest(self, function: str, limit: int) -> list[Record]:
        return []

    async def close(self) -> None:
        return None


def spill_files(spill_dir: Path) -> list[Path]:
    return sorted(p for p in spill_dir.iterdir() if p.is_file())


def spilled_ids(spill_dir: Path) -> list[str]:
    spill = SpillDir(spill_dir)
    return [r["request_id"] for path in spill.files() for r in spill.read(path)[0]]


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
        await writer.close()  # with a spill dir, close() never raises for a down store


async def submit_all(writer: RecordWriter, request_ids: list[str]) -> None:
    for request_id in request_ids:
        writer.submit(record(request_id))
        await asyncio.sleep(0)  # let the writer take partial batches, so several fail


async def test_records_written_while_the_store_is_down_reach_it_exactly_once(make_writer, tmp_path):
    store = FlakyStore(down=True)
    writer = await make_writer(store, spill_dir=tmp_path, **FAST)
    during_outage = ids(60, "down")

    await submit_all(writer, during_outage)
    await eventually(lambda: writer.spilled == len(during_outage))
    assert store.records == {}
    assert sorted(spilled_ids(tmp_path)) == during_outage

    store.down = False
    after_outage = ids(40, "up")
    await submit_all(writer, after_outage)
    everything = set(during_outage) | set(after_outage)
    await eventually(lambda: set(store.records) == everything)
    await eventually(lambda: not spill_files(tmp_path))
    await writer.close()

    assert store.failed_calls >= 1  # it did fail
    assert store.inserts == Counter(dict.fromkeys(everything, 1))
    assert writer.replayed == writer.spilled
    assert writer.written + writer.spilled == len(everything)
    assert writer.dropped == 0


async def test_while_the_store_is_down_batches_go_straight_to_spill(make_writer, tmp_path):
    store = FlakyStore(down=True)
    # replay probes the store only once here (at start, with no files yet)
    writer = await make_writer(
        store, spill_dir=tmp_path, batch_size=10, flush_interval_s=0.01, replay_interval_s=3600
    )

    await submit_all(writer, ids(60))
    await eventually(lambda: writer.spilled == 60)

    # one failed batch marks the store down; later batches do not wait on it again
    assert store.failed_calls == 1


async def test_after_recovery_new_batches_go_straight_to_the_store(make_writer, tmp_path):
    store = FlakyStore(down=True)
    writer = await make_writer(store, spill_dir=tmp_path, **FAST)
    writer.submit(record("before"))
    await eventually(lambda: writer.spilled == 1)

    store.down = False
    await eventually(lambda: writer.replayed == 1)
    writer.submit(record("after"))
    await eventually(lambda: writer.written == 1)

    assert writer.spilled == 1
    assert set(store.records) == {"before", "after"}


async def test_spill_files_are_json_lines_listed_in_write_order(tmp_path):
    spill = SpillDir(tmp_path)

    first = spill.write([record("a"), record("b")])
    second = spill.write([record("c")])

    assert spill.files() == [first, second]
    assert [orjson.loads(line) for line in first.read_bytes().splitlines()] == [
        record("a"),
        record("b"),
    ]
    assert first.name.startswith("spill-") and first.suffix == ".jsonl"
    assert spill_files(tmp_path) == [first, second]  # no temporary files left behind


async def test_close_while_down_keeps_the_records_and_a_new_writer_replays_them(
    make_writer, tmp_path
):
    down = FlakyStore(down=True)
    first = await make_writer(down, spill_dir=tmp_path, **FAST)
    submitted = ids(45)
    for request_id in submitted:
        first.submit(record(request_id))  # most are still queued at close()

    await first.close()

    assert down.records == {}
    assert sorted(spilled_ids(tmp_path)) == submitted
    assert (first.spilled, first.dropped) == (45, 0)

    # the next process start, with the store back
    store = FlakyStore()
    second = await make_writer(store, spill_dir=tmp_path, **FAST)
    await eventually(lambda: set(store.records) == set(submitted))
    await eventually(lambda: not spill_files(tmp_path))

    assert store.inserts == Counter(dict.fromkeys(submitted, 1))
    assert second.replayed == 45


async def test_a_burst_over_max_queued_loses_nothing(make_writer, tmp_path):
    gate = asyncio.Event()  # the store is up but stalls, so the queue overflows
    store = FlakyStore(gate=gate)
    writer = await make_writer(
        store,
        spill_dir=tmp_path,
        max_queued=20,
        batch_size=5,
        flush_interval_s=0.01,
        replay_interval_s=0.01,
    )
    burst = ids(500)

    for request_id in burst:  # in one loop turn: the writer cannot take any of them
        writer.submit(record(request_id))

    assert writer.dropped == 0
    assert writer.spilled + writer._queue.qsize() == 500  # the oldest went to disk
    gate.set()
    await eventually(lambda: set(store.records) == set(burst))
    await writer.close()
    assert store.inserts == Counter(dict.fromkeys(burst, 1))
    assert not spill_files(tmp_path)


async def test_a_store_that_never_answers_does_not_hold_close(make_writer, tmp_path):
    store = FlakyStore(gate=asyncio.Event())  # never set: every write hangs
    writer = await make_writer(store, spill_dir=tmp_path, write_timeout_s=0.05, **FAST)
    for request_id in ids(12):
        writer.submit(record(request_id))

    async with asyncio.timeout(WAIT_S):  # only catches a hang
        await writer.close()

    assert sorted(spilled_ids(tmp_path)) == ids(12)


async def test_a_record_is_written_twice_only_when_a_replay_dies_before_the_delete(
    make_writer, tmp_path, monkeypatch
):
    """The documented window: the store took a spill file's records, the file was not deleted."""
    spill = SpillDir(tmp_path)
    spill.write([record("a"), record("b")])
    spill.write([record("c")])
    store = FlakyStore()
    removals: list[Path] = []
    real_remove = SpillDir.remove

    def remove_dying_once(self: SpillDir, path: Path) -> None:
        removals.append(path)
        if len(removals) == 1:
            raise OSError("the process died here")
        real_remove(self, path)

    monkeypatch.setattr(SpillDir, "remove", remove_dying_once)
    writer = await make_writer(store, spill_dir=tmp_path, **FAST)
    await eventually(lambda: not spill_files(tmp_path))
    await writer.close()

    assert set(store.records) == {"a", "b", "c"}
    assert store.inserts == Counter({"a": 2, "b": 2, "c": 1})  # only the first file's records


async def test_a_crash_mid_spill_keeps_the_complete_lines(make_writer, tmp_path):
    torn = tmp_path / "spill-00000000000000000001-1-00000000.tmp"
    torn.write_bytes(orjson.dumps(record("a")) + b"\n" + orjson.dumps(record("b")) + b'\n{"req')
    store = FlakyStore()

    writer = await make_writer(store, spill_dir=tmp_path, **FAST)
    await eventually(lambda: not spill_files(tmp_path))

    assert set(store.records) == {"a", "b"}
    assert writer.replayed == 2
    assert writer.dropped == 1  # the torn line: it was never reported spilled


async def test_without_a_spill_dir_nothing_is_written_to_disk(make_writer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would land here
    store = FlakyStore(down=True)
    writer = await make_writer(store, batch_size=5, flush_interval_s=0.01)
    writer.submit(record("r1"))
    await eventually(lambda: store.failed_calls >= 2)  # held and retried, not spilled

    store.down = False
    await eventually(lambda: set(store.records) == {"r1"})
    assert writer.spilled == 0
    assert list(tmp_path.iterdir()) == []

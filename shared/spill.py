"""Spill files: execution records kept on local disk while the log store cannot take them.

A spill directory holds one file per spilled batch, JSON lines (one record per line), named
``spill-<unix ns>-<pid>-<counter>.jsonl`` so that names sort in the order they were written.
A file is written under a ``.tmp`` name, fsync'd, then renamed: a ``.jsonl`` file is always
complete. ``.tmp`` files found on opening are what a crash left between write and rename;
their complete lines are kept and a torn last line is skipped.

A spill directory belongs to one process at a time (one Main); two processes replaying the
same files would only write records twice, which the stores ignore, but nothing coordinates
them.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

SPILL_PREFIX = "spill-"
SPILL_SUFFIX = ".jsonl"
TMP_SUFFIX = ".tmp"

Record = dict[str, Any]


class SpillDir:
    """Append-only batches of records on disk, read back oldest first."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        self._recover_torn_writes()

    def write(self, records: Iterable[Record]) -> Path:
        """Store ``records`` durably in a new spill file; returns its path.

        Blocks for a write and two fsyncs: callers accept that on the degraded path in
        exchange for "once this returns, the batch survives a crash".
        """
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        name = f"{SPILL_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(self._counter):08d}"
        tmp = self.path / (name + TMP_SUFFIX)
        final = self.path / (name + SPILL_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, final)
        self._fsync_dir()  # the rename itself must survive a power cut
        return final

    def files(self) -> list[Path]:
        """Complete spill files, oldest first."""
        return sorted(self.path.glob(f"{SPILL_PREFIX}*{SPILL_SUFFIX}"))

    def read(self, path: Path) -> tuple[list[Record], int]:
        """The records of one spill file, and how many lines could not be parsed."""
        records: list[Record] = []
        bad = 0
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
        if bad:
            log.error("spill file %s: %d unreadable line(s) skipped", path, bad)
        return records, bad

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def _recover_torn_writes(self) -> None:
        for tmp in sorted(self.path.glob(f"{SPILL_PREFIX}*{TMP_SUFFIX}")):
            log.warning("recovering %s, left by a crash while spilling", tmp)
            os.replace(tmp, tmp.with_suffix(SPILL_SUFFIX))
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if os.name != "posix":
            return  # directories cannot be opened for fsync elsewhere
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


JOURNAL_PREFIX = "journal-"


class Journal:
    """Every submitted record, appended before the invocation answers, until it is stored.

    One plain ``os.write`` per record: it lands in the page cache, so it survives the process
    being killed (not a power cut; spill files are fsync'd for that). Records are written to
    generation files; the writer rotates to a new generation for every batch it collects, and a
    generation's file is deleted once each of its records has been stored or spilled. Journal
    files a dead process left behind become spill files at start-up, so the replay loop
    stores them (request ids are unique: a record stored twice is stored once).
    """

    def __init__(self, spill: SpillDir) -> None:
        self._dir = spill.path / "journal"
        self._dir.mkdir(exist_ok=True)
        for left in sorted(self._dir.glob(f"{JOURNAL_PREFIX}*{SPILL_SUFFIX}")):
            name = left.name.removeprefix(JOURNAL_PREFIX).removesuffix(SPILL_SUFFIX)
            os.replace(left, spill.path / f"{SPILL_PREFIX}{name}-journal{SPILL_SUFFIX}")
        self._stem = f"{JOURNAL_PREFIX}{time.time_ns():020d}-{os.getpid()}"
        self._generation = 0
        self._pending: dict[int, int] = {}
        self._fd = self._open(0)

    def _path(self, generation: int) -> Path:
        return self._dir / f"{self._stem}-{generation:08d}{SPILL_SUFFIX}"

    def _open(self, generation: int) -> int:
        return os.open(self._path(generation), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def append(self, record: Record) -> int:
        """Journal one record; returns its generation, to hand back to ``done``."""
        os.write(self._fd, orjson.dumps(record) + b"\n")
        self._pending[self._generation] = self._pending.get(self._generation, 0) + 1
        return self._generation

    def rotate(self) -> None:
        """Start a new generation (the writer just took a batch)."""
        if not self._pending.get(self._generation):
            return
        os.close(self._fd)
        self._generation += 1
        self._fd = self._open(self._generation)

    def done(self, generations: Iterable[int]) -> None:
        """These records are stored or spilled: drop every generation with none left."""
        for generation in generations:
            self._pending[generation] -= 1
        for generation, left in list(self._pending.items()):
            if left == 0 and generation != self._generation:
                del self._pending[generation]
                self._path(generation).unlink(missing_ok=True)

    def close(self) -> None:
        """After a final flush nothing is pending: the journal goes."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        if not any(self._pending.values()):
            for generation in [*self._pending, self._generation]:
                self._path(generation).unlink(missing_ok=True)

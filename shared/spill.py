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

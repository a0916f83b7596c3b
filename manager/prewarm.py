"""Pre-warmed generic containers: started with no code, specialised on a cold start.

A cold start that finds one here skips the container boot and pays only for ``/init``, as in
OpenWhisk's stem cells and Fission's pool manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hotpool.manager.backend import ContainerBackend, ContainerSpec, ContainerState
from hotpool.manager.containers import ContainerTable, Record

log = logging.getLogger(__name__)

S = ContainerState


def missing(ready: int, starting: int, target: int, room: int) -> int:
    """How many generic containers to start now: up to ``target``, never past ``room``."""
    return max(0, min(target - ready - starting, room))


class PrewarmPool:
    """Keeps ``count`` generic started containers per runtime, as records of the node's table."""

    def __init__(
        self,
        backend: ContainerBackend,
        table: ContainerTable,
        *,
        runtimes: tuple[str, ...],
        count: int,
        memory_mb: int,
        labels: dict[str, str],
        capacity: int,
        capacity_memory_mb: int | None = None,
        refill_interval_s: float = 5.0,
    ) -> None:
        self._backend = backend
        self._table = table
        self._runtimes = runtimes
        self._count = count
        self._memory_mb = memory_mb
        self._labels = labels
        self._capacity = capacity
        self._capacity_memory_mb = capacity_memory_mb
        self._interval_s = refill_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        """Pre-warmed containers ready or starting."""
        return len(self._table.spares())

    def ready(self, runtime: str) -> int:
        return len(self._table.spares(S.GENERIC, runtime=runtime))

    def ids(self) -> set[str]:
        return {r.id for r in self._table.spares(S.GENERIC)}

    def take(self, runtime: str) -> Record | None:
        """A generic container of ``runtime``, now INITIALISING, or None; a refill follows."""
        record = self._table.take_spare(runtime)
        self._wake.set()
        return record

    def forget(self, container_id: str) -> bool:
        """Drop a generic container that died; True if it was one of ours."""
        record = self._table.get(container_id)
        if record is None or not record.spare:
            return False
        self._table.discard(record)
        self._wake.set()
        return True

    def start(self) -> None:
        if self._count > 0:
            self._task = asyncio.create_task(self._run(), name="prewarm")

    async def _run(self) -> None:
        while True:
            try:
                await self.fill()
            except Exception:
                log.exception("pre-warming failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()

    async def fill(self) -> None:
        """Start the containers missing from every runtime's pre-warm pool."""
        starts = []
        for runtime in self._runtimes:
            n = missing(
                self.ready(runtime),
                len(self._table.spares(S.STARTING, runtime=runtime)),
                self._count,
                self._table.room(
                    self._capacity, memory_mb=self._capacity_memory_mb, each_mb=self._memory_mb
                ),
            )
            starts.extend(self._start_one(runtime) for _ in range(n))
        await asyncio.gather(*starts)

    async def _start_one(self, runtime: str) -> None:
        record = self._table.begin(runtime, self._memory_mb, prewarmed=True)
        try:
            spec = ContainerSpec(runtime, self._memory_mb, {**self._labels, "hotpool.prewarm": "1"})
            self._table.started(record, await self._backend.start(spec))
        except Exception as exc:
            log.warning("could not pre-warm a %s container: %s", runtime, exc)
        finally:
            if record.state is S.STARTING:  # the start failed or was cancelled
                self._table.discard(record)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        spares = self._table.spares(S.GENERIC)
        for record in spares:
            record.move(S.REMOVING)
        try:
            await asyncio.gather(
                *(self._backend.remove(r.id) for r in spares), return_exceptions=True
            )
        finally:
            for record in spares:
                self._table.drop(record)

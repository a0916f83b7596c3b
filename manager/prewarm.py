"""Pre-warmed generic containers: started with no code, specialised on a cold start.

A cold start that finds one here skips the container boot and pays only for ``/init``, as in
OpenWhisk's stem cells and Fission's pool manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from hotpool.manager.backend import Container, ContainerBackend, ContainerSpec

log = logging.getLogger(__name__)


def missing(ready: int, starting: int, target: int, room: int) -> int:
    """How many generic containers to start now: up to ``target``, never past ``room``."""
    return max(0, min(target - ready - starting, room))


class PrewarmPool:
    """Keeps ``count`` generic started containers per runtime."""

    def __init__(
        self,
        backend: ContainerBackend,
        *,
        runtimes: tuple[str, ...],
        count: int,
        memory_mb: int,
        labels: dict[str, str],
        room: Callable[[], int],
        refill_interval_s: float = 5.0,
    ) -> None:
        self._backend = backend
        self._runtimes = runtimes
        self._count = count
        self._memory_mb = memory_mb
        self._labels = labels
        self._room = room
        self._interval_s = refill_interval_s
        self._ready: dict[str, list[Container]] = {rt: [] for rt in runtimes}
        self._starting: dict[str, int] = dict.fromkeys(runtimes, 0)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return sum(len(v) for v in self._ready.values()) + sum(self._starting.values())

    def ready(self, runtime: str) -> int:
        return len(self._ready.get(runtime, []))

    def ids(self) -> set[str]:
        return {c.id for containers in self._ready.values() for c in containers}

    def take(self, runtime: str) -> Container | None:
        """A ready generic container of ``runtime``, or None; a refill follows."""
        ready = self._ready.get(runtime)
        container = ready.pop(0) if ready else None
        self._wake.set()
        return container

    def forget(self, container_id: str) -> bool:
        """Drop a generic container that died; True if it was one of ours."""
        for containers in self._ready.values():
            for container in containers:
                if container.id == container_id:
                    containers.remove(container)
                    self._wake.set()
                    return True
        return False

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
                len(self._ready[runtime]), self._starting[runtime], self._count, self._room()
            )
            starts.extend(self._start_one(runtime) for _ in range(n))
        await asyncio.gather(*starts)

    async def _start_one(self, runtime: str) -> None:
        self._starting[runtime] += 1
        try:
            spec = ContainerSpec(runtime, self._memory_mb, {**self._labels, "hotpool.prewarm": "1"})
            container = await self._backend.start(spec)
        except Exception as exc:
            log.warning("could not pre-warm a %s container: %s", runtime, exc)
            return
        finally:
            self._starting[runtime] -= 1
        self._ready[runtime].append(container)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        containers = [c for cs in self._ready.values() for c in cs]
        for cs in self._ready.values():
            cs.clear()
        await asyncio.gather(
            *(self._backend.remove(c.id) for c in containers), return_exceptions=True
        )

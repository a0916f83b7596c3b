"""Making room on a full node: which idle containers a cold start evicts.

``choose_victims`` is a pure function over a snapshot of the node (what it uses, what it may
use, and its idle containers with the time each went idle): no clock, no Redis, no I/O. As in
OpenWhisk's ``ContainerPool.remove``, only idle containers are candidates, the least recently
used go first, and no more are taken than the new container needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hotpool.shared.models import PoolEntry


@dataclass(frozen=True)
class IdleContainer:
    """A READY container sitting in its version's pool list, idle since ``idle_since``."""

    entry: PoolEntry
    memory_mb: int
    idle_since: float


@dataclass(frozen=True)
class NodeUse:
    """What the node's containers use now, and the most they may use."""

    containers: int
    memory_mb: int
    capacity_containers: int
    capacity_memory_mb: int

    def shortfall(self, memory_mb: int) -> tuple[int, int]:
        """The container slots and MB missing for one more container of ``memory_mb``."""
        slots = self.containers + 1 - self.capacity_containers
        memory = self.memory_mb + memory_mb - self.capacity_memory_mb
        return max(0, slots), max(0, memory)


def choose_victims(
    idle: Iterable[IdleContainer],
    use: NodeUse,
    *,
    memory_mb: int,
    function: str,
    version: int,
) -> list[IdleContainer] | None:
    """The idle containers to remove, least recently used first, so that one more container
    of ``memory_mb`` for ``function`` ``version`` fits: ``[]`` when it fits already, None when
    removing every candidate would still not make room (the node is full of busy containers).

    The requesting version's own idle containers are never chosen: the request would have
    leased one of them instead of cold-starting, so evicting it to start its twin is pointless
    (one seen here was released a moment ago and will serve the next call).
    """
    slots, memory = use.shortfall(memory_mb)
    if not (slots or memory):
        return []
    candidates = sorted(
        (c for c in idle if (c.entry.function, c.entry.version) != (function, version)),
        key=lambda c: (c.idle_since, c.entry.container_id),
    )
    chosen: list[IdleContainer] = []
    for candidate in candidates:
        chosen.append(candidate)
        slots -= 1
        memory -= candidate.memory_mb
        if slots <= 0 and memory <= 0:
            return chosen
    return None

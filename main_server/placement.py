"""Where the next cold start goes.

``choose_manager`` is a pure function over a snapshot of the registry (``shared.registry``):
no clock, no Redis, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hotpool.shared.registry import ManagerInfo


def holds(manager: ManagerInfo, memory_mb: int) -> bool:
    """Whether a container of ``memory_mb`` could ever run on ``manager`` (empty)."""
    return not manager.capacity_memory_mb or memory_mb <= manager.capacity_memory_mb


def choose_manager(
    managers: Sequence[ManagerInfo], pending: Mapping[str, int], memory_mb: int = 0
) -> ManagerInfo | None:
    """The live Manager for one more container of ``memory_mb``, or None.

    First the least loaded Manager with room (containers and memory); failing that, the one
    with the most idle containers to spare, which it evicts to make room (the Manager decides
    which). ``pending`` counts cold starts this Main has sent to each Manager that its last
    heartbeat does not show yet; each may take a slot or an idle container.
    """
    best: ManagerInfo | None = None
    best_rank: tuple[int, float, str] = (2, 0.0, "")
    for manager in managers:
        if not (manager.alive and manager.accepting and manager.capacity > 0):
            continue
        if not holds(manager, memory_mb):
            continue
        waiting = pending.get(manager.id, 0)
        used = manager.running + waiting
        memory_free = not manager.capacity_memory_mb or (
            manager.memory_mb + memory_mb <= manager.capacity_memory_mb
        )
        if used < manager.capacity and memory_free:
            rank = (0, used / manager.capacity, manager.id)
        elif manager.idle > waiting:
            rank = (1, -(manager.idle - waiting) / manager.capacity, manager.id)
        else:
            continue
        if best is None or rank < best_rank:
            best, best_rank = manager, rank
    return best

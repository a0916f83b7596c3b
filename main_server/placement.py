"""Where the next cold start goes.

``choose_manager`` is a pure function over a snapshot of the registry (``shared.registry``):
no clock, no Redis, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hotpool.shared.registry import ManagerInfo


def choose_manager(
    managers: Sequence[ManagerInfo], pending: Mapping[str, int]
) -> ManagerInfo | None:
    """The least loaded live Manager with room for one more container, or None.

    ``pending`` counts cold starts this Main has sent to each Manager that its last heartbeat
    does not show yet.
    """
    best: ManagerInfo | None = None
    best_load = 2.0
    for manager in managers:
        used = manager.running + pending.get(manager.id, 0)
        if not (manager.alive and manager.accepting and used < manager.capacity):
            continue
        load = used / manager.capacity
        if best is None or load < best_load or (load == best_load and manager.id < best.id):
            best, best_load = manager, load
    return best

"""Which Managers are alive, and where the next cold start goes.

``choose_manager`` is a pure function over a snapshot: no clock, no Redis, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from hotpool.shared import keys


@dataclass(frozen=True)
class ManagerInfo:
    """A Manager as its last heartbeat described it."""

    id: str
    url: str
    capacity: int
    running: int
    accepting: bool
    heartbeat_at: float
    alive: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "url": self.url,
            "capacity": self.capacity,
            "running": self.running,
            "accepting": self.accepting,
            "heartbeat_at": self.heartbeat_at,
            "alive": self.alive,
        }


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


class ManagerRegistry:
    """Reads Manager registrations from Redis, caching the snapshot for a short while."""

    def __init__(self, redis: Redis, *, cache_s: float = 0.5) -> None:
        self._redis = redis
        self._cache_s = cache_s
        self._snapshot: list[ManagerInfo] = []
        self._read_at = float("-inf")  # the first snapshot() always reads
        self.pending: dict[str, int] = {}

    async def snapshot(self, *, fresh: bool = False) -> list[ManagerInfo]:
        now = time.monotonic()
        if fresh or now - self._read_at > self._cache_s:
            self._snapshot = await self._read()
            self._read_at = now
        return self._snapshot

    async def _read(self) -> list[ManagerInfo]:
        registrations = await self._redis.hgetall(keys.MANAGERS)
        if not registrations:
            return []
        ids = [k.decode() if isinstance(k, bytes) else k for k in registrations]
        alive = await self._redis.mget([keys.manager_alive(i) for i in ids])
        managers = []
        for manager_id, raw, beat in zip(ids, registrations.values(), alive, strict=True):
            info = orjson.loads(raw)
            managers.append(
                ManagerInfo(
                    id=manager_id,
                    url=info["url"],
                    capacity=int(info["capacity"]),
                    running=int(info["running"]),
                    accepting=bool(info.get("accepting", True)),
                    heartbeat_at=float(info["heartbeat_at"]),
                    alive=beat is not None,
                )
            )
        return managers

    async def url_of(self, manager_id: str) -> str | None:
        for manager in await self.snapshot():
            if manager.id == manager_id:
                return manager.url
        for manager in await self.snapshot(fresh=True):
            if manager.id == manager_id:
                return manager.url
        return None

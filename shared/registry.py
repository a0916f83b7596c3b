"""The Manager registry in Redis: which Managers are up, where, with how much room, and which
containers each one runs. This module is the only one that reads or writes these keys:

- ``keys.MANAGERS``          HASH manager id -> JSON registration (url, capacity, running, ...)
- ``keys.manager_alive(id)`` STRING with a TTL: the Manager's heartbeat
- ``keys.containers(id)``    HASH container id -> pool entry: the Manager's live containers

A Manager writes its own part through ``ManagerRegistration``; Main reads every Manager's and
purges the dead ones through ``ManagerRegistry``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.redis_conn import text


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
    idle: int = 0  # containers sitting idle, which a cold start may evict
    memory_mb: int = 0  # MB its containers hold
    capacity_memory_mb: int = 0  # MB it may give its containers; 0 = not reported

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "url": self.url,
            "capacity": self.capacity,
            "running": self.running,
            "accepting": self.accepting,
            "heartbeat_at": self.heartbeat_at,
            "alive": self.alive,
            "idle": self.idle,
            "memory_mb": self.memory_mb,
            "capacity_memory_mb": self.capacity_memory_mb,
        }


class ManagerRegistration:
    """One Manager's own part of the registry: its registration, heartbeat and containers."""

    def __init__(self, redis: Redis, manager_id: str, *, alive_ttl_s: float) -> None:
        self._redis = redis
        self.manager_id = manager_id
        self._alive_ttl_s = alive_ttl_s
        self._containers = keys.containers(manager_id)

    async def heartbeat(
        self,
        info: Mapping[str, object],
        ready: Iterable[PoolEntry],
        is_known: Callable[[str], bool],
    ) -> None:
        """Publish ``info``, renew the alive key, re-assert the ``ready`` containers and drop
        registered containers for which ``is_known(id)`` is false, in one round trip (plus one
        when there is something to drop). ``is_known`` is asked after the round trip."""
        mapping = {entry.container_id: entry.encode() for entry in ready}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.MANAGERS, self.manager_id, orjson.dumps(info))
            pipe.set(keys.manager_alive(self.manager_id), b"1", px=int(self._alive_ttl_s * 1000))
            if mapping:
                # Redis may have lost the hash (a restart without persistence, a failover to a
                # lagging replica): every beat rebuilds it
                pipe.hset(self._containers, mapping=mapping)
            pipe.hkeys(self._containers)
            *_, registered = await pipe.execute()
        stale = [cid for cid in map(text, registered) if not is_known(cid)]
        if stale:
            await self._redis.hdel(self._containers, *stale)

    async def register(self, entry: PoolEntry) -> None:
        """Record a container of this Manager as live."""
        await self._redis.hset(self._containers, entry.container_id, entry.encode())

    async def forget(self, container_id: str) -> None:
        """Record that a container of this Manager is gone."""
        await self._redis.hdel(self._containers, container_id)

    async def registered(self) -> dict[str, PoolEntry]:
        """The containers recorded as live, by id (a previous run's included)."""
        found = await self._redis.hgetall(self._containers)
        return {text(cid): PoolEntry.decode(raw) for cid, raw in found.items()}

    async def deregister(self) -> None:
        """Withdraw this Manager: no cold start is placed on it any more."""
        await self._redis.hdel(keys.MANAGERS, self.manager_id)
        await self._redis.delete(keys.manager_alive(self.manager_id))


class ManagerRegistry:
    """Main's side: reads every registration, caching the snapshot for a short while, and
    purges the Managers whose heartbeat stopped."""

    def __init__(self, redis: Redis, *, cache_s: float = 0.5) -> None:
        self._redis = redis
        self._cache_s = cache_s
        self._snapshot: list[ManagerInfo] = []
        self._read_at = float("-inf")  # the first snapshot() always reads
        self._purge = redis.register_script(keys.PURGE_MANAGER)
        # cold starts this Main has sent to each Manager that its last heartbeat does not show
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
        ids = [text(k) for k in registrations]
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
                    idle=int(info.get("idle", 0)),
                    memory_mb=int(info.get("memory_mb", 0)),
                    capacity_memory_mb=int(info.get("capacity_memory_mb", 0)),
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

    async def registered_ids(self) -> list[str]:
        """Every Manager with a registration, alive or not (read now, not cached)."""
        return [text(raw) for raw in await self._redis.hkeys(keys.MANAGERS)]

    async def live_entries(self, manager_ids: Iterable[str]) -> set[str]:
        """The encoded entries of every container these Managers registered as live."""
        found: set[str] = set()
        for manager_id in manager_ids:
            found.update(text(raw) for raw in await self._redis.hvals(keys.containers(manager_id)))
        return found

    async def purge(self, manager_id: str) -> list[PoolEntry] | None:
        """Forget a dead Manager and every container it registered (out of the pool lists,
        the leases and its idle set); return those containers. None when its alive key is
        back (it restarted under the same id): then nothing is touched."""
        removed = await self._purge(
            keys=[
                keys.MANAGERS,
                keys.manager_alive(manager_id),
                keys.containers(manager_id),
                keys.idle(manager_id),
                keys.LEASES,
            ],
            args=[manager_id, keys.POOL_PREFIX, keys.FV_PREFIX],
        )
        if removed == 0:
            return None
        return [PoolEntry.decode(raw) for raw in removed]

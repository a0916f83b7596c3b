"""The Redis warm pool: acquire, release, lease, evict, retire — one Lua script each.

Keys and scripts live in ``shared.keys``; this module only runs them. Every method takes
``now`` implicitly from the injected clock so tests can drive time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from shared import keys
from shared.models import PoolEntry


@dataclass(frozen=True)
class PoolCounts:
    """A snapshot of the pool for /system/status."""

    idle: dict[str, int]  # "function:version" -> idle containers
    leased: dict[str, int]  # "function:version" -> leased (busy) containers


class Pool:
    """The warm pool of idle containers, shared by every Main and Manager through Redis."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._acquire = redis.register_script(keys.ACQUIRE)
        self._lease = redis.register_script(keys.LEASE)
        self._release = redis.register_script(keys.RELEASE)
        self._remove_idle = redis.register_script(keys.REMOVE_IDLE)
        self._evict = redis.register_script(keys.EVICT)
        self._retire = redis.register_script(keys.RETIRE)

    async def acquire(self, function: str, version: int, lease_s: float) -> PoolEntry | None:
        """Take an idle container of this version and lease it, or None when the list is empty."""
        raw = await self._acquire(
            keys=[keys.pool(function, version), keys.LEASES], args=[self._clock() + lease_s]
        )
        return PoolEntry.decode(raw) if raw is not None else None

    async def lease(self, entry: PoolEntry, lease_s: float) -> None:
        """Lease a container that never was in the list (a fresh cold start)."""
        await self._lease(keys=[keys.LEASES], args=[entry.encode(), self._clock() + lease_s])

    async def release(self, entry: PoolEntry) -> int:
        """Give a leased container back.

        Returns 1 when it is back in the pool, 0 when its version is retired (the caller
        removes it), -1 when its lease was already gone (reclaimed or evicted; nothing to do).
        """
        return int(
            await self._release(
                keys=[
                    keys.pool(entry.function, entry.version),
                    keys.LEASES,
                    keys.retired(entry.function, entry.version),
                    keys.idle(entry.manager_id),
                ],
                args=[entry.encode(), self._clock()],
            )
        )

    async def remove_idle(self, entry: PoolEntry) -> bool:
        """Take an idle container out of its list; False means it is in use (leave it alone)."""
        removed = await self._remove_idle(
            keys=[keys.pool(entry.function, entry.version), keys.idle(entry.manager_id)],
            args=[entry.encode()],
        )
        return int(removed) == 1

    async def evict(self, entry: PoolEntry) -> None:
        """Forget a dead or killed container: out of its list, its lease and the idle set."""
        await self._evict(
            keys=[
                keys.pool(entry.function, entry.version),
                keys.LEASES,
                keys.idle(entry.manager_id),
            ],
            args=[entry.encode()],
        )

    async def retire(self, function: str, version: int) -> list[PoolEntry]:
        """Stop a version taking containers back; return its idle containers for removal."""
        raw = await self._retire(
            keys=[keys.pool(function, version), keys.retired(function, version)],
            args=[keys.retired_marker_ttl_s],
        )
        return [PoolEntry.decode(item) for item in raw]

    async def unretire(self, function: str, version: int) -> None:
        await self._redis.delete(keys.retired(function, version))

    async def idle_since(self, manager_id: str, cutoff: float) -> list[PoolEntry]:
        """Entries of a Manager that have been idle since before ``cutoff``."""
        raw = await self._redis.zrangebyscore(keys.idle(manager_id), "-inf", cutoff)
        return [PoolEntry.decode(item) for item in raw]

    async def expired_leases(self, now: float) -> list[PoolEntry]:
        raw = await self._redis.zrangebyscore(keys.LEASES, "-inf", now)
        return [PoolEntry.decode(item) for item in raw]

    async def counts(self) -> PoolCounts:
        idle: dict[str, int] = {}
        async for key in self._redis.scan_iter(match=keys.POOL_PREFIX + "*", count=500):
            name = key.decode() if isinstance(key, bytes) else key
            length = await self._redis.llen(name)
            if length:
                idle[name.removeprefix(keys.POOL_PREFIX)] = length
        leased: dict[str, int] = {}
        for raw in await self._redis.zrange(keys.LEASES, 0, -1):
            entry = PoolEntry.decode(raw)
            label = f"{entry.function}:{entry.version}"
            leased[label] = leased.get(label, 0) + 1
        return PoolCounts(idle=idle, leased=leased)

"""The pool's janitor: reclaims expired leases, purges dead Managers, returns orphans.

Exactly one process runs it at a time across every Main replica: each pass first takes or
renews a Redis lock, and a process that does not hold it skips the pass. The decisions are
pure functions over snapshots (``reclaim_action``, ``due_orphans``), tested without Redis.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from enum import Enum

import aiohttp
import orjson

from hotpool.main_server.ports import ManagerApi
from hotpool.shared import keys
from hotpool.shared.loops import every
from hotpool.shared.models import CONTAINER_SECRET_HEADER, PoolEntry
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import REDIS_ERRORS
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

health_timeout_s = 1.0


class Health(Enum):
    IDLE = "idle"  # answers and runs nothing
    BUSY = "busy"  # answers, and still runs the call of the caller that died
    DEAD = "dead"  # does not answer


class Action(Enum):
    RETURN = "return"  # back into the pool
    EXTEND = "extend"  # lease it again for a grace period and look later
    REMOVE = "remove"  # evict and remove the container


def reclaim_action(health: Health, manager_alive: bool) -> Action:
    """What to do with a container whose lease expired."""
    if not manager_alive or health is Health.DEAD:
        return Action.REMOVE
    if health is Health.BUSY:
        return Action.EXTEND
    return Action.RETURN


def due_orphans(
    suspects: dict[str, float], unplaced: set[str], now: float, grace_s: float
) -> tuple[set[str], dict[str, float]]:
    """Orphans to return now, and the suspects to keep watching.

    A live container that is in neither a pool list nor a lease is normal for a moment (a
    cold start between registration and lease, a BLPOP before its lease); only one that stays
    unplaced for ``grace_s`` was lost by a caller that died.
    """
    watching = {entry: suspects.get(entry, now) for entry in unplaced}
    due = {entry for entry, since in watching.items() if now - since >= grace_s}
    return due, {e: t for e, t in watching.items() if e not in due}


class Reaper:
    """One pass every ``lease_reaper_interval_s``, while this process holds the lock."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: Pool,
        registry: ManagerRegistry,
        managers: ManagerApi,
        http: aiohttp.ClientSession,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._registry = registry
        self._managers = managers
        self._http = http
        self.owner = f"main-{uuid.uuid4().hex[:12]}"
        self._suspects: dict[str, float] = {}
        self.counters: Counter[str] = Counter()

    async def run_forever(self) -> None:
        await every(self._settings.lease_reaper_interval_s, "lease reaper pass", self.step)

    async def step(self) -> bool:
        """One pass; False when another process holds the lock."""
        ttl_s = self._settings.lease_reaper_interval_s * 3
        if not await self._pool.hold_lock(keys.REAPER_LOCK, self.owner, ttl_s):
            self._suspects.clear()  # another reaper watches them now
            return False
        alive = {m.id for m in await self._registry.snapshot(fresh=True) if m.alive}
        await self.purge_dead_managers(alive)
        await self.reclaim_expired(alive)
        await self.return_orphans(alive)
        return True

    async def close(self) -> None:
        try:
            await self._pool.release_lock(keys.REAPER_LOCK, self.owner)
        except REDIS_ERRORS:
            pass

    async def reclaim_expired(self, alive: set[str]) -> None:
        for entry in await self._pool.expired_leases(time.time()):
            if not await self._pool.reclaim(entry):
                continue  # released in the meantime
            health = await self._health(entry)
            action = reclaim_action(health, entry.manager_id in alive)
            self.counters[f"reclaimed_{action.value}"] += 1
            log.info("expired lease of %s: %s -> %s", entry.container_id, health, action)
            if action is Action.RETURN:
                if not await self._pool.put_back(entry):
                    await self._managers.remove(entry)  # its version was retired
            elif action is Action.EXTEND:
                await self._pool.lease(entry, self._settings.lease_grace_s)
            else:
                await self._pool.evict(entry)
                await self._managers.remove(entry)

    async def purge_dead_managers(self, alive: set[str]) -> None:
        """Forget every container of a Manager whose heartbeat stopped."""
        for manager_id in await self._registry.registered_ids():
            if manager_id in alive:
                continue
            entries = await self._registry.purge(manager_id)
            if entries is None:
                log.info("manager %s came back before its purge; left alone", manager_id)
                continue
            self.counters["dead_managers"] += 1
            self.counters["purged_entries"] += len(entries)
            log.warning("manager %s is dead: purged %d containers", manager_id, len(entries))

    async def return_orphans(self, alive: set[str]) -> None:
        live = await self._registry.live_entries(alive)
        unplaced = live - await self._pool.placed()
        due, self._suspects = due_orphans(
            self._suspects, unplaced, time.monotonic(), self._settings.orphan_grace_s
        )
        for raw in due:
            entry = PoolEntry.decode(raw)
            # it may have been placed since the snapshot; put_back removes any copy first
            if await self._pool.is_placed(entry):
                continue
            health = await self._health(entry)
            if health is Health.BUSY:
                # still running a call whose lease was lost (Redis restarted under it): handing
                # it out now would get 409 Busy; keep it due and look again next pass
                self._suspects[raw] = time.monotonic() - self._settings.orphan_grace_s
                self.counters["orphans_busy"] += 1
                continue
            if health is Health.IDLE:
                self.counters["orphans_returned"] += 1
                if not await self._pool.put_back(entry):
                    await self._managers.remove(entry)

    async def _health(self, entry: PoolEntry) -> Health:
        try:
            async with self._http.get(
                f"http://{entry.address}/healthz",
                headers={CONTAINER_SECRET_HEADER: entry.secret},
                timeout=aiohttp.ClientTimeout(total=health_timeout_s),
            ) as resp:
                body = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return Health.DEAD
        if resp.status != 200:  # e.g. 401: not the container this entry names
            return Health.DEAD
        return Health.BUSY if body.get("busy") else Health.IDLE

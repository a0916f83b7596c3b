"""Watching the cluster: Main counters, Manager containers, the pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from hotpool.benchmarks.chaos.cluster import Cluster, bootstrap_processes
from hotpool.benchmarks.chaos.config import MAINS, POLL_S
from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.redis_conn import REDIS_ERRORS

# ---------------------------------------------------------------------------------------------
# observing the cluster


class CounterBank:
    """Main counters across restarts: a killed Main's last values are banked."""

    def __init__(self) -> None:
        self.current: list[Counter[str]] = [Counter() for _ in range(MAINS)]
        self.banked: Counter[str] = Counter()

    def update(self, i: int, counters: dict[str, int]) -> None:
        self.current[i] = Counter(counters)

    def bank(self, i: int) -> None:
        self.banked += self.current[i]
        self.current[i] = Counter()

    def total(self) -> Counter[str]:
        total = Counter(self.banked)
        for counters in self.current:
            total.update(counters)
        return total


@dataclass
class PoolState:
    """What the Managers run and what Redis says about it, at one moment."""

    described: dict[str, dict[str, Any]]  # container id -> Manager's description (+ manager)
    lists: dict[str, list[str]]  # pool key -> entries
    leases: dict[str, float]  # entry -> deadline
    registered: dict[str, set[str]]  # manager id -> container ids in hp:containers:<id>
    unreachable: list[str]  # Managers that did not answer


def analyse_pool(state: PoolState) -> dict[str, list[Any]]:
    """Invariant 2 over one snapshot: every ready container in exactly one place."""
    places: Counter[str] = Counter()
    entries: list[str] = []
    for items in state.lists.values():
        entries.extend(items)
    entries.extend(state.leases)
    for raw in entries:
        places[PoolEntry.decode(raw).container_id] += 1
    ready = {cid for cid, c in state.described.items() if c["state"] == "ready"}
    return {
        "leaked": sorted(ready - set(places)),
        "stale_entries": sorted(
            e for e in entries if PoolEntry.decode(e).container_id not in state.described
        ),
        "double_placed": sorted(cid for cid, n in places.items() if n > 1),
        "unregistered": sorted(
            cid
            for cid in ready
            if cid not in state.registered.get(state.described[cid]["manager"], set())
        ),
    }


class Observer:
    """Polls the cluster every second: Main counters, Managers' containers, Redis placements."""

    def __init__(self, cluster: Cluster, http: aiohttp.ClientSession, t0: float) -> None:
        self.cluster = cluster
        self.http = http
        self.t0 = t0
        self.redis = aioredis.Redis(
            port=cluster.redis_port, socket_timeout=1, socket_connect_timeout=0.5
        )
        self.counters = CounterBank()
        self.seen_containers: dict[str, dict[str, Any]] = {}
        self.last_placed: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **detail: Any) -> None:
        self.events.append({"t": round(time.time() - self.t0, 2), "kind": kind, **detail})

    async def close(self) -> None:
        await self.redis.aclose()

    async def _get(
        self, url: str, timeout_s: float = 1.0, headers: dict[str, str] | None = None
    ) -> Any:
        """GET with the session's admin key, or ``headers`` (a Manager's shared secret)."""
        async with self.http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_s), headers=headers
        ) as resp:
            if resp.status != 200:
                return None
            return await resp.json()

    async def poll_main(self, i: int, timeout_s: float = 1.0) -> None:
        name = f"main{i}"
        generation = self.cluster.generation[name]
        if not self.cluster.up(name):
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            status = await self._get(self.cluster.main_url(i) + "/system/status", timeout_s)
            # a reply from a Main killed (and banked) meanwhile must not count again
            if status is not None and generation == self.cluster.generation[name]:
                if self.cluster.up(name):
                    self.counters.update(i, status.get("counters", {}))

    async def managers(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        described: dict[str, dict[str, Any]] = {}
        unreachable = []
        for i, manager_id in enumerate(self.cluster.manager_ids):
            try:
                data = await self._get(
                    self.cluster.manager_url(i) + "/v1/containers",
                    headers=self.cluster.manager_headers,
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                data = None
            if data is None:
                unreachable.append(manager_id)
                continue
            for container in data["containers"]:
                described[container["container_id"]] = {**container, "manager": manager_id}
        now = round(time.time() - self.t0, 2)
        for cid, container in described.items():
            self.seen_containers.setdefault(cid, {**container, "first_seen_t": now})
            self.seen_containers[cid]["last_seen_t"] = now
        return described, unreachable

    async def pool_state(self) -> PoolState:
        described, unreachable = await self.managers()
        lists: dict[str, list[str]] = {}
        async for key in self.redis.scan_iter(match=keys.POOL_PREFIX + "*", count=500):
            lists[key.decode()] = [e.decode() for e in await self.redis.lrange(key, 0, -1)]
        leases = {
            m.decode(): s for m, s in await self.redis.zrange(keys.LEASES, 0, -1, withscores=True)
        }
        registered = {}
        for manager_id in self.cluster.manager_ids:
            ids = await self.redis.hkeys(keys.containers(manager_id))
            registered[manager_id] = {c.decode() for c in ids}
        now = round(time.time() - self.t0, 2)
        for raw in [*leases, *(e for items in lists.values() for e in items)]:
            self.last_placed[PoolEntry.decode(raw).container_id] = now
        return PoolState(described, lists, leases, registered, unreachable)

    async def untracked_processes(self) -> dict[str, list[str]]:
        """Per live Manager, its container processes it neither describes nor counts as
        pre-warmed: containers it lost track of while they kept running (ids of every
        undescribed child are listed, as pre-warmed ids are not published)."""
        processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
        untracked = {}
        for i, manager_id in enumerate(self.cluster.manager_ids):
            proc = self.cluster.procs.get(f"mgr{i}")
            if proc is None or proc.poll() is not None:
                continue
            try:
                health = await self._get(self.cluster.manager_url(i) + "/healthz")
                listed = await self._get(
                    self.cluster.manager_url(i) + "/v1/containers",
                    headers=self.cluster.manager_headers,
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            if health is None or listed is None:
                continue
            described = {c["container_id"] for c in listed["containers"]}
            children = [b.container_id for b in processes if b.ppid == proc.pid]
            extra = len(children) - len(described) - int(health.get("prewarmed", 0))
            if extra > 0:
                untracked[manager_id] = [c for c in children if c not in described][: extra + 2]
                untracked[manager_id].insert(0, f"{extra} untracked")
        return untracked

    async def poll_once(self) -> None:
        await asyncio.gather(*(self.poll_main(i) for i in range(MAINS)))
        with contextlib.suppress(*REDIS_ERRORS):
            await self.pool_state()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

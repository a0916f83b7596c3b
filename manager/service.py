"""The Manager's work: start, specialise, track and remove the containers of one node."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

import aiohttp
from redis.asyncio import Redis

from hotpool.manager.backend import (
    ContainerBackend,
    ContainerState,
    ExitStatus,
)
from hotpool.manager.containers import LOADED, ContainerTable, Record
from hotpool.manager.prewarm import PrewarmPool
from hotpool.manager.room import NodeRoom
from hotpool.manager.specialise import CreateRequest, connections_env, load_code
from hotpool.shared.codestore import CodeStore
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    NoCapacity,
    NotFound,
    StoreUnavailable,
)
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import REDIS_ERRORS, redis_errors
from hotpool.shared.registry import ManagerRegistration
from hotpool.shared.settings import Settings
from hotpool.shared.ws_token import ConnectionTokens

log = logging.getLogger(__name__)

drain_poll_interval_s = 0.1


class ManagerService:
    """Creates, specialises, reaps and removes the containers of this node."""

    def __init__(
        self,
        settings: Settings,
        *,
        manager_id: str,
        backend: ContainerBackend,
        code_store: CodeStore,
        redis: Redis,
        http: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.manager_id = manager_id
        self.url = settings.effective_manager_url
        self._backend = backend
        self._code = code_store
        self._pool = Pool(redis)
        self._tokens = ConnectionTokens(redis)
        self._registration = ManagerRegistration(
            redis, manager_id, alive_ttl_s=settings.heartbeat_ttl_s
        )
        self._http = http
        self.containers = ContainerTable()
        self.accepting = True
        self.healthy = True
        self.heartbeat_ok_at = 0.0  # when a heartbeat last reached Redis (0: never)
        self.prewarm = PrewarmPool(
            backend,
            self.containers,
            runtimes=settings.prewarmed_runtimes,
            count=settings.prewarm_count,
            memory_mb=settings.prewarm_memory_mb,
            labels={"hotpool.manager": manager_id},
            capacity=settings.capacity_containers,
            capacity_memory_mb=settings.effective_capacity_memory_mb,
        )
        self._room = NodeRoom(
            settings,
            manager_id=manager_id,
            containers=self.containers,
            pool=self._pool,
            remove=self.remove,
        )
        backend.on_exit(self.on_container_exit)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def running(self) -> int:
        """Containers on this node: specialised, starting and pre-warmed."""
        return self.containers.running

    @property
    def serving(self) -> int:
        """Containers counted against capacity for cold starts (pre-warmed ones are spare)."""
        return self.containers.serving

    async def create(self, request: CreateRequest) -> dict[str, Any]:
        """Start a container, load the function's code, and register it as live."""
        if not self.accepting:
            raise NoCapacity(f"manager {self.manager_id} is shutting down")
        await self._room.make(request)
        platform_env = await connections_env(request, self.settings, self._tokens)
        # the start counts against capacity from now on, while the code downloads
        starting = self.containers.begin(request.config.runtime, request.config.memory_mb)
        begun = time.perf_counter()
        try:
            # every package through the node's cache: a layer many functions share is
            # downloaded once
            code, *layers = await asyncio.gather(*map(self._code.get, request.packages()))
            fetched = time.perf_counter()
            # an image function's container is its own image: no generic one will do
            record = None if request.config.image else self.prewarm.take(request.config.runtime)
            if record is None:
                spec = request.spec(
                    self.manager_id,
                    region=self.settings.function_region,
                    platform_env=platform_env,
                )
                container = await self._backend.start(spec)
                self.containers.started(starting, container)
                record = starting
                record.move(ContainerState.INITIALISING)
        finally:
            if starting.state is ContainerState.STARTING:
                # no container came of it: a pre-warmed one was taken, or the fetch or start failed
                self.containers.discard(starting)
        started = time.perf_counter()
        prewarmed = record.prewarmed
        try:
            if prewarmed and record.memory_mb != request.config.memory_mb:
                await self._backend.set_memory(record.id, request.config.memory_mb)
                record.resize(request.config.memory_mb)
            loaded = await load_code(
                self._http,
                record.container,
                request,
                code,
                layers=tuple(layers),
                platform_env=platform_env,
                log_limit_bytes=self.settings.log_limit_bytes,
                timeout_s=self.settings.container_ready_timeout_s,
                region=self.settings.function_region,
            )
        except ContainerFailed as exc:
            # the container died while the module loaded: an OOM kill or a crash at import is
            # the function's doing, reported as the function error its exit status names
            ended = await self.remove(record.id, failed=True)
            if ended is None:
                raise
            error_type, message = ended.describe()
            raise FunctionError(
                f"loading the function failed: {message}", error_type=error_type, phase="init"
            ) from exc
        except BaseException:
            await self.remove(record.id)
            raise
        container = record.container
        entry = PoolEntry(
            request.function,
            request.version,
            self.manager_id,
            container.id,
            container.address,
            container.secret,
        )
        record.entry = entry
        try:
            with redis_errors("the pool"):
                await self._registration.register(entry)
        except StoreUnavailable:
            # Main cannot lease it without Redis either: never keep a container nobody asked for
            await self.remove(container.id)
            raise
        # unless it died (or was removed) meanwhile: then its caller finds it gone, as before
        if record.state is ContainerState.INITIALISING:
            record.move(ContainerState.READY)
        return {
            "container_id": container.id,
            "address": container.address,
            "manager_id": self.manager_id,
            "entry": entry.encode(),
            "prewarmed": prewarmed,
            "fetch_ms": round((fetched - begun) * 1000, 3),
            "start_ms": round((started - fetched) * 1000, 3),
            "init_ms": loaded.init_ms,
            "total_ms": round((time.perf_counter() - begun) * 1000, 3),
            # what the module printed and logged at import: the cold call's record begins with it
            "init_stdout": loaded.stdout,
            "init_stderr": loaded.stderr,
        }

    async def remove(self, container_id: str, *, failed: bool = False) -> ExitStatus | None:
        """Remove a container and every trace of it in Redis.

        With ``failed`` (the caller lost its connection mid-call), first wait briefly for the
        container to end, and return how it ended: the caller turns an OOM kill or a crash into
        the function error it is. A container that already died on its own answers the same.
        """
        record = self.containers.loaded(container_id)
        if record is None:
            if (ended := self.containers.exit_of(container_id)) is not None:
                return ended
            raise NotFound(f"container {container_id!r} is not managed by {self.manager_id}")
        with self.containers.removing(record):
            await self._forget(record)
            status = None
            if failed:
                status = await self._backend.exit_status(container_id, wait_s=1.0)
                if status is not None:
                    status = dataclasses.replace(status, memory_mb=record.memory_mb)
            await self._backend.remove(container_id)
        return status

    async def _forget(self, managed: Record) -> None:
        try:
            await self._registration.forget(managed.container.id)
            if managed.entry is not None:
                await self._pool.evict(managed.entry)
        except REDIS_ERRORS as exc:
            # the container goes regardless: Main evicts a stale entry on its first failed
            # connect, and reconcile() purges this Manager's leftovers at its next start
            log.warning("could not forget %s in Redis: %s", managed.container.id, exc)

    async def on_container_exit(self, container_id: str) -> None:
        """A container died on its own: make sure no request is sent to it again."""
        if self.prewarm.forget(container_id):
            return
        record = self.containers.loaded(container_id)
        if record is None:
            return
        with self.containers.removing(record):
            log.warning("container %s died; evicting it from the pool", container_id)
            status = await self._backend.exit_status(container_id) or ExitStatus(None)
            ended = dataclasses.replace(status, memory_mb=record.memory_mb)
            self.containers.remember_exit(container_id, ended)
            await self._forget(record)
            with contextlib.suppress(Exception):
                await self._backend.remove(container_id)

    async def reap_idle(self, now: float) -> list[str]:
        """Remove containers idle for longer than ``idle_ttl_s``; return their ids."""
        cutoff = now - self.settings.idle_ttl_s
        reaped = []
        for entry in await self._pool.idle_since(self.manager_id, cutoff):
            # LREM first: if it removed nothing the container was just leased — leave it alone
            if await self._pool.remove_idle(entry):
                if self.containers.loaded(entry.container_id) is not None:
                    await self.remove(entry.container_id)
                reaped.append(entry.container_id)
        return reaped

    async def heartbeat(self) -> None:
        self.healthy = await self._backend.healthy()
        info = {
            "id": self.manager_id,
            "url": self.url,
            "backend": self._backend.name,
            "capacity": self.settings.capacity_containers,
            "running": self.running,
            # a cold start may evict these, so a node full of them still takes cold starts
            "idle": await self._pool.idle_count(self.manager_id),
            "memory_mb": self.containers.memory_mb,
            "capacity_memory_mb": self.settings.effective_capacity_memory_mb,
            "accepting": self.accepting and self.healthy,
            "healthy": self.healthy,
            "heartbeat_at": time.time(),
        }
        # every beat also re-asserts which containers live here: if Redis lost its data
        # (a restart without persistence, a failover to a lagging replica), the registry is
        # rebuilt, and the reaper returns the containers no list or lease holds any more
        # the predicate runs after the round trip: a container that create() registered
        # meanwhile (it was initialising when the beat began) must not be dropped
        await self._registration.heartbeat(
            info,
            self.containers.ready_entries(),
            is_known=lambda cid: self.containers.loaded(cid) is not None,
        )
        self.heartbeat_ok_at = time.time()

    async def deregister(self) -> None:
        await self._registration.deregister()

    def describe(self) -> list[dict[str, Any]]:
        return self.containers.describe()

    async def reconcile(self) -> list[str]:
        """At start: remove containers of this Manager it does not know (left by a previous
        run), and purge its pool entries that point at containers that no longer exist."""
        known = self.containers.known_ids()
        strays = [cid for cid in await self._backend.list_ids() if cid not in known]
        await asyncio.gather(*(self._backend.remove(cid) for cid in strays))
        registered = await self._registration.registered()
        for cid, entry in registered.items():
            if self.containers.loaded(cid) is None:
                await self._pool.evict(entry)
                await self._registration.forget(cid)
        # idle-set members of containers that are gone
        for entry in await self._pool.idle_since(self.manager_id, float("inf")):
            if self.containers.loaded(entry.container_id) is None:
                await self._pool.evict(entry)
        if strays:
            log.info("reconcile removed %d stray containers", len(strays))
        return strays

    async def drain(self, timeout_s: float) -> None:
        """Stop taking cold starts; remove idle containers at once and busy ones as their
        calls end, waiting at most ``timeout_s``; then remove whatever is left."""
        self.accepting = False
        await self.heartbeat()  # tell Main now, not at the next beat
        await self.prewarm.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.containers.loaded_ids() and loop.time() < deadline:
            for record in self.containers.in_state(*LOADED):
                if record.entry is not None and await self._pool.remove_idle(record.entry):
                    await self.remove(record.id)
            if self.containers.loaded_ids():
                await asyncio.sleep(drain_poll_interval_s)
        if busy := self.containers.loaded_ids():
            log.warning("drain timed out; removing %d busy containers", len(busy))

    async def shutdown(self) -> None:
        """Drain, remove every container, and deregister — with Redis away too: the
        containers must not outlive their Manager."""
        try:
            await self.drain(self.settings.drain_timeout_s)
        except REDIS_ERRORS as exc:
            log.warning("drain cut short, Redis unreachable: %s", exc)
        await asyncio.gather(
            *(self.remove(cid) for cid in self.containers.loaded_ids()), return_exceptions=True
        )
        await self._backend.close()
        try:
            await self.deregister()
        except REDIS_ERRORS as exc:
            log.warning("could not deregister, Redis unreachable: %s", exc)

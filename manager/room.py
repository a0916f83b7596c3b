"""Making room on a full node for a cold start: the Manager's side of eviction.

``eviction.choose_victims`` decides, purely, which idle containers go; this module gathers the
snapshot it decides over (the node's idle READY containers, what the node uses) and removes
the victims, each only if Main has not just leased it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from hotpool.manager.backend import ContainerState
from hotpool.manager.containers import ContainerTable
from hotpool.manager.eviction import IdleContainer, NodeUse, choose_victims
from hotpool.manager.specialise import CreateRequest
from hotpool.shared.errors import NoCapacity, NotFound
from hotpool.shared.pool import Pool
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)


class NodeRoom:
    """Evicts idle containers of this node so that one more container fits."""

    def __init__(
        self,
        settings: Settings,
        *,
        manager_id: str,
        containers: ContainerTable,
        pool: Pool,
        remove: Callable[[str], Awaitable[object]],
    ) -> None:
        self.settings = settings
        self.manager_id = manager_id
        self._containers = containers
        self._pool = pool
        self._remove = remove  # the Manager's removal: the container and its traces in Redis

    async def make(self, request: CreateRequest) -> None:
        """Evict idle containers of other versions, least recently used first, until one more
        container of ``request`` fits; NoCapacity(full=True) when only busy ones are left.

        Nothing is awaited between the last check and the caller's ``begin``, so two cold
        starts cannot both take the room one eviction made.
        """
        memory_mb = request.config.memory_mb
        limit_mb = self.settings.effective_capacity_memory_mb
        if memory_mb > limit_mb:
            raise NoCapacity(
                f"{request.function} needs {memory_mb} MB, more than manager {self.manager_id} "
                f"may give all its containers (HOTPOOL_CAPACITY_MEMORY_MB={limit_mb})"
            )
        tried: set[str] = set()
        while True:
            idle = [c for c in await self._idle_containers() if c.entry.container_id not in tried]
            victims = choose_victims(
                idle,
                # an image function takes no pre-warmed container: none of them is its room
                self._use("" if request.config.image else request.config.runtime, limit_mb),
                memory_mb=memory_mb,
                function=request.function,
                version=request.version,
            )
            if victims is None:
                raise NoCapacity(
                    f"manager {self.manager_id} is at capacity "
                    f"({self.settings.capacity_containers} containers, {limit_mb} MB) "
                    "and none of its containers is idle",
                    full=True,
                )
            if not victims:
                return
            for victim in victims:
                tried.add(victim.entry.container_id)
                # LREM first: if it removed nothing the container was just leased — spare it
                if await self._pool.remove_idle(victim.entry):
                    log.info(
                        "evicting idle container %s of %s v%d for a cold start of %s",
                        victim.entry.container_id,
                        victim.entry.function,
                        victim.entry.version,
                        request.function,
                    )
                    with contextlib.suppress(NotFound):  # it died meanwhile: gone all the same
                        await self._remove(victim.entry.container_id)

    async def _idle_containers(self) -> list[IdleContainer]:
        """This node's READY containers that sit in the idle set, with when each went idle."""
        idle = []
        for entry, since in await self._pool.idle_scores(self.manager_id):
            record = self._containers.loaded(entry.container_id)
            if record is not None and record.state is ContainerState.READY:
                idle.append(IdleContainer(entry, record.memory_mb, since))
        return idle

    def _use(self, runtime: str, limit_mb: int) -> NodeUse:
        used_mb = self._containers.memory_mb
        spare = self._containers.spares(ContainerState.GENERIC, runtime=runtime)
        if spare:  # the cold start takes it (and resizes it): its MB are the request's
            used_mb -= spare[0].memory_mb
        return NodeUse(
            self._containers.serving, used_mb, self.settings.capacity_containers, limit_mb
        )

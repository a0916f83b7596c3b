"""Main's side of the Manager API: ask for a cold start, ask for a container's removal."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from hotpool.main_server.placement import choose_manager
from hotpool.shared.errors import ContainerFailed, FunctionError, NoCapacity, RuntimeImageMissing
from hotpool.shared.models import FunctionVersion, PoolEntry
from hotpool.shared.registry import ManagerInfo, ManagerRegistry

log = logging.getLogger(__name__)

max_placement_attempts = 3


class ManagerUnreachable(Exception):
    """Connecting to a Manager failed: the cold start never reached it."""


@dataclass(frozen=True)
class ColdStart:
    """A container a Manager started and specialised for one request."""

    entry: PoolEntry
    start_ms: float
    init_ms: float
    total_ms: float
    fetch_ms: float = 0.0
    prewarmed: bool = False
    placement_ms: float = 0.0

    def breakdown(self) -> dict[str, float | bool]:
        """Where the cold start's time went, for the execution record."""
        return {
            "placement_ms": self.placement_ms,
            "code_fetch_ms": self.fetch_ms,
            "container_start_ms": self.start_ms,
            "init_ms": self.init_ms,
            "manager_total_ms": self.total_ms,
            "prewarmed": self.prewarmed,
        }


class ManagerClient:
    """Places cold starts on Managers and removes containers through them."""

    def __init__(
        self,
        registry: ManagerRegistry,
        http: aiohttp.ClientSession,
        *,
        timeout_s: float,
        secret: str = "",
    ) -> None:
        self._registry = registry
        self._http = http
        self._headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._unreachable: dict[str, float] = {}  # manager id -> heartbeat_at when it refused

    def _reachable(self, snapshot: list[ManagerInfo]) -> list[ManagerInfo]:
        # a Manager that refused a connection is skipped until it beats again (a restart)
        return [m for m in snapshot if self._unreachable.get(m.id) != m.heartbeat_at]

    async def cold_start(self, fv: FunctionVersion) -> ColdStart:
        # nothing reaches a Manager that refuses the connection, so trying the next is safe
        begun = time.perf_counter()
        for _ in range(max_placement_attempts):
            manager = await self._place()
            try:
                return await self._cold_start_on(manager, fv, begun)
            except ManagerUnreachable:
                self._unreachable[manager.id] = manager.heartbeat_at
        raise NoCapacity("no Manager could be reached to start a container; try again")

    async def _place(self) -> ManagerInfo:
        snapshot = self._reachable(await self._registry.snapshot())
        manager = choose_manager(snapshot, self._registry.pending)
        if manager is None:
            snapshot = self._reachable(await self._registry.snapshot(fresh=True))
            manager = choose_manager(snapshot, self._registry.pending)
            if manager is None:
                if any(m.alive and m.accepting for m in snapshot):
                    # every Manager is full: worth queueing for a container to free up
                    raise NoCapacity("every Manager is at capacity", full=True)
                raise NoCapacity("no Manager is available to start a container; try again")
        return manager

    async def _cold_start_on(
        self, manager: ManagerInfo, fv: FunctionVersion, begun: float
    ) -> ColdStart:
        body = {
            "function": fv.name,
            "version": fv.version,
            "code_key": fv.code_key,
            **fv.config.to_dict(),
        }
        placement_ms = round((time.perf_counter() - begun) * 1000, 3)
        pending = self._registry.pending
        pending[manager.id] = pending.get(manager.id, 0) + 1
        try:
            async with self._http.post(
                f"{manager.url}/v1/containers",
                data=orjson.dumps(body),
                timeout=self._timeout,
                headers=self._headers,
            ) as resp:
                payload: Any = orjson.loads(await resp.read())
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise ManagerUnreachable(manager.id) from exc
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise NoCapacity(f"manager {manager.id} did not start a container: {exc}") from exc
        finally:
            pending[manager.id] -= 1
        if status == 201:
            return ColdStart(
                entry=PoolEntry.decode(payload["entry"]),
                start_ms=payload["start_ms"],
                init_ms=payload["init_ms"],
                total_ms=payload["total_ms"],
                fetch_ms=payload.get("fetch_ms", 0.0),
                prewarmed=bool(payload.get("prewarmed")),
                placement_ms=placement_ms,
            )
        error = payload.get("error", {})
        if error.get("code") == "FunctionError":
            raise FunctionError(
                error.get("message", "loading the function failed"),
                error_type=error.get("type", "InitError"),
                traceback=error.get("traceback", ""),
                phase="init",
            )
        if error.get("code") == "RuntimeImageMissing":
            raise RuntimeImageMissing(error.get("message", "the runtime image is missing"))
        if status == 503:
            raise NoCapacity(
                error.get("message", f"manager {manager.id} has no capacity"),
                full="capacity" in error.get("message", ""),
            )
        raise ContainerFailed(
            f"manager {manager.id} failed to start a container ({status}): "
            f"{error.get('message', payload)}"
        )

    async def remove(self, entry: PoolEntry, *, failed: bool = False) -> dict[str, Any] | None:
        """Ask the container's Manager to remove it.

        With ``failed``, returns how the container ended if it ended on its own (the Manager's
        ``exit``: OOM kill or crash), else None.
        """
        url = await self._registry.url_of(entry.manager_id)
        if url is None:
            return None
        query = "?failed=1" if failed else ""
        try:
            async with self._http.delete(
                f"{url}/v1/containers/{entry.container_id}{query}",
                timeout=self._timeout,
                headers=self._headers,
            ) as resp:
                if resp.status != 200:
                    return None
                return orjson.loads(await resp.read()).get("exit")
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("could not remove container %s: %s", entry.container_id, exc)
            return None

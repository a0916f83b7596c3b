"""Main's side of the Manager API: ask for a cold start, ask for a container's removal.

``ManagerClient`` is the real ``ManagerApi`` (``main_server.ports``). At its boundary
``manager_errors`` turns aiohttp's failures into hotpool's errors, and a Manager's error
answer is rebuilt from its body's ``code`` (``shared.errors.error_from_body``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import aiohttp
import orjson

from hotpool.main_server.placement import choose_manager, holds
from hotpool.main_server.ports import ColdStart
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    NoCapacity,
    NotDelivered,
    NotFound,
    RuntimeImageMissing,
    error_from_body,
)
from hotpool.shared.models import FunctionVersion, PoolEntry
from hotpool.shared.registry import ManagerInfo, ManagerRegistry

log = logging.getLogger(__name__)

max_placement_attempts = 3


@contextmanager
def manager_errors(manager_id: str, doing: str) -> Iterator[None]:
    """aiohttp's failures talking to a Manager as hotpool errors, most specific first.

    ``doing`` completes "manager m1 did not ...", e.g. "start a container".
    """
    try:
        yield
    except aiohttp.ClientConnectorError as exc:
        # the connection was never opened: nothing reached the Manager, another may be asked
        raise NotDelivered(f"manager {manager_id} could not be reached: {exc}") from exc
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        raise NoCapacity(f"manager {manager_id} did not {doing}: {exc}") from exc


def raise_refusal(manager_id: str, status: int, payload: Any) -> NoReturn:
    """Raise what a Manager's error answer to a cold start means to Main."""
    error = error_from_body(status, payload)
    if isinstance(error, (FunctionError, NoCapacity, RuntimeImageMissing)):
        raise error  # the code failed to load, or this Manager cannot start one now
    if error.status == 503:  # e.g. the Manager's Redis is away: the cluster may still have room
        raise NoCapacity(error.message) from error
    raise ContainerFailed(
        f"manager {manager_id} failed to start a container ({status}): {error.message}"
    ) from error


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
            manager = await self._place(fv.config.memory_mb)
            try:
                return await self._cold_start_on(manager, fv, begun)
            except NotDelivered:
                self._unreachable[manager.id] = manager.heartbeat_at
        raise NoCapacity("no Manager could be reached to start a container; try again")

    async def _place(self, memory_mb: int) -> ManagerInfo:
        snapshot = self._reachable(await self._registry.snapshot())
        manager = choose_manager(snapshot, self._registry.pending, memory_mb)
        if manager is None:
            snapshot = self._reachable(await self._registry.snapshot(fresh=True))
            manager = choose_manager(snapshot, self._registry.pending, memory_mb)
            if manager is None:
                up = [m for m in snapshot if m.alive and m.accepting]
                if up and not any(holds(m, memory_mb) for m in up):
                    largest = max(m.capacity_memory_mb for m in up)
                    raise NoCapacity(
                        f"the function needs {memory_mb} MB, more than any Manager may give "
                        f"its containers (the largest HOTPOOL_CAPACITY_MEMORY_MB is {largest})"
                    )
                if up:
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
            # resolved at deploy: the Manager fetches them with no metadata lookup
            "layer_keys": list(fv.layer_keys),
            **fv.config.to_dict(),
        }
        placement_ms = round((time.perf_counter() - begun) * 1000, 3)
        pending = self._registry.pending
        pending[manager.id] = pending.get(manager.id, 0) + 1
        try:
            with manager_errors(manager.id, "start a container"):
                async with self._http.post(
                    f"{manager.url}/v1/containers",
                    data=orjson.dumps(body),
                    timeout=self._timeout,
                    headers=self._headers,
                ) as resp:
                    payload: Any = orjson.loads(await resp.read())
                    status = resp.status
        finally:
            pending[manager.id] -= 1
        if status != 201:
            raise_refusal(manager.id, status, payload)
        return ColdStart(
            entry=PoolEntry.decode(payload["entry"]),
            start_ms=payload["start_ms"],
            init_ms=payload["init_ms"],
            total_ms=payload["total_ms"],
            fetch_ms=payload.get("fetch_ms", 0.0),
            prewarmed=bool(payload.get("prewarmed")),
            placement_ms=placement_ms,
            init_stdout=_text(payload.get("init_stdout")),
            init_stderr=_text(payload.get("init_stderr")),
        )

    async def resolve_image(self, reference: str) -> dict[str, Any]:
        """Ask the live Managers in turn until one has the image (nodes without a registry
        may hold different images); the first answer other than 404 decides."""
        managers = [m for m in self._reachable(await self._registry.snapshot()) if m.alive]
        if not managers:
            raise NoCapacity("no Manager is available to resolve the image; try again")
        missing: HotpoolError | None = None
        for manager in managers:
            with manager_errors(manager.id, "resolve an image"):
                async with self._http.post(
                    f"{manager.url}/v1/images/resolve",
                    data=orjson.dumps({"image": reference}),
                    timeout=self._timeout,
                    headers=self._headers,
                ) as resp:
                    payload: Any = orjson.loads(await resp.read())
                    status = resp.status
            if status == 200:
                return payload
            missing = error_from_body(status, payload)
            if status != 404:
                break
        raise missing if missing is not None else NotFound(f"no Manager has image {reference!r}")

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
            with manager_errors(entry.manager_id, f"remove container {entry.container_id}"):
                async with self._http.delete(
                    f"{url}/v1/containers/{entry.container_id}{query}",
                    timeout=self._timeout,
                    headers=self._headers,
                ) as resp:
                    if resp.status != 200:
                        return None
                    return orjson.loads(await resp.read()).get("exit")
        except (NotDelivered, NoCapacity) as exc:
            log.warning("could not remove container %s: %s", entry.container_id, exc)
            return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""

"""Deploying, reading and deleting functions, with a short-lived cache for the hot path."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging

from redis.asyncio import Redis

from hotpool.main_server.ports import ManagerApi
from hotpool.shared import keys
from hotpool.shared.codestore import CodeStore
from hotpool.shared.errors import HotpoolError, InvalidRequest, StoreUnavailable
from hotpool.shared.images import (
    EMPTY_ZIP,
    allow_prefixes,
    check_allowed,
    emulator_override,
    parse_reference,
)
from hotpool.shared.metadata import MetadataStore
from hotpool.shared.models import (
    FunctionConfig,
    FunctionVersion,
    PoolEntry,
    split_qualified,
    validate_qualified,
)
from hotpool.shared.packages import CodePackage, PackageLimits, inspect_package
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import REDIS_ERRORS
from hotpool.shared.settings import Settings
from hotpool.shared.ttlcache import TtlCache

log = logging.getLogger(__name__)


class FunctionService:
    """Functions and their versions, and what a change means for the warm pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        metadata: MetadataStore,
        code_store: CodeStore,
        pool: Pool,
        managers: ManagerApi,
        redis: Redis,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._metadata = metadata
        self._code = code_store
        self._pool = pool
        self._managers = managers
        self._limits = PackageLimits(
            max_compressed_bytes=settings.max_package_bytes,
            max_uncompressed_bytes=settings.max_unzipped_bytes,
        )
        # one query per name at a time, however many requests find the cache expired
        self._cache: TtlCache[str, FunctionVersion] = TtlCache(settings.function_cache_ttl_s)

    async def deploy(self, name: str, config: FunctionConfig, data: bytes) -> FunctionVersion:
        """Validate a package and make it the function's new immutable version."""
        validate_qualified(name)
        short_name = split_qualified(name)[1]
        for destination in ("on_success", "on_failure"):
            if getattr(config, destination) == short_name:
                raise InvalidRequest(
                    f"{destination} names the function itself: every call would start another"
                )
        if config.image:
            config, package = await self._pin_image(name, config, data)
        else:
            # decompressing to check a package is CPU work; keep it off the event loop
            package = await asyncio.to_thread(
                inspect_package, data, config.handler, self._limits, runtime=config.runtime
            )
        key = await self._code.put(package.sha256, package.data)
        fv = await self._metadata.create_version(name, config, package.sha256, key)
        # again, now that a version holds it: a collection of the same content that ran
        # between the first put and create_version may have removed it
        await self._code.put(package.sha256, package.data)
        await self._changed(name)
        await self._pool.unretire(name, fv.version)
        if fv.version > 1:
            # the old version drains: its idle containers go now, its busy ones on release,
            # and the requests waiting for one move to the new version
            await self._remove_all(await self._pool.retire(name, fv.version - 1))
        await self._collect(name, self._settings.keep_versions)
        return fv

    async def _pin_image(
        self, name: str, config: FunctionConfig, data: bytes
    ) -> tuple[FunctionConfig, CodePackage]:
        """An image function's config with its image resolved to the ID the version keeps,
        and the (empty) package it is stored with: its code is in the image."""
        if data:
            raise InvalidRequest("an image function takes no code package: its code is the image")
        ref = parse_reference(config.image)
        check_allowed(ref, split_qualified(name)[0], allow_prefixes(self._settings.image_allow))
        resolved = await self._managers.resolve_image(config.image)
        # an image that runs AWS's emulator is pinned without it: its runtime talks to
        # hotpool's Runtime API instead (a deployer's own override is kept as given; the
        # Manager takes the emulator off that one when it starts the container)
        entrypoint = config.image_entrypoint or emulator_override(resolved["entrypoint"])
        pinned = dataclasses.replace(
            config, image_id=str(resolved["image_id"]), image_entrypoint=entrypoint
        )
        empty = CodePackage(EMPTY_ZIP, hashlib.sha256(EMPTY_ZIP).hexdigest(), 0, 0)
        return pinned, empty

    @property
    def package_limit_bytes(self) -> int:
        return self._settings.max_package_bytes

    @property
    def event_limit_bytes(self) -> int:
        return self._settings.max_event_bytes

    @property
    def event_max_depth(self) -> int:
        return self._settings.max_event_depth

    @property
    def lease_grace_s(self) -> float:
        return self._settings.lease_grace_s

    def cached(self, name: str) -> FunctionVersion | None:
        """The latest version if the cache holds it fresh, else None (no I/O)."""
        return self._cache.peek(name)

    async def get(self, name: str, *, fresh: bool = False) -> FunctionVersion:
        """The latest version, from the cache when it is fresh enough (unless ``fresh``).

        While the database is away, warm invocations go on with the version last read, however
        old: any change made meanwhile was announced on the channel and dropped it.
        """
        return await self._cache.get(
            name, lambda: self._latest(name), fresh=fresh, stale_on=(StoreUnavailable,)
        )

    async def current(self, name: str) -> FunctionVersion:
        """The latest version read fresh: for a request whose version was retired meanwhile."""
        return await self.get(name, fresh=True)

    async def _latest(self, name: str) -> FunctionVersion:
        validate_qualified(name)
        return await self._metadata.latest(name)

    def forget(self, name: str) -> None:
        """Drop a cached function (another replica changed it)."""
        self._cache.forget(name)

    async def _changed(self, name: str) -> None:
        self._cache.forget(name)
        try:
            await self._redis.publish(keys.FUNCTIONS_CHANGED, name)
        except REDIS_ERRORS:
            # other replicas fall back on the cache TTL
            log.warning("could not announce the change of %s: Redis unreachable", name)

    async def follow_changes(self) -> None:
        """Drop cache entries as other replicas announce changes; reconnects forever."""
        await self._cache.follow(self._redis, keys.FUNCTIONS_CHANGED, "function change feed")

    async def runtimes_of(self, names: set[str]) -> dict[str, str]:
        """The runtime of each named function that still exists."""
        return {fv.name: fv.config.runtime for fv in await self.list() if fv.name in names}

    async def list(self, namespace: str | None = None) -> list[FunctionVersion]:
        return await self._metadata.list_functions(namespace)

    async def delete(self, name: str) -> tuple[FunctionVersion, int]:
        """Delete a function and remove its warm containers; busy ones go on release."""
        validate_qualified(name)
        fv = await self._metadata.delete(name)
        await self._changed(name)
        idle = await self._pool.retire(name, fv.version)
        await self._remove_all(idle)
        await self._collect(name, 0)
        return fv, len(idle)

    async def _collect(self, name: str, keep: int) -> None:
        """Forget all but ``keep`` versions of ``name`` and delete the packages left unused.

        Best effort: the deploy or delete itself has succeeded. Versions the database could
        not forget are collected by the next deploy; a package whose deletion fails stays.
        """
        try:
            for key in await self._metadata.prune(name, keep):
                await self._code.delete(key)
        except HotpoolError as exc:
            log.warning("could not collect old packages of %s: %s", name, exc)

    async def _remove_all(self, entries: list[PoolEntry]) -> None:
        await asyncio.gather(*(self._managers.remove(e) for e in entries))

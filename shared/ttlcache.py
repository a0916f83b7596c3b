"""A short-lived cache in front of a store: TTL, single flight, and forgetting what other
processes announce they changed. Main caches function versions and verified API keys this way."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from redis.asyncio import Redis

from hotpool.shared.loops import follow_channel
from hotpool.shared.singleflight import SingleFlight

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """``get(key, load)``: the value cached for ``key`` while it is younger than ``ttl_s``,
    else what ``load()`` returns, then cached. Concurrent misses of one key share one load
    (``SingleFlight``); a load that fails caches nothing. ``forget`` and ``clear`` drop
    entries, and ``follow`` does so for every key another process announces on a Redis
    channel; the TTL bounds how long a lost announcement leaves a value stale.
    """

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}
        self._loads: SingleFlight[V] = SingleFlight()

    def peek(self, key: K) -> V | None:
        """The cached value if it is fresh, else None (never loads)."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        fresh: bool = False,
        stale_on: tuple[type[Exception], ...] = (),
    ) -> V:
        """The value of ``key``, loaded unless a fresh one is cached (``fresh``: load anyway).

        When the load raises one of ``stale_on`` and an expired value is cached, that value is
        returned instead: the store is away, and callers carry on with what was known.
        """
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry[1] > now and not fresh:
            return entry[0]
        try:
            value = await self._loads.run(key, load)
        except stale_on:
            if entry is not None and not fresh:
                return entry[0]
            raise
        self._entries[key] = (value, now + self._ttl_s)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def follow(self: TtlCache[str, V], redis: Redis, channel: str, what: str) -> None:
        """Forget each key announced on ``channel``, and everything whenever announcements may
        have been missed; reconnects until cancelled."""
        await follow_channel(redis, channel, self.forget, self.clear, what)

"""TtlCache: TTL on an injected clock, single flight, forgetting, and the stale fallback."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from hotpool.shared.errors import StoreUnavailable
from hotpool.shared.ttlcache import TtlCache
from tests.stack import wait_for

pytestmark = pytest.mark.unit

TTL_S = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """Counts its loads; ``values`` is what each key loads to, ``fails`` what a load raises."""

    def __init__(self) -> None:
        self.values = {"a": 1, "b": 2}
        self.fails: Exception | None = None
        self.loads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    def loader(self, key: str):
        async def load() -> int:
            self.loads += 1
            await self.gate.wait()
            if self.fails is not None:
                raise self.fails
            return self.values[key]

        return load


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock) -> TtlCache[str, int]:
    return TtlCache(TTL_S, clock=clock)


@pytest.fixture
def store() -> Store:
    return Store()


async def test_a_value_is_loaded_once_and_kept_until_its_ttl_is_over(cache, clock, store):
    assert await cache.get("a", store.loader("a")) == 1
    store.values["a"] = 10
    clock.now += TTL_S - 0.01

    assert await cache.get("a", store.loader("a")) == 1
    assert cache.peek("a") == 1 and store.loads == 1

    clock.now += 0.01
    assert cache.peek("a") is None
    assert await cache.get("a", store.loader("a")) == 10
    assert store.loads == 2


async def test_concurrent_misses_of_one_key_share_one_load(cache, store):
    store.gate.clear()
    calls = [asyncio.create_task(cache.get("a", store.loader("a"))) for _ in range(20)]
    other = asyncio.create_task(cache.get("b", store.loader("b")))
    await asyncio.sleep(0.01)
    store.gate.set()

    assert await asyncio.gather(*calls) == [1] * 20
    assert await other == 2
    assert store.loads == 2  # one per key


async def test_a_failed_load_caches_nothing_and_every_waiter_gets_its_error(cache, store):
    store.gate.clear()
    store.fails = StoreUnavailable("the store is away")
    calls = [asyncio.create_task(cache.get("a", store.loader("a"))) for _ in range(5)]
    await asyncio.sleep(0.01)
    store.gate.set()

    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(o, StoreUnavailable) for o in outcomes) and store.loads == 1
    assert cache.peek("a") is None
    store.fails = None
    assert await cache.get("a", store.loader("a")) == 1
    assert store.loads == 2


async def test_forget_drops_one_key_and_clear_drops_all(cache, store):
    for key in ("a", "b"):
        await cache.get(key, store.loader(key))

    cache.forget("a")
    cache.forget("never cached")
    assert cache.peek("a") is None and cache.peek("b") == 2
    cache.clear()
    assert cache.peek("b") is None
    await cache.get("b", store.loader("b"))
    assert store.loads == 3


async def test_fresh_loads_even_when_a_value_is_cached(cache, store):
    await cache.get("a", store.loader("a"))
    store.values["a"] = 10

    assert await cache.get("a", store.loader("a"), fresh=True) == 10
    assert cache.peek("a") == 10 and store.loads == 2


async def test_an_expired_value_stands_in_only_for_the_errors_named_and_not_when_fresh(
    cache, clock, store
):
    await cache.get("a", store.loader("a"))
    clock.now += TTL_S * 10
    store.fails = StoreUnavailable("the store is away")

    stale = await cache.get("a", store.loader("a"), stale_on=(StoreUnavailable,))

    assert stale == 1
    assert cache.peek("a") is None  # still expired: the next call tries the store again
    with pytest.raises(StoreUnavailable):
        await cache.get("a", store.loader("a"), fresh=True, stale_on=(StoreUnavailable,))
    with pytest.raises(StoreUnavailable):
        await cache.get("a", store.loader("a"))  # no stale_on: the error goes through
    with pytest.raises(StoreUnavailable):
        await cache.get("b", store.loader("b"), stale_on=(StoreUnavailable,))  # nothing known
    store.fails = KeyError("not a StoreUnavailable")
    with pytest.raises(KeyError):
        await cache.get("a", store.loader("a"), stale_on=(StoreUnavailable,))


async def test_follow_forgets_what_other_processes_announce(cache, store):
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    for key in ("a", "b"):
        await cache.get(key, store.loader(key))

    async def forgotten(*keys: str) -> bool:
        return all(cache.peek(key) is None for key in keys)

    follower = asyncio.create_task(cache.follow(redis, "changed", "test feed"))
    try:
        # a new subscription may have missed announcements: everything is forgotten
        assert await wait_for(lambda: forgotten("a", "b"))
        for key in ("a", "b"):
            await cache.get(key, store.loader(key))

        await redis.publish("changed", "a")

        assert await wait_for(lambda: forgotten("a"))
        assert cache.peek("b") == 2
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await redis.aclose()

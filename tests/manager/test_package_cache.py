"""The Manager's package cache: one download per package, even under a burst."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from hotpool.manager.package_cache import PackageCache
from hotpool.shared.errors import NotFound, StoreUnavailable

pytestmark = pytest.mark.unit


class SlowStore:
    """A CodeStore that counts downloads and takes a while for each."""

    def __init__(self, packages: dict[str, bytes]) -> None:
        self.packages = packages
        self.gets: list[str] = []

    async def get(self, key: str) -> bytes:
        self.gets.append(key)
        await asyncio.sleep(0.05)
        if key not in self.packages:
            raise NotFound(key)
        return self.packages[key]

    async def put(self, sha256: str, data: bytes) -> str:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


def _key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() + ".zip"


async def test_concurrent_misses_download_once(tmp_path):
    data = b"a package" * 100
    store = SlowStore({_key(data): data})
    cache = PackageCache(store, tmp_path)
    results = await asyncio.gather(*(cache.get(_key(data)) for _ in range(20)))
    assert results == [data] * 20
    assert store.gets == [_key(data)]
    # later gets come from disk, also for a new cache on the same directory (a restart)
    assert await PackageCache(store, tmp_path).get(_key(data)) == data
    assert store.gets == [_key(data)]
    assert (tmp_path / _key(data)).read_bytes() == data


async def test_failed_download_is_shared_and_retried_later(tmp_path):
    store = SlowStore({})
    cache = PackageCache(store, tmp_path)
    key = _key(b"missing")
    results = await asyncio.gather(*(cache.get(key) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, NotFound) for r in results)
    assert store.gets == [key]
    store.packages[key] = b"missing"
    assert await cache.get(key) == b"missing"  # not cached as a failure


async def test_corrupted_package_is_refused_and_not_cached(tmp_path):
    key = _key(b"the real content")
    store = SlowStore({key: b"something else"})
    cache = PackageCache(store, tmp_path)
    with pytest.raises(StoreUnavailable, match="corrupted"):
        await cache.get(key)
    assert not (tmp_path / key).exists()


async def test_keys_cannot_escape_the_directory(tmp_path):
    cache = PackageCache(SlowStore({}), tmp_path / "c")
    for key in ("../x.zip", "/etc/passwd", ".hidden.zip", "a\\b.zip"):
        with pytest.raises(NotFound):
            await cache.get(key)


SIZE = 1000  # bytes of each test package
FITS_TWO = 2 * SIZE + SIZE // 2  # a bound two packages fit under, not three


def _package(name: str) -> bytes:
    return name.encode().ljust(SIZE, b".")


def _cached(directory) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.glob("*.zip")}


async def test_cache_stays_under_its_bound(tmp_path):
    packages = {_key(_package(str(i))): _package(str(i)) for i in range(6)}
    cache = PackageCache(SlowStore(dict(packages)), tmp_path, max_bytes=FITS_TWO)
    for key, data in packages.items():
        assert await cache.get(key) == data
    assert sum(_cached(tmp_path).values()) <= FITS_TWO
    assert len(_cached(tmp_path)) == 2


async def test_least_recently_used_goes_first_and_is_fetched_again(tmp_path):
    a, b, c = (_package(n) for n in "abc")
    store = SlowStore({_key(p): p for p in (a, b, c)})
    cache = PackageCache(store, tmp_path, max_bytes=FITS_TWO)
    await cache.get(_key(a))
    await cache.get(_key(b))
    assert await cache.get(_key(a)) == a  # a hit: a is now the most recently used
    await cache.get(_key(c))
    assert set(_cached(tmp_path)) == {_key(a), _key(c)}  # b, the least recently used, went
    assert store.gets == [_key(a), _key(b), _key(c)]

    assert await cache.get(_key(b)) == b  # evicted: fetched again
    assert store.gets.count(_key(b)) == 2
    assert sum(_cached(tmp_path).values()) <= FITS_TWO


class GatedStore(SlowStore):
    """A store whose downloads of one key wait until the test lets them through."""

    def __init__(self, packages: dict[str, bytes], gated: str) -> None:
        super().__init__(packages)
        self.gated, self.gate = gated, asyncio.Event()

    async def get(self, key: str) -> bytes:
        if key == self.gated:
            self.gets.append(key)
            await self.gate.wait()
            return self.packages[key]
        return await super().get(key)


async def test_eviction_does_not_break_a_download_under_way(tmp_path):
    slow, *others = (_package(n) for n in "sxyz")
    store = GatedStore({_key(p): p for p in (slow, *others)}, gated=_key(slow))
    cache = PackageCache(store, tmp_path, max_bytes=SIZE)  # room for one package
    waiting = [asyncio.create_task(cache.get(_key(slow))) for _ in range(3)]
    for p in others:  # each one stored evicts the one before, while slow is downloading
        assert await cache.get(_key(p)) == p
    store.gate.set()
    assert await asyncio.gather(*waiting) == [slow] * 3
    assert set(_cached(tmp_path)) == {_key(slow)}
    assert await cache.get(_key(slow)) == slow  # a hit, not a second download
    assert store.gets.count(_key(slow)) == 1


async def test_delete_removes_the_cached_copy(tmp_path):
    data = _package("gone")
    store = SlowStore({_key(data): data})
    store.delete = lambda key: asyncio.sleep(0, store.packages.pop(key))
    cache = PackageCache(store, tmp_path)
    await cache.get(_key(data))
    await cache.delete(_key(data))
    assert _cached(tmp_path) == {}
    with pytest.raises(NotFound):
        await cache.get(_key(data))

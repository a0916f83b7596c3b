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

"""The Manager's local cache of code packages, keyed by content (sha256).

Every package is downloaded at most once per node, even when many cold starts for it arrive
at the same moment: concurrent misses share one download (single flight). The cache is
bounded: after each download, the least recently used packages are removed until the cached
ones fit in ``max_bytes`` again; a package being read or downloaded is never removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from pathlib import Path

from hotpool.shared.codestore import CodeStore, atomic_write
from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.singleflight import SingleFlight

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024


class PackageCache:
    """A ``CodeStore`` reader that keeps what it read on local disk, up to ``max_bytes``."""

    def __init__(
        self, store: CodeStore, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._store = store
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._downloads: SingleFlight[bytes] = SingleFlight()
        self._in_use: Counter[str] = Counter()
        self.downloads = 0

    def _path(self, key: str) -> Path:
        if "/" in key or "\\" in key or key.startswith(".") or not key.endswith(".zip"):
            raise NotFound(f"no code package {key!r}")
        return self._dir / key

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        self._in_use[key] += 1
        try:
            try:
                return await asyncio.to_thread(_read_and_touch, path)
            except FileNotFoundError:
                pass
            return await self._downloads.run(key, lambda: self._download(key, path))
        finally:
            self._in_use[key] -= 1
            if not self._in_use[key]:
                del self._in_use[key]

    async def _download(self, key: str, path: Path) -> bytes:
        data = await self._store.get(key)
        self.downloads += 1
        expected = key.removesuffix(".zip")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            # never cache (or run) a package that is not what its key says
            raise StoreUnavailable(f"code package {key} arrived corrupted (sha256 {actual})")
        await asyncio.to_thread(_write_and_touch, path, data)
        await asyncio.to_thread(self._evict, frozenset(self._in_use))
        return data

    def _evict(self, in_use: frozenset[str]) -> None:
        """Remove the least recently used packages, except those in use, until the cached
        ones fit in the bound. Temporary files of downloads under way are not packages."""
        cached = []
        for path in self._dir.glob("*.zip"):
            if path.name.startswith(".") or path.name in in_use:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            cached.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in cached) + sum(_size(self._dir / key) for key in in_use)
        for _, size, path in sorted(cached, key=lambda c: c[0]):
            if total <= self._max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            log.info("evicted code package %s from the cache (%d bytes)", path.name, size)

    async def put(self, sha256: str, data: bytes) -> str:
        return await self._store.put(sha256, data)

    async def delete(self, key: str) -> None:
        await self._store.delete(key)
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None


def _read_and_touch(path: Path) -> bytes:
    data = path.read_bytes()
    _touch(path)
    return data


def _write_and_touch(path: Path, data: bytes) -> None:
    atomic_write(path, data)
    _touch(path)


def _touch(path: Path) -> None:
    # the mtime records when a package was last used: the clock's own nanoseconds, as the
    # file system's timestamps are only as fine as a kernel tick
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except FileNotFoundError:
        pass  # evicted just after it was read: the caller has its bytes


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

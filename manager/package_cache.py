"""The Manager's local cache of code packages, keyed by content (sha256).

Every package is downloaded at most once per node, even when many cold starts for it arrive
at the same moment: concurrent misses share one download (single flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from hotpool.shared.codestore import CodeStore, atomic_write
from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.singleflight import SingleFlight

log = logging.getLogger(__name__)


class PackageCache:
    """A ``CodeStore`` reader that keeps what it read on local disk."""

    def __init__(self, store: CodeStore, directory: Path) -> None:
        self._store = store
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._downloads: SingleFlight[bytes] = SingleFlight()
        self.downloads = 0

    def _path(self, key: str) -> Path:
        if "/" in key or "\\" in key or key.startswith(".") or not key.endswith(".zip"):
            raise NotFound(f"no code package {key!r}")
        return self._dir / key

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            pass
        return await self._downloads.run(key, lambda: self._download(key, path))

    async def _download(self, key: str, path: Path) -> bytes:
        data = await self._store.get(key)
        self.downloads += 1
        expected = key.removesuffix(".zip")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            # never cache (or run) a package that is not what its key says
            raise StoreUnavailable(f"code package {key} arrived corrupted (sha256 {actual})")
        await asyncio.to_thread(atomic_write, path, data)
        return data

    async def put(self, sha256: str, data: bytes) -> str:
        return await self._store.put(sha256, data)

    async def delete(self, key: str) -> None:
        await self._store.delete(key)

    async def close(self) -> None:
        return None

"""Publishing, reading and deleting layer versions, with their packages in the code store."""

from __future__ import annotations

import asyncio
import logging

from hotpool.shared.codestore import CodeStore
from hotpool.shared.errors import HotpoolError
from hotpool.shared.layer_store import LayerStore, LayerVersion
from hotpool.shared.packages import PackageLimits, inspect_package
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)


class LayerService:
    """Layer versions of every namespace and their content-addressed packages."""

    def __init__(self, settings: Settings, *, layers: LayerStore, code_store: CodeStore) -> None:
        self._layers = layers
        self._code = code_store
        self._limits = PackageLimits(
            max_compressed_bytes=settings.max_package_bytes,
            max_uncompressed_bytes=settings.max_unzipped_bytes,
        )

    async def publish(
        self, namespace: str, name: str, data: bytes, description: str = ""
    ) -> LayerVersion:
        """Check a zip by the rules of code packages (no handler) and make it a new version."""
        # decompressing to check a package is CPU work; keep it off the event loop
        package = await asyncio.to_thread(inspect_package, data, None, self._limits)
        key = await self._code.put(package.sha256, package.data)
        layer = await self._layers.publish(
            namespace, name, sha256=package.sha256, code_key=key,
            size=len(package.data), description=description,
        )  # fmt: skip
        # again, now that a row holds it: deleting another version of the same content may
        # have removed it between the first put and the row
        await self._code.put(package.sha256, package.data)
        return layer

    async def latest_of_each(self, namespace: str) -> list[LayerVersion]:
        return await self._layers.latest_of_each(namespace)

    async def versions(self, namespace: str, name: str) -> list[LayerVersion]:
        return await self._layers.versions(namespace, name)

    async def get(self, namespace: str, name: str, version: int) -> LayerVersion:
        return await self._layers.get(namespace, name, version)

    async def delete(self, namespace: str, name: str, version: int) -> LayerVersion:
        """Delete a version; its package goes too unless a function version still uses it."""
        layer, unused = await self._layers.delete(namespace, name, version)
        for key in unused:
            try:
                await self._code.delete(key)
            except HotpoolError as exc:  # best effort: the version is gone all the same
                log.warning("could not delete the package %s of layer %s: %s", key, name, exc)
        return layer

"""Layer versions in the metadata database: resolving a function's layers and telling which
packages nothing uses any more (shared by ``shared.metadata`` and ``shared.layer_store``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hotpool.shared.errors import InvalidRequest
from hotpool.shared.tables import LayerVersionRow, VersionRow


async def resolve_layers(session: AsyncSession, namespace: str, layers: tuple[str, ...]) -> list:
    """The code keys of ``layers`` ("name:version") of ``namespace``, in order; a layer
    version that does not exist (or was deleted) is an InvalidRequest naming it.

    The rows are read with a shared lock: a layer deletion waits for this deploy to commit,
    so it sees the new version using the package and keeps it (MySQL; on SQLite the deploy
    has written first, which holds the database's one write lock)."""
    keys = []
    for layer in layers:
        name, _, version = layer.partition(":")
        key = await session.scalar(
            select(LayerVersionRow.code_key)
            .where(
                LayerVersionRow.namespace == namespace,
                LayerVersionRow.name == name,
                LayerVersionRow.version == int(version),
                LayerVersionRow.deleted_at.is_(None),
            )
            .with_for_update(read=True)
        )
        if key is None:
            raise InvalidRequest(f"layer {layer!r} does not exist in namespace {namespace!r}")
        keys.append(key)
    return keys


async def unused_packages(session: AsyncSession, candidates: set[str]) -> set[str]:
    """Those of ``candidates`` (code keys) that no function version (as its code or one of
    its layers) and no live layer version uses: packages are stored once per content."""
    if not candidates:
        return set()
    used = set(
        await session.scalars(
            select(VersionRow.code_key).where(VersionRow.code_key.in_(candidates))
        )
    )
    used |= set(
        await session.scalars(
            select(LayerVersionRow.code_key).where(
                LayerVersionRow.code_key.in_(candidates), LayerVersionRow.deleted_at.is_(None)
            )
        )
    )
    # a JSON list has no portable "contains": read the layer lists of the versions using any
    for keys in await session.scalars(
        select(VersionRow.layer_keys).where(VersionRow.layer_keys.is_not(None))
    ):
        used.update(keys or ())
    return candidates - used

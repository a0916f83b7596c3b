"""Layers (Lambda's model): immutable, numbered versions of a zip, per namespace.

A layer version's package sits in the code store beside function packages, content-addressed
the same way. Retention: deleting a layer version hides it at once (it can no longer be read or
named by a deploy) and keeps its row, so its number is never given again; its package is
deleted only once nothing uses it, and until then every function version that names it keeps
running, as on Lambda. Pruning a function's old versions collects such packages later
(``SqlMetadataStore.prune``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from hotpool.shared.database import as_utc
from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.layer_rows import unused_packages
from hotpool.shared.metadata import (
    CREATE_ATTEMPTS,
    RACE_BACKOFF_S,
    SqlMetadataStore,
    lost_race,
    translate_errors,
)
from hotpool.shared.models import validate_name
from hotpool.shared.tables import LayerVersionRow

MAX_DESCRIPTION_CHARS = 255


@dataclass(frozen=True)
class LayerVersion:
    """One immutable layer version."""

    namespace: str
    name: str
    version: int
    code_sha256: str
    code_key: str
    size: int
    description: str
    created_at: datetime

    @property
    def ref(self) -> str:
        """How a function names it: ``name:version``."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "version": self.version,
            "code_sha256": self.code_sha256,
            "size": self.size,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }


class LayerStore(Protocol):
    """Layer versions of every namespace."""

    async def publish(
        self, namespace: str, name: str, *, sha256: str, code_key: str, size: int, description: str
    ) -> LayerVersion: ...

    async def latest_of_each(self, namespace: str) -> list[LayerVersion]: ...

    async def versions(self, namespace: str, name: str) -> list[LayerVersion]: ...

    async def get(self, namespace: str, name: str, version: int) -> LayerVersion: ...

    async def delete(
        self, namespace: str, name: str, version: int
    ) -> tuple[LayerVersion, list[str]]:
        """Delete a version; return it and the code keys nothing uses any more."""
        ...


def _to_model(row: LayerVersionRow) -> LayerVersion:
    created = as_utc(row.created_at)
    return LayerVersion(
        namespace=row.namespace,
        name=row.name,
        version=row.version,
        code_sha256=row.code_sha256,
        code_key=row.code_key,
        size=row.size,
        description=row.description,
        created_at=created,
    )


def _live(namespace: str, name: str | None = None) -> list[Any]:
    where = [LayerVersionRow.namespace == namespace, LayerVersionRow.deleted_at.is_(None)]
    if name is not None:
        where.append(LayerVersionRow.name == name)
    return where


class SqlLayerStore:
    """``LayerStore`` on the metadata database (same engine as the functions)."""

    def __init__(self, metadata: SqlMetadataStore) -> None:
        self._sessions = metadata.sessions

    @translate_errors
    async def publish(
        self, namespace: str, name: str, *, sha256: str, code_key: str, size: int, description: str
    ) -> LayerVersion:
        """A new version numbered one past the highest ever given (deleted ones included)."""
        validate_name(namespace, "namespace")
        validate_name(name, "layer name")
        fields = {
            "namespace": namespace, "name": name, "code_sha256": sha256, "code_key": code_key,
            "size": size, "description": description[:MAX_DESCRIPTION_CHARS],
        }  # fmt: skip
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return await self._insert(fields)
            except DBAPIError as exc:
                if not lost_race(exc):
                    raise
                # two publishes of one layer took the same number: the loser takes the next
                await asyncio.sleep(random.uniform(0, RACE_BACKOFF_S * (attempt + 1)))
        raise StoreUnavailable(f"could not publish a new version of layer {name!r}; try again")

    async def _insert(self, fields: dict[str, Any]) -> LayerVersion:
        async with self._sessions.begin() as session:
            highest = await session.scalar(
                select(func.max(LayerVersionRow.version)).where(
                    LayerVersionRow.namespace == fields["namespace"],
                    LayerVersionRow.name == fields["name"],
                )
            )
            row = LayerVersionRow(
                **fields, version=(highest or 0) + 1, created_at=datetime.now(UTC)
            )
            session.add(row)
        return _to_model(row)

    @translate_errors
    async def latest_of_each(self, namespace: str) -> list[LayerVersion]:
        """The newest live version of every layer of ``namespace``, by name."""
        newest = (
            select(LayerVersionRow.name, func.max(LayerVersionRow.version).label("version"))
            .where(*_live(namespace))
            .group_by(LayerVersionRow.name)
            .subquery()
        )
        query = (
            select(LayerVersionRow)
            .join(
                newest,
                (LayerVersionRow.name == newest.c.name)
                & (LayerVersionRow.version == newest.c.version),
            )
            .where(LayerVersionRow.namespace == namespace)
            .order_by(LayerVersionRow.name)
        )
        async with self._sessions() as session:
            return [_to_model(row) for row in await session.scalars(query)]

    @translate_errors
    async def versions(self, namespace: str, name: str) -> list[LayerVersion]:
        """The live versions of one layer, newest first; NotFound if it has none."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(LayerVersionRow)
                .where(*_live(namespace, name))
                .order_by(LayerVersionRow.version.desc())
            )
            found = [_to_model(row) for row in rows]
        if not found:
            raise NotFound(f"layer {name!r} does not exist")
        return found

    @translate_errors
    async def get(self, namespace: str, name: str, version: int) -> LayerVersion:
        async with self._sessions() as session:
            row = await session.scalar(
                select(LayerVersionRow).where(
                    *_live(namespace, name), LayerVersionRow.version == version
                )
            )
        if row is None:
            raise NotFound(f"layer version {name}:{version} does not exist")
        return _to_model(row)

    @translate_errors
    async def delete(
        self, namespace: str, name: str, version: int
    ) -> tuple[LayerVersion, list[str]]:
        """Hide a version for good; return it and its package's key if nothing uses it."""
        async with self._sessions.begin() as session:
            # written before anything is read: a deploy naming this version either committed
            # first (and is seen using the package below) or finds the version gone
            hidden = await session.execute(
                update(LayerVersionRow)
                .where(*_live(namespace, name), LayerVersionRow.version == version)
                .values(deleted_at=datetime.now(UTC))
            )
            if hidden.rowcount != 1:
                raise NotFound(f"layer version {name}:{version} does not exist")
            row = await session.scalar(
                select(LayerVersionRow).where(
                    LayerVersionRow.namespace == namespace,
                    LayerVersionRow.name == name,
                    LayerVersionRow.version == version,
                )
            )
            assert row is not None
            unused = await unused_packages(session, {row.code_key})
            return _to_model(row), sorted(unused)

"""API keys in the metadata database (same engine as the functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hotpool.shared.auth import (
    NewKey,
    Principal,
    new_key,
    parse_scopes,
    validate_namespaces,
)
from hotpool.shared.errors import InvalidRequest, NotFound, Unauthorized
from hotpool.shared.metadata import KeyRow, SqlMetadataStore, UserRow, translate_errors
from hotpool.shared.models import validate_qualified

INVALID_KEY = "the API key is not valid (unknown, revoked or wrong)"


def _describe(row: KeyRow) -> dict[str, Any]:
    return {
        "key_id": row.key_id,
        "namespaces": list(row.namespaces),
        "scopes": sorted(parse_scopes(row.scopes)),
        "function": row.function,
        "rate_per_s": row.rate_per_s,
        "description": row.description,
        "created_at": row.created_at.replace(tzinfo=row.created_at.tzinfo or UTC).isoformat(),
        "revoked": row.revoked_at is not None,
    }


class SqlKeyStore:
    """Creating, verifying, listing and revoking API keys."""

    def __init__(self, metadata: SqlMetadataStore) -> None:
        self._sessions = metadata.sessions

    @translate_errors
    async def create(
        self,
        *,
        namespaces: list[str],
        scopes: str,
        function: str | None = None,
        description: str = "",
        user: str | None = None,
        rate_per_s: float | None = None,
    ) -> tuple[NewKey, dict[str, Any]]:
        """A new key; its secret exists only in the returned ``NewKey``."""
        validate_namespaces(namespaces)
        parse_scopes(scopes)
        if function is not None:
            validate_qualified(function)
        if rate_per_s is not None and not rate_per_s > 0:
            raise InvalidRequest("rate_per_s must be a positive number")
        if len(description) > 255:
            raise InvalidRequest("description is limited to 255 characters")
        key = new_key()
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            user_id = None
            if user is not None:
                found = await session.scalar(select(UserRow).where(UserRow.name == user))
                if found is None:
                    found = UserRow(name=user, created_at=now)
                    session.add(found)
                    await session.flush()
                user_id = found.id
            row = KeyRow(
                key_id=key.key_id,
                secret_sha256=key.secret_sha256,
                user_id=user_id,
                namespaces=list(namespaces),
                scopes=",".join(sorted(parse_scopes(scopes))),
                function=function,
                rate_per_s=rate_per_s,
                description=description,
                created_at=now,
            )
            session.add(row)
        return key, _describe(row)

    @translate_errors
    async def lookup(self, key_id: str) -> tuple[Principal, str]:
        """A live key's principal and the SHA-256 of its secret, for the caller to check."""
        async with self._sessions() as session:
            row = await session.scalar(select(KeyRow).where(KeyRow.key_id == key_id))
        if row is None or row.revoked_at is not None:
            raise Unauthorized(INVALID_KEY)
        principal = Principal(
            key_id=row.key_id,
            namespaces=tuple(row.namespaces),
            scopes=parse_scopes(row.scopes),
            function=row.function,
            rate_per_s=row.rate_per_s,
        )
        return principal, row.secret_sha256

    @translate_errors
    async def list(self) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(KeyRow).order_by(KeyRow.id))).all()
        return [_describe(row) for row in rows]

    @translate_errors
    async def revoke(self, key_id: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.scalar(select(KeyRow).where(KeyRow.key_id == key_id))
            if row is None or row.revoked_at is not None:
                raise NotFound(f"no active key {key_id[:40]!r}")
            row.revoked_at = datetime.now(UTC)

    @translate_errors
    async def has_admin_key(self) -> bool:
        async with self._sessions() as session:
            rows = (
                await session.scalars(select(KeyRow.scopes).where(KeyRow.revoked_at.is_(None)))
            ).all()
        return any("admin" in scopes.split(",") for scopes in rows)

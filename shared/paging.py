"""Listing execution records a page at a time.

Records are listed newest first, ordered by ``(started_at, request_id)``: a page ends at its
record count or its byte budget, whichever comes first, and the ``Position`` of its last record
is where the next page starts (the API's opaque cursor). Both execution-log adapters page this
way.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from hotpool.shared.errors import InvalidRequest

Record = dict[str, Any]


@dataclass(frozen=True)
class Position:
    """Where a listing stopped: the last record it gave; the next page starts after it."""

    started_at: float
    request_id: str

    @classmethod
    def of(cls, record: Record) -> Position:
        return cls(float(record["started_at"]), str(record["request_id"]))

    def cursor(self) -> str:
        """The opaque cursor the API hands out for this position."""
        raw = orjson.dumps([self.started_at, self.request_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str) -> Position:
        """The position a cursor names; InvalidRequest when it is not one this API made."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            started_at, request_id = orjson.loads(raw)
            if isinstance(started_at, bool) or not isinstance(started_at, (int, float)):
                raise ValueError("started_at")
            if not isinstance(request_id, str):
                raise ValueError("request_id")
        except (binascii.Error, ValueError, TypeError) as exc:  # JSONDecodeError: a ValueError
            raise InvalidRequest(
                "cursor is not valid: pass the next_cursor of a previous page unchanged"
            ) from exc
        return cls(float(started_at), request_id)


@dataclass
class Page:
    """Records newest first, and whether more follow the last of them."""

    records: list[Record]
    more: bool

    @property
    def next_cursor(self) -> str | None:
        return Position.of(self.records[-1]).cursor() if self.more and self.records else None


def fill_page(rows: list[tuple[Record, int]], limit: int, max_bytes: int, *, cut: bool) -> Page:
    """The page of ``rows`` (record, its size; newest first, read until there were ``limit``
    + 1 or over ``max_bytes`` of them, ``cut`` if the reading stopped there): at most ``limit``
    records within ``max_bytes`` (0: no byte budget), and always the first one."""
    records: list[Record] = []
    size = 0
    for record, record_bytes in rows:
        if len(records) == limit or (max_bytes and records and size + record_bytes > max_bytes):
            return Page(records, more=True)
        records.append(record)
        size += record_bytes
    return Page(records, more=cut)

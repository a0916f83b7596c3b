"""Schedules in the metadata database (same engine as the functions).

A schedule is written only while its function exists: ``put`` checks the function's row in
its own transaction, after its write, and deleting a function deletes its schedules in the
function's transaction (``SqlMetadataStore.delete``), so no schedule outlives its function
to wake up when a function of the same name is deployed again.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from hotpool.shared.database import as_utc
from hotpool.shared.errors import NotFound, StoreUnavailable, TooManyRequests
from hotpool.shared.metadata import (
    CREATE_ATTEMPTS,
    RACE_BACKOFF_S,
    SqlMetadataStore,
    lost_race,
    translate_errors,
)
from hotpool.shared.models import split_qualified
from hotpool.shared.schedules import Schedule
from hotpool.shared.tables import FunctionRow, ScheduleRow

MAX_PER_NAMESPACE_SETTING = "HOTPOOL_SCHEDULE_MAX_PER_NAMESPACE"


def _moment(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(moment: datetime) -> float:
    return as_utc(moment).timestamp()


def _to_model(row: ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        namespace=row.namespace,
        function=row.function,
        name=row.name,
        expression=row.expression,
        timezone=row.timezone,
        event=row.event,
        enabled=bool(row.enabled),
        created_at=_epoch(row.created_at),
        updated_at=_epoch(row.updated_at),
    )


def _one(function: str, name: str) -> list[Any]:
    namespace = split_qualified(function)[0]
    return [
        ScheduleRow.namespace == namespace,
        ScheduleRow.function == function,
        ScheduleRow.name == name,
    ]


def _missing(function: str, name: str) -> NotFound:
    short = split_qualified(function)[1]
    return NotFound(f"schedule {name!r} of function {short!r} does not exist")


class SqlScheduleStore:
    """Schedules of every namespace, each tied to one function."""

    def __init__(self, metadata: SqlMetadataStore) -> None:
        self._sessions = metadata.sessions

    @translate_errors
    async def put(self, schedule: Schedule, *, max_in_namespace: int | None = None) -> Schedule:
        """Create the schedule, or replace the one of that function and name (keeping its
        id and creation). NotFound if the function does not exist; TooManyRequests if a new
        schedule would be one more than ``max_in_namespace``."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return await self._put(schedule, max_in_namespace)
            except DBAPIError as exc:
                if not lost_race(exc):
                    raise
                # two creates of one name (or, on MySQL, two in one namespace under the cap)
                # raced: the loser runs again and finds the winner's row
                await asyncio.sleep(random.uniform(0, RACE_BACKOFF_S * (attempt + 1)))
        raise StoreUnavailable(f"could not save schedule {schedule.name!r}; try again")

    async def _put(self, schedule: Schedule, max_in_namespace: int | None) -> Schedule:
        async with self._sessions.begin() as session:
            # written before anything is checked: on SQLite the first write takes the
            # database's one write lock, so the checks below see every schedule and function
            # committed before; on MySQL their locking reads wait for writers in flight
            row = await session.scalar(
                select(ScheduleRow).where(*_one(schedule.function, schedule.name)).with_for_update()
            )
            created = row is None
            if row is None:
                row = ScheduleRow(
                    id=schedule.id,
                    namespace=schedule.namespace,
                    function=schedule.function,
                    name=schedule.name,
                    created_at=_moment(schedule.created_at),
                )
                session.add(row)
            row.expression = schedule.expression
            row.timezone = schedule.timezone
            row.event = schedule.event
            row.enabled = schedule.enabled
            row.updated_at = _moment(schedule.updated_at)
            await session.flush()
            await _lock_function(session, schedule.function)
            if created and max_in_namespace is not None:
                await _check_room(session, schedule.namespace, max_in_namespace)
        return _to_model(row)

    @translate_errors
    async def get(self, namespace: str, function: str, name: str) -> Schedule:
        async with self._sessions() as session:
            row = await session.scalar(select(ScheduleRow).where(*_one(function, name)))
        if row is None or row.namespace != namespace:
            raise _missing(function, name)
        return _to_model(row)

    @translate_errors
    async def list_for(self, function: str) -> list[Schedule]:
        """The schedules of one function (qualified name), by name."""
        namespace = split_qualified(function)[0]
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ScheduleRow)
                .where(ScheduleRow.namespace == namespace, ScheduleRow.function == function)
                .order_by(ScheduleRow.name)
            )
            return [_to_model(row) for row in rows]

    @translate_errors
    async def ids(self) -> set[str]:
        """The id of every schedule, enabled or not (whose scheduler state must be kept)."""
        async with self._sessions() as session:
            return set(await session.scalars(select(ScheduleRow.id)))

    @translate_errors
    async def delete(self, namespace: str, function: str, name: str) -> Schedule:
        """Delete one schedule and return it; NotFound if there is none."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(ScheduleRow).where(*_one(function, name)).with_for_update()
            )
            if row is None or row.namespace != namespace:
                raise _missing(function, name)
            await session.delete(row)
        return _to_model(row)

    @translate_errors
    async def delete_for(self, function: str) -> int:
        """Delete every schedule of one function; return how many there were."""
        namespace = split_qualified(function)[0]
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ScheduleRow).where(
                    ScheduleRow.namespace == namespace, ScheduleRow.function == function
                )
            )
        return int(result.rowcount or 0)

    @translate_errors
    async def count_in(self, namespace: str) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(ScheduleRow)
                .where(ScheduleRow.namespace == namespace)
            )
        return int(count or 0)

    @translate_errors
    async def enabled(self) -> list[Schedule]:
        """Every enabled schedule of every namespace (what the scheduler fires)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ScheduleRow)
                .where(ScheduleRow.enabled.is_(True))
                .order_by(ScheduleRow.namespace, ScheduleRow.function, ScheduleRow.name)
            )
            return [_to_model(row) for row in rows]


async def _lock_function(session: AsyncSession, function: str) -> None:
    """NotFound unless ``function`` exists; its row stays read-locked until the commit, so a
    concurrent delete of the function waits and then deletes this schedule too (MySQL; on
    SQLite the database's one write lock orders them)."""
    found = await session.scalar(
        select(FunctionRow.id)
        .where(FunctionRow.name == function, FunctionRow.deleted_at.is_(None))
        .with_for_update(read=True)
    )
    if found is None:
        raise NotFound(f"function {split_qualified(function)[1]!r} does not exist")


async def _check_room(session: AsyncSession, namespace: str, limit: int) -> None:
    """TooManyRequests if the namespace, this transaction's new schedule included, holds
    more than ``limit``. On MySQL the locking read waits for (or deadlocks with) another
    create in the namespace: the loser runs again and counts the winner."""
    taken = await session.scalars(
        select(ScheduleRow.id).where(ScheduleRow.namespace == namespace).with_for_update()
    )
    if len(taken.all()) > limit:
        raise TooManyRequests(
            f"namespace {namespace!r} has {limit} schedules, the most allowed "
            f"({MAX_PER_NAMESPACE_SETTING}); delete one first",
            retry_after_s=60.0,
        )

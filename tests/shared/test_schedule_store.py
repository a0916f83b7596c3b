"""Contract tests of shared.schedule_store.SqlScheduleStore over SQLite (the embedded
default) and MariaDB (production), on migrated databases."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from hotpool.shared.errors import NotFound, TooManyRequests
from hotpool.shared.metadata import SqlMetadataStore
from hotpool.shared.models import FunctionConfig
from hotpool.shared.schedule_store import SqlScheduleStore
from hotpool.shared.schedules import Schedule, ScheduleLimits, from_body
from hotpool.shared.schema import migrate

pytestmark = pytest.mark.contract

NOW = 1_796_040_000.123456
LIMITS = ScheduleLimits(min_interval_s=1, max_event_bytes=1 << 20, max_event_depth=64)


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[SqlMetadataStore, SqlScheduleStore]]:
    await migrate(database_url)
    metadata = SqlMetadataStore.from_url(database_url)
    try:
        yield metadata, SqlScheduleStore(metadata)
    finally:
        await metadata.close()


async def deploy(metadata: SqlMetadataStore, qualified: str) -> None:
    await metadata.create_version(qualified, FunctionConfig(), "0" * 64, "0" * 64 + ".zip")


def schedule(function: str, name: str, body=None, *, existing=None, now=NOW) -> Schedule:
    namespace = function.rpartition(".")[0] or "default"
    return from_body(
        body or {"expression": "rate(5 minutes)"}, namespace=namespace, function=function,
        name=name, existing=existing, now=now, limits=LIMITS,
    )  # fmt: skip


async def test_a_put_schedule_reads_back_exactly(stores):
    metadata, schedules = stores
    await deploy(metadata, "acme.report")
    written = schedule(
        "acme.report", "nightly",
        {"expression": "cron(0 2 * * ? *)", "timezone": "Europe/Berlin",
         "event": {"job": "nightly", "x": "é" * 3}, "enabled": False},
    )  # fmt: skip

    stored = await schedules.put(written)

    assert stored == written
    assert await schedules.get("acme", "acme.report", "nightly") == written
    assert await schedules.list_for("acme.report") == [written]


async def test_a_second_put_replaces_and_keeps_id_and_creation(stores):
    metadata, schedules = stores
    await deploy(metadata, "report")
    first = await schedules.put(schedule("report", "hourly"))
    # a writer that did not see the first (a racing create) still keeps its id and creation
    stale = schedule("report", "hourly", {"expression": "rate(1 hour)"}, now=NOW + 10)

    second = await schedules.put(stale)

    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert (second.expression, second.updated_at) == ("rate(1 hour)", pytest.approx(NOW + 10))
    assert await schedules.list_for("report") == [second]


async def test_list_get_count_and_enabled_stay_within_their_function_and_namespace(stores):
    metadata, schedules = stores
    for name in ("report", "acme.report", "acme.other"):
        await deploy(metadata, name)
    b = await schedules.put(schedule("acme.report", "b"))
    a = await schedules.put(schedule("acme.report", "a"))
    off = await schedules.put(
        schedule("acme.other", "off", {"expression": "rate(1 day)", "enabled": False})
    )
    mine = await schedules.put(schedule("report", "a"))

    assert await schedules.list_for("acme.report") == [a, b]
    assert await schedules.list_for("report") == [mine]
    assert await schedules.list_for("acme.nothing") == []
    assert (await schedules.count_in("acme"), await schedules.count_in("default")) == (3, 1)
    assert await schedules.count_in("other") == 0
    assert await schedules.enabled() == [a, b, mine]
    assert off not in await schedules.enabled()
    with pytest.raises(NotFound, match="schedule 'a' of function 'report' does not exist"):
        await schedules.get("default", "acme.report", "a")  # another namespace's


async def test_delete_removes_one_and_a_missing_one_is_not_found(stores):
    metadata, schedules = stores
    await deploy(metadata, "report")
    kept = await schedules.put(schedule("report", "kept"))
    gone = await schedules.put(schedule("report", "gone"))

    assert await schedules.delete("default", "report", "gone") == gone
    assert await schedules.list_for("report") == [kept]
    with pytest.raises(NotFound):
        await schedules.delete("default", "report", "gone")
    with pytest.raises(NotFound):
        await schedules.get("default", "report", "gone")
    with pytest.raises(NotFound):
        await schedules.delete("acme", "report", "kept")  # named from another namespace


async def test_a_schedule_needs_its_function(stores):
    metadata, schedules = stores

    with pytest.raises(NotFound, match="function 'nope' does not exist"):
        await schedules.put(schedule("nope", "hourly"))
    await deploy(metadata, "gone")
    await metadata.delete("gone")
    with pytest.raises(NotFound):
        await schedules.put(schedule("gone", "hourly"))
    assert await schedules.count_in("default") == 0


async def test_deleting_a_function_deletes_its_schedules_and_no_other(stores):
    metadata, schedules = stores
    await deploy(metadata, "report")
    await deploy(metadata, "other")
    await schedules.put(schedule("report", "a"))
    await schedules.put(schedule("report", "b"))
    other = await schedules.put(schedule("other", "a"))

    await metadata.delete("report")

    assert await schedules.list_for("report") == []
    assert await schedules.enabled() == [other]
    # deployed again, it starts with no schedules: none of the old ones wakes up
    await deploy(metadata, "report")
    assert await schedules.list_for("report") == []
    assert await schedules.delete_for("other") == 1
    assert await schedules.enabled() == []


async def test_the_namespace_cap_counts_new_schedules_only(stores):
    metadata, schedules = stores
    await deploy(metadata, "acme.report")
    await deploy(metadata, "report")
    first = await schedules.put(schedule("acme.report", "a"), max_in_namespace=2)
    await schedules.put(schedule("acme.report", "b"), max_in_namespace=2)

    with pytest.raises(TooManyRequests) as info:
        await schedules.put(schedule("acme.report", "c"), max_in_namespace=2)

    assert "namespace 'acme' has 2 schedules, the most allowed" in info.value.message
    assert "HOTPOOL_SCHEDULE_MAX_PER_NAMESPACE" in info.value.message
    # replacing one is not one more; another namespace has its own room
    changed = dataclasses.replace(first, expression="rate(1 hour)", updated_at=NOW + 1)
    assert (await schedules.put(changed, max_in_namespace=2)).expression == "rate(1 hour)"
    await schedules.put(schedule("report", "a"), max_in_namespace=2)
    assert await schedules.count_in("acme") == 2


async def test_racing_creates_of_one_name_leave_one_schedule(stores):
    metadata, schedules = stores
    await deploy(metadata, "report")
    racers = [schedule("report", "hourly", {"expression": f"rate({n} minutes)"}) for n in (1, 2)]

    results = await asyncio.gather(*(schedules.put(s, max_in_namespace=5) for s in racers))

    [stored] = await schedules.list_for("report")
    assert {r.id for r in results} == {stored.id}
    assert stored.expression in {"rate(1 minutes)", "rate(2 minutes)"}


async def test_racing_creates_do_not_pass_the_namespace_cap(stores):
    metadata, schedules = stores
    await deploy(metadata, "report")
    racers = [schedule("report", f"s{n}") for n in range(6)]

    results = await asyncio.gather(
        *(schedules.put(s, max_in_namespace=3) for s in racers), return_exceptions=True
    )

    refused = [r for r in results if isinstance(r, TooManyRequests)]
    assert len(refused) == 3 and len(await schedules.list_for("report")) == 3

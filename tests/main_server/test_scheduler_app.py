"""The scheduler wired into Main (cleanup_ctx ``schedules``): a stored schedule fires through the
asynchronous path into the function, its records say trigger ``schedule``, and /system/status
shows who leads."""

from __future__ import annotations

import time
import uuid

import pytest

from hotpool.main_server.state import METADATA, SCHEDULER
from hotpool.shared.schedule_store import SqlScheduleStore
from hotpool.shared.schedules import Schedule
from tests.async_calls import ledger_stack, runs
from tests.stack import wait_for

pytestmark = pytest.mark.integration


async def test_a_stored_schedule_fires_into_the_function_with_trigger_schedule(
    hotpool_stack, tmp_path
):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    now = time.time()
    every = Schedule(
        id=uuid.uuid4().hex, namespace="default", function="fn", name="each-second",
        expression="rate(1 second)", timezone="UTC", event=None, enabled=True,
        created_at=now, updated_at=now,
    )  # fmt: skip
    await SqlScheduleStore(stack.client.app[METADATA]).put(every)

    async def fired_twice() -> bool:
        return len(runs(tmp_path)) >= 2

    # the scheduler reads the schedules every 2 s; the first ticks are then caught up
    assert await wait_for(fired_twice, timeout_s=15)
    records = await stack.records("fn", 2)
    assert {r["trigger"] for r in records} == {"schedule"}

    resp = await stack.client.get("/system/status")
    part = (await resp.json())["scheduler"]
    assert part["leader"] == stack.client.app[SCHEDULER].owner
    assert part["leading_here"] and part["schedules"] == 1
    assert part["fires"] >= 2 and part["missed"] == 0

"""The scheduler wired into Main (cleanup_ctx ``schedules``): a schedule made through the API
fires through the asynchronous path into the function, its records say trigger ``schedule``,
/system/status shows who leads, and the schedule's answer shows its fires."""

from __future__ import annotations

import pytest

from hotpool.main_server.state import SCHEDULER
from tests.async_calls import ledger_stack, runs
from tests.stack import wait_for

pytestmark = pytest.mark.integration


async def test_a_stored_schedule_fires_into_the_function_with_trigger_schedule(
    hotpool_stack, tmp_path
):
    stack = await ledger_stack(hotpool_stack, tmp_path)
    resp = await stack.client.put(
        "/v1/functions/fn/schedules/each-second", json={"expression": "rate(1 second)"}
    )
    assert resp.status == 201, await resp.text()

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

    resp = await stack.client.get("/v1/functions/fn/schedules/each-second")
    shown = await resp.json()
    assert shown["fires"] >= 2 and shown["missed"] == 0
    assert shown["last_fired"].endswith("Z")
    listed = await (await stack.client.get("/v1/functions/fn/schedules")).json()
    assert listed["schedules"][0]["fires"] >= 2

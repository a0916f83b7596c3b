"""One tenant's backlog of slow asynchronous events must not starve another tenant's events.

The attack: team-a queues far more slow events than a replica has asynchronous slots, so that a
first-come-first-served queue would keep every slot busy with them for as long as the backlog
lasts. team-b's one event must still run at once, while team-a's first events still sleep.
"""

from __future__ import annotations

import pytest

from tests.helpers import handler_zip
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

SLOW = handler_zip("time.sleep(5.0)\nreturn 'a'", prelude="import time")
QUICK = handler_zip("return 'b'")
BACKLOG = 24


async def accept(stack: Stack, key: str, name: str) -> str:
    resp = await stack.client.post(
        f"/v1/functions/{name}/invoke?async=true",
        data=b"{}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status == 202, await resp.text()
    return (await resp.json())["request_id"]


async def status(stack: Stack, key: str, request_id: str) -> str:
    resp = await stack.client.get(
        f"/v1/invocations/{request_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["status"]


async def test_a_tenants_slow_backlog_leaves_slots_for_another_tenant(hotpool_stack):
    stack = await hotpool_stack(async_concurrency=4, rate_per_s=1e6, rate_burst=1_000_000)
    a, b = await stack.key("team-a"), await stack.key("team-b")
    for key, name, code in ((a, "slow", SLOW), (b, "quick", QUICK)):
        resp = await stack.client.put(
            f"/v1/functions/{name}",
            data=code,
            params={"max_concurrency": "100", "timeout_s": "8"},
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"},
        )
        assert resp.status == 201, await resp.text()
    backlog = [await accept(stack, a, "slow") for _ in range(BACKLOG)]

    async def a_is_running() -> bool:
        return "running" in [await status(stack, a, rid) for rid in backlog[:4]]

    assert await wait_for(a_is_running, 20)
    victim = await accept(stack, b, "quick")

    async def b_done() -> bool:
        return await status(stack, b, victim) == "succeeded"

    assert await wait_for(b_done, 30), await status(stack, b, victim)
    # team-b's event ran while team-a's first events still slept: first come first served,
    # or team-a holding every slot, would have kept it waiting for them
    statuses = [await status(stack, a, rid) for rid in backlog]
    assert "succeeded" not in statuses, statuses
    assert statuses.count("queued") >= BACKLOG - 4, statuses

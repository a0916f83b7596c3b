"""Item 6c: a multipart deploy of 100,000 empty parts is refused at once, without stalling Main.

It took 13.5 s to refuse and blocked every other request meanwhile; the deploy handler now
refuses a body past a few parts. The suite's loop guard (tests/loop_guard.py) also fails a test
whose event loop, Main's here, stalls.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

BOUNDARY = "flood"
PARTS = 100_000


def flood_body() -> bytes:
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'.encode()
    return part * PARTS + f"--{BOUNDARY}--\r\n".encode()


# the bound: refusing the flood must never block the loop for more than ~100 ms (the
# watchdog samples every 50 ms, so it is given 250 ms not to flag scheduling noise)
@pytest.mark.loop_guard(blocked_s=0.25)
async def test_a_flood_of_parts_is_refused_while_main_keeps_answering(hotpool_stack):
    stack = await hotpool_stack()
    flood = asyncio.create_task(
        stack.client.put(
            "/v1/functions/flood",
            data=flood_body(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    )
    healthz = []
    while not flood.done() and len(healthz) < 50:
        resp = await asyncio.wait_for(stack.client.get("/healthz"), timeout=2)
        healthz.append(resp.status)
        await asyncio.sleep(0.01)
    resp = await asyncio.wait_for(flood, timeout=10)

    assert resp.status == 400
    body = await resp.json()
    assert "parts" in body["error"]["message"]
    assert healthz and set(healthz) == {200}


async def test_a_multipart_deploy_with_a_few_settings_still_works(hotpool_stack):
    stack = await hotpool_stack()
    data = aiohttp.FormData()
    data.add_field("code", handler_zip("return 1"), filename="code.zip")
    for name, value in {"env": '{"A": "1"}', "timeout_s": "5", "memory_mb": "128"}.items():
        data.add_field(name, value)
    resp = await stack.client.put("/v1/functions/few", data=data)
    assert resp.status == 201, await resp.text()

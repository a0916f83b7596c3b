"""Admission through the API: invoke meters its key and takes its namespace slot in the pool's
first script, so a rate-limited key is refused whether the function is cached or not, each
invoke spends exactly one token, and no way an invoke ends leaves a slot behind."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from hotpool.main_server.state import FUNCTIONS
from hotpool.shared import keys
from hotpool.shared.models import qualify
from tests.helpers import handler_zip, make_zip
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

SLEEPER = handler_zip(
    "import time\nevent = event or {}\ntime.sleep(event.get('s', 0))\n"
    "if event.get('fail'):\n    raise ValueError('asked to')\nreturn 'slept'"
)


async def call(stack: Stack, key: str, method: str, path: str, body: bytes = b"{}"):
    headers = {"Authorization": f"Bearer {key}"}
    headers["Content-Type"] = "application/zip" if method == "PUT" else "application/json"
    return await stack.client.request(method, path, headers=headers, data=body)


async def invoke(stack: Stack, key: str, body: bytes = b"{}") -> aiohttp.ClientResponse:
    return await call(stack, key, "POST", "/v1/functions/sleeper/invoke", body)


async def slots(stack: Stack) -> int:
    return await stack.redis.zcard(keys.ns_inflight("team-a"))


async def no_slot_held(stack: Stack) -> bool:
    """Whether the namespace holds no slot, once the last call's release has run: Main
    answers a call before it releases its container and slot (Invoker.invocation)."""
    return await wait_for(lambda: _none_held(stack), timeout_s=5)


async def _none_held(stack: Stack) -> bool:
    return await slots(stack) == 0


async def test_invalid_events_of_a_cached_function_are_metered_too(hotpool_stack):
    stack = await hotpool_stack(rate_per_s=1000, rate_burst=2, function_cache_ttl_s=60)
    deployer = await stack.key("team-a")
    limited = await stack.key("team-a", "invoke", rate_per_s=0.01)
    assert (await call(stack, deployer, "PUT", "/v1/functions/sleeper", SLEEPER)).status == 201
    assert (await invoke(stack, deployer)).status == 200  # now cached

    statuses = [(await invoke(stack, limited, b"{not json")).status for _ in range(4)]

    # the burst of two answers the bad input; after it, the rate answers first
    assert statuses == [400, 400, 429, 429], statuses
    assert await no_slot_held(stack)


@pytest.mark.parametrize("cache_ttl_s", [60.0, 0.0], ids=["cached", "not cached"])
async def test_a_rate_limited_key_gets_429_on_invoke_and_pays_one_token_per_call(
    hotpool_stack, cache_ttl_s
):
    stack = await hotpool_stack(rate_per_s=1000, rate_burst=3, function_cache_ttl_s=cache_ttl_s)
    deployer = await stack.key("team-a")
    limited = await stack.key("team-a", "invoke", rate_per_s=0.01)
    resp = await call(stack, deployer, "PUT", "/v1/functions/sleeper", SLEEPER)
    assert resp.status == 201, await resp.text()

    for _ in range(3):  # the burst: one token each, however the function was found
        resp = await invoke(stack, limited)
        assert resp.status == 200, await resp.text()
    cached = stack.client.app[FUNCTIONS].cached(qualify("team-a", "sleeper")) is not None
    assert cached == (cache_ttl_s > 0)
    refused = await invoke(stack, limited)

    assert refused.status == 429, await refused.text()
    error = (await refused.json())["error"]
    assert error["code"] == "TooManyRequests" and "rate" in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert await no_slot_held(stack)
    assert (await invoke(stack, deployer)).status == 200  # the other key's bucket is its own


async def test_no_way_an_invoke_ends_leaves_a_namespace_slot(hotpool_stack):
    stack = await hotpool_stack(namespace_max_concurrency=1)
    key = await stack.key("team-a")
    resp = await call(stack, key, "PUT", "/v1/functions/sleeper", SLEEPER)
    assert resp.status == 201, await resp.text()
    assert (await invoke(stack, key)).status == 200  # warm: the race below is about admission
    assert await no_slot_held(stack)

    slow = asyncio.create_task(invoke(stack, key, b'{"s": 1.0}'))
    await asyncio.sleep(0.3)
    assert await slots(stack) == 1
    refused = await invoke(stack, key)
    assert refused.status == 429, await refused.text()
    assert "limit" in (await refused.json())["error"]["message"]
    assert await slots(stack) == 1  # the refused call took none
    assert (await slow).status == 200
    assert await no_slot_held(stack)

    failed = await invoke(stack, key, b'{"fail": true}')
    assert failed.status == 500 and failed.headers["X-Hotpool-Function-Error"] == "ValueError"
    assert (await call(stack, key, "POST", "/v1/functions/missing/invoke")).status == 404
    assert await no_slot_held(stack)
    assert (await invoke(stack, key)).status == 200


async def test_invokes_that_never_release_a_container_leave_no_slot(hotpool_stack):
    """Queued past the function's limit (429), a failed init, a timeout: ``exit`` frees each."""
    stack = await hotpool_stack(queue_timeout_s=0.3)
    key = await stack.key("team-a")
    broken = make_zip({"main.py": "raise RuntimeError('broken at import')\ndef handler(e, c): 0"})
    for name, code, query in [
        ("sleeper", SLEEPER, "?max_concurrency=1&timeout_s=1"),
        ("broken", broken, ""),
    ]:
        resp = await call(stack, key, "PUT", f"/v1/functions/{name}{query}", code)
        assert resp.status == 201, await resp.text()

    assert (await invoke(stack, key)).status == 200  # warm: one container, never a second
    slow = asyncio.create_task(invoke(stack, key, b'{"s": 0.8}'))
    await asyncio.sleep(0.05)
    queued = await invoke(stack, key)  # the one container is busy past the queue timeout
    assert queued.status == 429, await queued.text()
    assert "concurrency limit" in (await queued.json())["error"]["message"]
    assert (await slow).status == 200
    init_failed = await call(stack, key, "POST", "/v1/functions/broken/invoke")
    assert init_failed.headers.get("X-Hotpool-Function-Error") == "RuntimeError"
    timed_out = await invoke(stack, key, b'{"s": 2}')
    assert timed_out.status == 504, await timed_out.text()

    assert await no_slot_held(stack)

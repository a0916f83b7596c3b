"""Issue 12 item 3: a node full of idle warm containers must not starve other tenants.

The attack: tenants call their functions once each until every container slot (or every MB of
the node's memory) holds an idle warm container; another tenant's cold start then got 429 for
``idle_ttl_s`` (600 s). Now the Manager evicts the least recently used idle container of
another function to make room, and refuses only when nothing is idle.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

ECHO = handler_zip("return 'ok'")


async def _warm(stack, names: list[str], **params) -> dict[str, PoolEntry]:
    """Deploy and call each function once, leaving one idle container of each, in that order."""
    idle: dict[str, PoolEntry] = {}
    for name in names:
        assert (await stack.deploy(name, ECHO, **params)).status == 201
        reply = await stack.invoke(name)
        assert reply.status == 200, await reply.text()
        [raw] = await stack.idle_entries(name, 1)
        idle[name] = PoolEntry.decode(raw)
    return idle


async def _assert_evicted(stack, entry: PoolEntry) -> None:
    assert await stack.pool_entries(entry.function, entry.version) == []
    assert entry.container_id not in stack.live_containers()
    idle_set = await stack.redis.zrange(keys.idle(entry.manager_id), 0, -1)
    assert entry.encode() not in {raw.decode() for raw in idle_set}


async def test_a_node_full_of_idle_containers_evicts_the_least_recently_used(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=3, queue_timeout_s=0.5)
    idle = await _warm(stack, ["tenant-a", "tenant-b", "tenant-c"])
    # Main sees the node full in the Manager's heartbeat, not only the Manager itself
    await stack.manager.heartbeat()

    assert (await stack.deploy("tenant-d", ECHO)).status == 201
    reply = await stack.invoke("tenant-d")

    assert reply.status == 200, await reply.text()
    await _assert_evicted(stack, idle["tenant-a"])
    # the others keep their warm containers
    for name in ("tenant-b", "tenant-c"):
        assert await stack.pool_entries(name, 1) == [idle[name].encode()]
    assert len(stack.live_containers()) == 3


async def test_a_node_full_by_memory_evicts_an_idle_container(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=10, capacity_memory_mb=512, queue_timeout_s=0.5)
    idle = await _warm(stack, ["mem-a", "mem-b"], memory_mb=256)
    await stack.manager.heartbeat()

    assert (await stack.deploy("mem-c", ECHO, memory_mb=256)).status == 201
    reply = await stack.invoke("mem-c")

    assert reply.status == 200, await reply.text()
    await _assert_evicted(stack, idle["mem-a"])
    assert await stack.pool_entries("mem-b", 1) == [idle["mem-b"].encode()]
    assert sum(c["memory_mb"] for c in stack.manager.describe()) <= 512


async def _idle_in_status(stack) -> int:
    reply = await stack.client.get("/system/status")
    [manager] = (await reply.json())["managers"]
    return manager["idle"]


async def test_a_busy_container_is_never_evicted_even_if_it_was_idle_before(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=1, queue_timeout_s=0.3)
    sleepy = handler_zip("import time\ntime.sleep((event or {}).get('s', 0))\nreturn 'slept'")
    assert (await stack.deploy("busy", sleepy)).status == 201
    assert (await stack.invoke("busy", {"s": 0})).status == 200
    [raw] = await stack.idle_entries("busy", 1)
    await stack.manager.heartbeat()
    assert await _idle_in_status(stack) == 1
    assert (await stack.deploy("other", ECHO)).status == 201

    # the same container is leased again: still in the idle set, with the oldest score
    busy = asyncio.create_task(stack.invoke("busy", {"s": 2}))
    for _ in range(100):
        if await stack.leases() == [raw]:
            break
        await asyncio.sleep(0.05)
    assert await stack.leases() == [raw]
    await stack.manager.heartbeat()
    assert await _idle_in_status(stack) == 0

    refused = await stack.invoke("other")

    assert refused.status == 429
    assert (await busy).status == 200
    assert PoolEntry.decode(raw).container_id in stack.live_containers()


async def test_a_function_larger_than_the_node_is_refused_naming_the_setting(hotpool_stack):
    stack = await hotpool_stack(capacity_memory_mb=512)
    assert (await stack.deploy("huge", ECHO, memory_mb=1024)).status == 201
    await stack.manager.heartbeat()

    reply = await stack.invoke("huge")

    assert reply.status in (400, 503)
    body = orjson.loads(await reply.read())
    assert "HOTPOOL_CAPACITY_MEMORY_MB" in body["error"]["message"]
    assert stack.live_containers() == set()

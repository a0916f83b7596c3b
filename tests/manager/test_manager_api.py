"""The Manager's own API, driven directly."""

from __future__ import annotations

import pytest

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration


async def _create(stack, **overrides):
    key = await stack.manager._code.put("a" * 64, handler_zip("return 1"))
    body = {"function": "fn", "version": 1, "code_key": key, "handler": "main.handler",
            "memory_mb": 128, "timeout_s": 5, "env": {}} | overrides  # fmt: skip
    async with stack.client.session.post(
        f"{stack.settings.manager_url}/v1/containers", json=body, headers=stack.manager_headers
    ) as resp:
        return resp.status, await resp.json()


async def test_create_list_delete(hotpool_stack):
    stack = await hotpool_stack()
    status, body = await _create(stack)
    assert status == 201, body
    assert body["manager_id"] == stack.manager.manager_id
    *fields, secret = body["entry"].split("|")
    assert fields == ["fn", "1", body["manager_id"], body["container_id"], body["address"]]
    assert len(secret) >= 32  # the container's own secret, which Main presents to it
    assert body["init_ms"] >= 0 and body["total_ms"] >= body["init_ms"]
    url = stack.settings.manager_url
    async with stack.client.session.get(
        f"{url}/v1/containers", headers=stack.manager_headers
    ) as resp:
        listed = (await resp.json())["containers"]
    assert [c["container_id"] for c in listed] == [body["container_id"]]
    assert listed[0]["state"] == "ready"
    async with stack.client.session.delete(
        f"{url}/v1/containers/{body['container_id']}", headers=stack.manager_headers
    ) as r:
        assert r.status == 200
    async with stack.client.session.delete(
        f"{url}/v1/containers/{body['container_id']}", headers=stack.manager_headers
    ) as r:
        assert r.status == 404
    assert stack.live_containers() == set()


async def test_bad_requests(hotpool_stack):
    stack = await hotpool_stack()
    url = stack.settings.manager_url
    async with stack.client.session.post(
        f"{url}/v1/containers", data=b"{nope", headers=stack.manager_headers
    ) as resp:
        assert resp.status == 400
    status, body = await _create(stack, function="Bad Name")
    assert status == 400 and "name" in body["error"]["message"]
    status, body = await _create(stack, memory_mb="x")
    assert status == 400
    status, body = await _create(stack, code_key="missing.zip")
    assert status == 404
    assert stack.live_containers() == set()


async def test_capacity_is_enforced(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=1)
    assert (await _create(stack))[0] == 201
    status, body = await _create(stack)
    assert status == 503 and "capacity" in body["error"]["message"]


async def test_heartbeat_registers_the_manager(hotpool_stack):
    stack = await hotpool_stack()
    raw = await stack.redis.hgetall("hp:managers")
    assert list(raw) == [stack.manager.manager_id.encode()]
    assert await stack.redis.get(f"hp:manager-alive:{stack.manager.manager_id}") == b"1"

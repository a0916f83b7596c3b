"""The WebSocket limits and endings over real sockets: message size (1009), message rate (API
Gateway's "Too Many Requests"), idle timeout and lifetime (1001), connections per replica
(429), a request that is no upgrade, the hub closing a connection, and a replica stopping;
each ending delivers ``$disconnect`` with its status."""

from __future__ import annotations

import asyncio
import json
import warnings

import aiohttp
import pytest

from hotpool.main_server.state import WS_HUB
from tests.main_server.ws_clients import LEDGER_ECHO, deploy, disconnect_of, events

pytestmark = pytest.mark.integration


async def _connection_id(path) -> str:
    """The connection id of the last $connect the function got."""
    return events(path, "CONNECT")[-1]["requestContext"]["connectionId"]


async def test_a_message_over_the_size_limit_closes_with_1009(hotpool_stack, tmp_path):
    stack = await hotpool_stack(ws_max_message_bytes=1024)
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect("/ws/chat") as ws:
        await ws.send_str("x" * 1024)  # at the limit: fine
        assert (await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT
        await ws.send_str("x" * 1025)
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert closed.data == 1009
    gone = await disconnect_of(path, await _connection_id(path))
    assert gone["requestContext"]["disconnectStatusCode"] == 1009
    assert len(events(path, "MESSAGE")) == 1


async def test_messages_over_the_rate_are_dropped_with_api_gateways_message(
    hotpool_stack, tmp_path
):
    stack = await hotpool_stack(ws_messages_per_s=2)
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect("/ws/chat") as ws:
        for n in range(6):
            await ws.send_str(json.dumps({"action": "go", "n": n}))
        replies = [json.loads((await ws.receive(timeout=10)).data) for _ in range(6)]
    throttled = [r for r in replies if r.get("message") == "Too Many Requests"]
    handled = [r for r in replies if "requestContext" in r]
    assert len(throttled) + len(handled) == 6
    assert len(throttled) >= 3  # a burst of 2, and 2 more a second
    assert all(r["connectionId"] and r["requestId"] for r in throttled)
    # dropped messages never reached the function
    assert len(events(path, "MESSAGE")) == len(handled)


async def test_an_idle_connection_closes_with_1001(hotpool_stack, tmp_path):
    stack = await hotpool_stack(ws_idle_timeout_s=0.3)
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect("/ws/chat") as ws:
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert closed.data == 1001
    gone = await disconnect_of(path, await _connection_id(path))
    assert gone["requestContext"]["disconnectStatusCode"] == 1001
    assert gone["requestContext"]["disconnectReason"] == "Going away"


async def test_a_busy_connection_still_ends_at_its_lifetime(hotpool_stack, tmp_path):
    stack = await hotpool_stack(ws_max_lifetime_s=1.0)
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect("/ws/chat") as ws:
        closed = None
        for _ in range(100):
            await ws.send_str('{"action": "keep-alive"}')
            msg = await ws.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                closed = msg
                break
            await asyncio.sleep(0.05)
        assert closed is not None and closed.data == 1001
    gone = await disconnect_of(path, await _connection_id(path))
    assert gone["requestContext"]["disconnectStatusCode"] == 1001


async def test_connections_per_replica_are_limited(hotpool_stack, tmp_path):
    stack = await hotpool_stack(ws_max_connections=1)
    await deploy(stack, "chat", LEDGER_ECHO, tmp_path / "ledger")
    async with stack.client.ws_connect("/ws/chat"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await stack.client.ws_connect("/ws/chat")
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "1"
        resp = await stack.client.get("/system/status")
        status = await resp.json()
        assert status["websocket"] == {"connections_here": 1, "max_connections_here": 1}
        assert status["counters"]["ws_over_capacity"] == 1
    assert len(events(tmp_path / "ledger", "CONNECT")) == 1


async def test_a_request_without_an_upgrade_runs_nothing(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    await deploy(stack, "chat", LEDGER_ECHO, tmp_path / "ledger")
    resp = await stack.client.get("/ws/chat")
    assert resp.status == 400
    assert "WebSocket" in (await resp.json())["error"]["message"]
    assert events(tmp_path / "ledger", "CONNECT") == []


class StandInHub:
    """Stands in for main_server.ws_hub.ConnectionHub (helper C's): add, remove."""

    def __init__(self) -> None:
        self.connections: dict[str, object] = {}
        self.removed: list[str] = []

    async def add(self, conn) -> None:
        self.connections[conn.connection_id] = conn

    async def remove(self, connection_id: str) -> None:
        self.removed.append(connection_id)


async def test_the_hub_reaches_a_connection_and_closing_it_delivers_disconnect(
    hotpool_stack, tmp_path
):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path, namespace="team")
    hub = StandInHub()
    with warnings.catch_warnings():  # the hub is wired before start-up in the real app
        warnings.simplefilter("ignore", DeprecationWarning)
        stack.client.app[WS_HUB] = hub  # type: ignore[assignment]
    async with stack.client.ws_connect("/ws/team.chat", headers={"User-Agent": "tester/1"}) as ws:
        connection_id = await _connection_id(path)
        conn = hub.connections[connection_id]
        assert (conn.namespace, conn.function) == ("team", "team.chat")
        assert (conn.source_ip, conn.user_agent) == ("127.0.0.1", "tester/1")
        assert conn.connected_at <= conn.last_active_at
        await conn.send("pushed")
        await conn.send(b"\x01\x02")
        assert (await ws.receive(timeout=10)).data == "pushed"
        assert (await ws.receive(timeout=10)).data == b"\x01\x02"
        await conn.close(1001, "going away")
        closed = await ws.receive(timeout=10)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    gone = await disconnect_of(path, connection_id)
    assert gone["requestContext"]["disconnectStatusCode"] == 1001
    assert gone["requestContext"]["disconnectReason"] == "going away"
    assert hub.removed == [connection_id]
    with pytest.raises(ConnectionResetError):
        await conn.send("too late")


async def test_a_stopping_replica_closes_its_sockets_and_delivers_disconnect(
    hotpool_stack, tmp_path
):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            stack.client.make_url("/ws/chat"),
            headers={"Authorization": stack.client.session.headers["Authorization"]},
        )
        connection_id = await _connection_id(path)
        closing = asyncio.create_task(ws.receive(timeout=30))
        await stack.client.close()  # Main shuts down; the Manager still runs
        closed = await closing
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        gone = await disconnect_of(path, connection_id)
        assert gone["requestContext"]["disconnectStatusCode"] == 1001
    finally:
        await session.close()

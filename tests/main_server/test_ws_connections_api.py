"""The @connections management API over real HTTP: POST, GET and DELETE on a connection held by
this replica or by another (two Mains on one real Redis), API Gateway's error shapes, the
message size limit, and the endpoint and token a WebSocket function finds in its env."""

from __future__ import annotations

import aiohttp
import pytest

from hotpool.main_server.state import WS_HUB, WS_TOKENS
from tests.async_calls import real_redis_url  # noqa: F401
from tests.helpers import free_port, handler_zip
from tests.main_server.ws_stand_ins import StandInConnection
from tests.stack import wait_for

pytestmark = pytest.mark.integration

ENV_CODE = handler_zip(
    "import os\n"
    "return [os.environ.get('HOTPOOL_CONNECTIONS_URL'), "
    "os.environ.get('HOTPOOL_CONNECTIONS_TOKEN')]"
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def two_mains(real_redis_url, hotpool_stack, tmp_path):  # noqa: F811
    """Two Main replicas (each with its Manager) on one real Redis and one metadata store."""
    shared = {"redis_url": real_redis_url, "state_dir": tmp_path / "shared"}
    return await hotpool_stack(**shared), await hotpool_stack(**shared)


async def test_send_describe_and_close_through_either_replica(two_mains):
    one, two = two_mains
    conn = StandInConnection(one.client.app[WS_HUB], user_agent="curl/8.0")
    await one.client.app[WS_HUB].add(conn)
    headers = bearer(await one.key("default", "invoke"))
    path = f"/ws/@connections/{conn.connection_id}"

    for stack, text in ((one, "from one"), (two, "from two")):
        resp = await stack.client.post(path, data=text.encode(), headers=headers)
        assert resp.status == 200, await resp.text()
    assert await wait_for(lambda: _received(conn, 2), 5.0)
    assert conn.received == ["from one", "from two"]

    resp = await two.client.get(path, headers=headers)
    described = await resp.json()
    assert resp.status == 200
    # API Gateway's wire names (the SDKs show them capitalised)
    assert described["identity"] == {"sourceIp": "203.0.113.7", "userAgent": "curl/8.0"}
    assert described["connectedAt"].endswith("Z") and described["lastActiveAt"].endswith("Z")

    resp = await two.client.delete(path, headers=headers)
    assert resp.status == 204
    assert await wait_for(lambda: _ended(conn), 5.0)
    assert conn.closed == [(1000, "")]

    for stack in (one, two):
        resp = await stack.client.post(path, data=b"late", headers=headers)
        assert resp.status == 410
        assert resp.headers["x-amzn-ErrorType"] == "GoneException"
        assert (await resp.json())["message"]


async def _received(conn: StandInConnection, n: int) -> bool:
    return len(conn.received) >= n


async def _ended(conn: StandInConnection) -> bool:
    return conn.ended.is_set()


async def test_a_binary_body_is_a_binary_message(hotpool_stack):
    stack = await hotpool_stack()
    conn = StandInConnection(stack.client.app[WS_HUB])
    await stack.client.app[WS_HUB].add(conn)

    resp = await stack.client.post(f"/ws/@connections/{conn.connection_id}", data=b"\x89PNG\xff")

    assert resp.status == 200
    assert conn.received == [b"\x89PNG\xff"]


async def test_a_message_over_the_limit_is_413_and_not_sent(hotpool_stack):
    stack = await hotpool_stack(ws_max_message_bytes=1024)
    conn = StandInConnection(stack.client.app[WS_HUB])
    await stack.client.app[WS_HUB].add(conn)
    path = f"/ws/@connections/{conn.connection_id}"

    resp = await stack.client.post(path, data=b"x" * 1025)

    assert resp.status == 413
    assert resp.headers["x-amzn-ErrorType"] == "PayloadTooLargeException"
    assert "1024" in (await resp.json())["message"]
    assert (await stack.client.post(path, data=b"x" * 1024)).status == 200
    assert conn.received == ["x" * 1024]


async def test_a_malformed_connection_id_is_400(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.get("/ws/@connections/" + "a" * 129)
    assert resp.status == 400
    assert "connection id" in (await resp.json())["message"]


async def test_a_websocket_function_finds_its_endpoint_and_token_in_its_env(hotpool_stack):
    port = free_port()
    stack = await hotpool_stack(port=port)
    for name, mode in (("chat", "key"), ("plain", "off")):
        assert (await stack.deploy(name, ENV_CODE, websocket=mode)).status == 201

    url, token = await (await stack.invoke("chat")).json()
    assert url == f"http://127.0.0.1:{port}/ws"
    assert await stack.client.app[WS_TOKENS].verify(token) == "chat"
    assert await (await stack.invoke("plain")).json() == [None, None]


async def test_the_token_reaches_its_function_connections_over_http(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    assert (await stack.deploy("chat", ENV_CODE, websocket="public")).status == 201
    url, token = await (await stack.invoke("chat")).json()
    conn = StandInConnection(stack.client.app[WS_HUB], function="chat")
    await stack.client.app[WS_HUB].add(conn)

    # from outside the test client, as a function does: the URL it was given, its token
    async with aiohttp.ClientSession() as session:
        target = f"{url}/@connections/{conn.connection_id}"
        async with session.post(target, data=b"progress 1/3", headers=bearer(token)) as resp:
            assert resp.status == 200, await resp.text()
        async with session.get(target, headers=bearer(token)) as resp:
            assert (await resp.json())["identity"]["userAgent"] == "stand-in/1.0"

    assert conn.received == ["progress 1/3"]

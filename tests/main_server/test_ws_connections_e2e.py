"""@connections end to end, with a real WebSocket client (the ``websockets`` package) on
``/ws/{function}`` (process backend): a function posting progress to its own connection from
inside a message event, a client reached from outside with a namespace key, a send and a close
through a second Main replica, and a replica stopping (1001, then ``$disconnect``)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.async_calls import real_redis_url  # noqa: F401
from tests.helpers import free_port, handler_zip
from tests.main_server.ws_clients import LEDGER_ECHO, deploy, disconnect_of, ws_url

pytestmark = pytest.mark.integration

# posts progress to its own connection through the management API, then answers: the seed's
# "progress, then result", with what GET said of the connection in the result
SELF_POSTING = handler_zip(
    """
    ctx = event["requestContext"]
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    url = os.environ["HOTPOOL_CONNECTIONS_URL"] + "/@connections/" + ctx["connectionId"]
    auth = {"Authorization": "Bearer " + os.environ["HOTPOOL_CONNECTIONS_TOKEN"]}
    for step in ("step 1", "step 2"):
        request = urllib.request.Request(url, data=step.encode(), headers=auth, method="POST")
        urllib.request.urlopen(request, timeout=10).read()
    described = json.load(urllib.request.urlopen(urllib.request.Request(url, headers=auth)))
    return {"statusCode": 200, "body": json.dumps({"result": "done", "seen": described})}
    """,
    prelude="import json, os, urllib.request",
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _connection_id(ws) -> str:
    """Ask the echoing function for the connection's id (it is in every event)."""
    await ws.send(json.dumps({"action": "whoami"}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))["requestContext"]["connectionId"]


async def test_a_function_posts_progress_to_its_own_connection_from_inside(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    await deploy(stack, "problems", SELF_POSTING, websocket="public")

    async with connect(ws_url(stack, "/ws/problems")) as ws:
        await ws.send(json.dumps({"action": "generateProblem"}))
        got = [await asyncio.wait_for(ws.recv(), 15) for _ in range(3)]

    assert got[:2] == ["step 1", "step 2"]
    final = json.loads(got[2])
    assert final["result"] == "done"
    assert final["seen"]["identity"]["sourceIp"] == "127.0.0.1"
    assert final["seen"]["identity"]["userAgent"].startswith("Python/")


async def test_a_client_is_reached_from_outside_with_a_namespace_key(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    ledger = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, ledger)
    key = await stack.key("default", "invoke")

    async with connect(ws_url(stack, "/ws/chat"), additional_headers=bearer(key)) as ws:
        connection_id = await _connection_id(ws)
        path = f"/ws/@connections/{connection_id}"
        assert (await stack.client.post(path, data=b"news", headers=bearer(key))).status == 200
        assert await asyncio.wait_for(ws.recv(), 10) == "news"
        assert (await stack.client.delete(path, headers=bearer(key))).status == 204
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1000
    assert (await disconnect_of(ledger, connection_id))["requestContext"]["routeKey"] == (
        "$disconnect"
    )
    assert (await stack.client.post(path, data=b"late", headers=bearer(key))).status == 410


@pytest.fixture
async def two_mains(real_redis_url, hotpool_stack, tmp_path):  # noqa: F811
    shared = {"redis_url": real_redis_url, "state_dir": tmp_path / "shared"}
    return await hotpool_stack(**shared), await hotpool_stack(**shared)


async def test_a_send_and_a_close_through_a_second_replica(two_mains, tmp_path):
    one, two = two_mains
    ledger = tmp_path / "ledger"
    await deploy(one, "chat", LEDGER_ECHO, ledger)
    key = await one.key("default", "invoke")

    async with connect(ws_url(one, "/ws/chat"), additional_headers=bearer(key)) as ws:
        connection_id = await _connection_id(ws)
        path = f"/ws/@connections/{connection_id}"
        for n in range(20):
            resp = await two.client.post(path, data=f"via two {n}".encode(), headers=bearer(key))
            assert resp.status == 200, await resp.text()
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(20)]
        assert got == [f"via two {n}" for n in range(20)]
        described = await (await two.client.get(path, headers=bearer(key))).json()
        assert described["identity"]["sourceIp"] == "127.0.0.1"
        assert (await two.client.delete(path, headers=bearer(key))).status == 204
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1000
    await disconnect_of(ledger, connection_id)


async def test_a_stopping_replica_closes_going_away_and_delivers_disconnect(two_mains, tmp_path):
    one, two = two_mains
    ledger = tmp_path / "ledger"
    await deploy(one, "chat", LEDGER_ECHO, ledger)
    key = await one.key("default", "invoke")

    async with connect(ws_url(one, "/ws/chat"), additional_headers=bearer(key)) as ws:
        connection_id = await _connection_id(ws)
        stopping = asyncio.create_task(one.client.close())
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        await asyncio.wait_for(stopping, 30)
    assert closed.value.rcvd.code == 1001
    gone = await disconnect_of(ledger, connection_id)
    assert gone["requestContext"]["disconnectStatusCode"] == 1001
    # the other replica knows the connection ended with its replica
    path = f"/ws/@connections/{connection_id}"
    assert (await two.client.post(path, data=b"anyone?", headers=bearer(key))).status == 410

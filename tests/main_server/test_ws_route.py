"""``GET /ws/{function}`` end to end over real HTTP and real WebSocket clients (aiohttp's and
the independent ``websockets`` package), on the embedded stack (process backend): the three
API Gateway events and their fields, refusal at ``$connect``, route selection, replies,
ordering, and the execution records."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.main_server.ws_clients import (
    ECHO,
    LEDGER_ECHO,
    deploy,
    disconnect_of,
    events,
    ledger,
    records,
    ws_url,
)

pytestmark = pytest.mark.integration


async def test_connect_message_and_disconnect_events_over_aiohttp(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect(
        "/ws/chat?room=1&room=2&x=%20y", headers={"X-Custom": "yes"}
    ) as ws:
        await ws.send_str(json.dumps({"action": "hello", "n": 1}))
        reply = await ws.receive(timeout=10)
        assert reply.type is aiohttp.WSMsgType.TEXT
        message = json.loads(reply.data)
        await ws.close(code=4000, message=b"bye")
    (connected,) = events(path, "CONNECT")
    context = connected["requestContext"]
    connection_id = context["connectionId"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "ws"
    assert context["apiId"] == "chat"
    assert context["domainName"] == f"127.0.0.1:{stack.client.server.port}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == context["extendedRequestId"]
    assert isinstance(context["connectedAt"], int)
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestTime"].endswith(" +0000")
    assert connected["headers"]["X-Custom"] == "yes"
    assert connected["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert connected["headers"]["X-Forwarded-For"] == "127.0.0.1"
    # the caller's hotpool key never reaches the function
    assert "authorization" not in {name.lower() for name in connected["headers"]}
    assert connected["queryStringParameters"] == {"room": "2", "x": " y"}
    assert connected["multiValueQueryStringParameters"]["room"] == ["1", "2"]
    message_context = message["requestContext"]
    assert message_context["routeKey"] == "hello"
    assert message_context["eventType"] == "MESSAGE"
    assert message_context["connectionId"] == connection_id
    assert message_context["connectedAt"] == context["connectedAt"]
    assert message_context["messageId"]
    assert message_context["requestId"] != context["requestId"]
    assert message["body"] == json.dumps({"action": "hello", "n": 1})
    assert message["isBase64Encoded"] is False
    gone = await disconnect_of(path, connection_id)
    assert gone["requestContext"]["routeKey"] == "$disconnect"
    assert gone["requestContext"]["disconnectStatusCode"] == 4000
    assert gone["requestContext"]["disconnectReason"] == "bye"
    found = await records(stack, "chat", 3)
    assert {r["trigger"] for r in found} == {"websocket"}
    ids = {context["requestId"], message_context["requestId"], gone["requestContext"]["requestId"]}
    assert {r["request_id"] for r in found} == ids


async def test_the_basic_flow_with_the_websockets_library_and_a_token(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    token = await stack.key("default", "invoke")
    async with connect(ws_url(stack, f"/ws/chat?token={token}&keep=1")) as client:
        await client.send('{"action": "ping"}')
        message = json.loads(await asyncio.wait_for(client.recv(), 10))
        await client.send(b"\x00\xffbinary")
        binary = await asyncio.wait_for(client.recv(), 10)
    assert message["requestContext"]["routeKey"] == "ping"
    assert binary == b"\x00\xffbinary"
    (connected,) = events(path, "CONNECT")
    # the key in the query string is hotpool's, not the function's
    assert connected["queryStringParameters"] == {"keep": "1"}
    assert "token" not in (connected["multiValueQueryStringParameters"] or {})
    binary_event = events(path, "MESSAGE")[1]
    assert binary_event["isBase64Encoded"] is True
    assert binary_event["requestContext"]["routeKey"] == "$default"
    gone = await disconnect_of(path, connected["requestContext"]["connectionId"])
    assert gone["requestContext"]["disconnectStatusCode"] == 1000


async def test_a_connect_result_that_is_not_2xx_refuses_the_upgrade(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "gate", LEDGER_ECHO, path, websocket="public")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.client.ws_connect("/ws/gate?refuse=403")
    assert refused.value.status == 403
    with pytest.raises(websockets.InvalidStatus) as refused_too:
        await connect(ws_url(stack, "/ws/gate?refuse=401"))
    assert refused_too.value.response.status_code == 401
    assert refused_too.value.response.body == b"not you"
    # a failing $connect is a bare 502, as a failing integration is
    with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
        await stack.client.ws_connect("/ws/gate?fail=1")
    assert failed.value.status == 502
    # refused connections were never open: no $disconnect, no message
    assert len(events(path, "CONNECT")) == 3
    await records(stack, "gate", 3)
    assert events(path, "DISCONNECT") == []


async def test_route_selection_default_and_custom(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    await deploy(stack, "chat", ECHO)
    await deploy(stack, "nested", ECHO, ws_route_selection="$request.body.msg.type")
    sent = {
        '{"action": "join"}': "join",
        "not json": "$default",
        '{"action": 5}': "$default",
        '{"other": "x"}': "$default",
        "[1, 2]": "$default",
    }
    async with stack.client.ws_connect("/ws/chat") as ws:
        for text, route in sent.items():
            await ws.send_str(text)
            event = json.loads((await ws.receive(timeout=10)).data)
            assert event["requestContext"]["routeKey"] == route, text
            assert event["body"] == text
    async with stack.client.ws_connect("/ws/nested") as ws:
        await ws.send_str('{"msg": {"type": "deep"}, "action": "shallow"}')
        event = json.loads((await ws.receive(timeout=10)).data)
        assert event["requestContext"]["routeKey"] == "deep"
    resp = await stack.deploy("bad", ECHO, websocket="key", ws_route_selection="action")
    assert resp.status == 400
    assert "$request.body." in (await resp.json())["error"]["message"]


async def test_replies_that_are_not_a_body(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    await deploy(stack, "chat", LEDGER_ECHO, tmp_path / "ledger")
    async with stack.client.ws_connect("/ws/chat") as ws:
        await ws.send_str('{"action": "plain"}')
        assert (await ws.receive(timeout=10)).data == '[1,"two"]'
        await ws.send_str('{"action": "silent"}')  # None: nothing comes back
        await ws.send_str('{"action": "fail"}')
        failed = json.loads((await ws.receive(timeout=10)).data)
        assert failed["message"] == "Internal server error"
        assert failed["connectionId"] and failed["requestId"]
        await ws.send_str('{"action": "after"}')
        after = json.loads((await ws.receive(timeout=10)).data)
        assert after["requestContext"]["routeKey"] == "after"
    found = await records(stack, "chat", 6)
    assert sorted(r["status"] for r in found).count("error") == 1


async def test_messages_reach_the_function_in_order_one_at_a_time(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    async with stack.client.ws_connect("/ws/chat") as ws:
        for n in range(10):
            await ws.send_str(json.dumps({"action": "sleep", "n": n}))
        replies = [json.loads((await ws.receive(timeout=20)).data) for _ in range(10)]
    assert [json.loads(r["body"])["n"] for r in replies] == list(range(10))
    starts = [line for line in ledger(path, "start") if "body" in line["event"]]
    ends = ledger(path, "end")
    assert [json.loads(line["event"]["body"])["n"] for line in starts] == list(range(10))
    for previous, start in zip(ends, starts[1:], strict=False):
        assert start["at"] >= previous["at"]  # each began after the one before it ended


async def test_a_connect_and_message_round_trip(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, "echo", ECHO)
    async with stack.client.ws_connect("/ws/echo") as ws:
        for n in range(2):  # cold, then warm
            await ws.send_str(json.dumps({"action": "echo", "n": n}))
            event = json.loads((await ws.receive(timeout=60)).data)
            assert event["requestContext"]["routeKey"] == "echo"
            assert json.loads(event["body"]) == {"action": "echo", "n": n}
    found = await records(stack, "echo", 4)  # $connect, 2 messages, $disconnect
    assert [r["trigger"] for r in found] == ["websocket"] * 4
    assert {r["status"] for r in found} == {"success"}

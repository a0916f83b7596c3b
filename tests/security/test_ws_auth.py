"""The WebSocket route (``/ws/{function}``) as an attacker sees it: no key or a wrong one is
a 401 before anything runs, another tenant's function is the same 404 as none (and as
``websocket=off``), a name scan is throttled, the key (header or ``?token=``) never reaches
the function, and a public function's rate holds for its messages too."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.main_server.ws_clients import LEDGER_ECHO, deploy, events, records, ws_url
from tests.stack import wait_for

pytestmark = pytest.mark.integration

ANONYMOUS = {"Authorization": ""}


async def _refused(stack, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """The status and JSON body of an upgrade the server refuses."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(ws_url(stack, path), additional_headers=headers or {})
    response = refused.value.response
    return response.status_code, json.loads(response.body)


async def test_no_key_or_a_wrong_one_is_a_401_and_runs_nothing(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    status, body = await _refused(stack, "/ws/chat")
    assert status == 401
    assert "'token' query parameter" in body["error"]["message"]
    assert (await _refused(stack, "/ws/chat?token=hp_nope_nope"))[0] == 401
    assert (await _refused(stack, "/ws/chat?token=garbage"))[0] == 401
    bad = {"Authorization": "Bearer hp_nope_nope"}
    assert (await _refused(stack, "/ws/chat", bad))[0] == 401
    reader = await stack.key("default", "read")
    assert (await _refused(stack, f"/ws/chat?token={reader}"))[0] == 403
    invoker = await stack.key("default", "invoke")
    async with connect(ws_url(stack, f"/ws/chat?token={invoker}")) as client:
        await client.send("hi")
        await asyncio.wait_for(client.recv(), 10)
    assert len(events(path, "CONNECT")) == 1


async def test_another_tenants_function_is_the_same_404_as_none(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path, namespace="alpha")
    await deploy(stack, "chat", LEDGER_ECHO, path, namespace="beta")
    await deploy(stack, "web", LEDGER_ECHO, path, namespace="alpha", websocket="off", http="public")
    await deploy(stack, "other", LEDGER_ECHO, path, namespace="alpha")
    alpha = await stack.key("alpha", "invoke")
    only_other = await stack.key("alpha", "invoke", function="other")
    answers = set()
    for target, token in (
        ("beta.chat", alpha), ("alpha.nothing", alpha), ("gamma.chat", alpha),
        ("alpha.web", alpha), ("alpha.chat", only_other), ("@connections", alpha),
    ):  # fmt: skip
        status, body = await _refused(stack, f"/ws/{target}?token={token}")
        assert status == 404, target
        answers.add(body["error"]["message"].split("'")[0])
    assert answers == {"no WebSocket function "}
    assert events(path, "CONNECT") == []
    async with connect(ws_url(stack, f"/ws/alpha.chat?token={alpha}")):
        pass
    (connected,) = events(path, "CONNECT")
    assert connected["requestContext"]["apiId"] == "alpha.chat"


async def test_a_name_scan_without_a_key_is_throttled(hotpool_stack, tmp_path):
    stack = await hotpool_stack(auth_failure_burst=5, auth_failures_per_s=0.01)
    await deploy(stack, "open", LEDGER_ECHO, tmp_path / "ledger", websocket="public")
    statuses = []
    for i in range(8):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await stack.client.ws_connect(f"/ws/guess{i}", headers=ANONYMOUS)
        statuses.append(refused.value.status)
    assert statuses[:4] == [401] * 4
    assert statuses[-1] == 429
    # the blocked address is refused before any lookup, public functions included
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.client.ws_connect("/ws/open", headers=ANONYMOUS)
    assert refused.value.status == 429


async def test_the_key_never_reaches_the_function(hotpool_stack, tmp_path):
    stack = await hotpool_stack()
    path = tmp_path / "ledger"
    await deploy(stack, "chat", LEDGER_ECHO, path)
    key = await stack.key("default", "invoke")
    async with stack.client.ws_connect("/ws/chat", headers={"Authorization": f"Bearer {key}"}):
        pass
    async with stack.client.ws_connect(f"/ws/chat?token={key}&room=a", headers=ANONYMOUS) as ws:
        await ws.send_str("hello")
        await ws.receive(timeout=10)
    await records(stack, "chat", 5)
    secret = key.split("_", 2)[2]  # hp_<id>_<secret>; the secret may hold "_" itself
    assert len(secret) >= 16
    assert secret not in (tmp_path / "ledger").read_text()
    assert events(path, "CONNECT")[1]["queryStringParameters"] == {"room": "a"}


async def test_a_public_function_takes_no_key_and_its_rate_holds(hotpool_stack, tmp_path):
    stack = await hotpool_stack(public_rate_per_s=0.01, public_rate_burst=3)
    path = tmp_path / "ledger"
    await deploy(stack, "open", LEDGER_ECHO, path, websocket="public")
    # a public function's Authorization header and token parameter are the app's own
    async with stack.client.ws_connect(
        "/ws/open?token=app-token", headers={"Authorization": "Bearer app"}
    ) as ws:
        replies = []
        for n in range(3):
            await ws.send_str(json.dumps({"action": "go", "n": n}))
            replies.append(json.loads((await ws.receive(timeout=10)).data))
    # $connect took the first of 3 tokens; 2 messages pass, the third is throttled
    assert [("requestContext" in r) for r in replies] == [True, True, False]
    assert replies[2]["message"] == "Too Many Requests"
    (connected,) = events(path, "CONNECT")
    assert connected["queryStringParameters"] == {"token": "app-token"}
    assert connected["headers"]["Authorization"] == "Bearer app"

    async def gone() -> bool:
        return len(events(path, "DISCONNECT")) == 1

    assert await wait_for(gone)  # delivered, though over the rate, or the test sees why

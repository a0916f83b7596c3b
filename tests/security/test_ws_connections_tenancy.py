"""The @connections API is a way into other tenants' sockets unless it checks who calls.

Another tenant's connection id answers exactly as an unknown id does (404, the same body), so
ids cannot be confirmed; a function's connections token reaches that function's connections
only; a forged or garbled token and a missing key are 401, a key without ``invoke`` 403; and
guessing tokens is throttled per address like guessing keys.
"""

from __future__ import annotations

import aiohttp
import pytest

from hotpool.main_server.state import WS_HUB, WS_TOKENS
from hotpool.shared.ws_token import derive
from tests.main_server.ws_stand_ins import StandInConnection

pytestmark = pytest.mark.integration

METHODS = ("POST", "GET", "DELETE")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _connection(stack, namespace: str, function: str) -> StandInConnection:
    conn = StandInConnection(stack.client.app[WS_HUB], namespace=namespace, function=function)
    await stack.client.app[WS_HUB].add(conn)
    return conn


async def _call(stack, method: str, connection_id: str, headers: dict[str, str]):
    resp = await stack.client.request(
        method, f"/ws/@connections/{connection_id}", data=b"hello", headers=headers
    )
    return resp.status, await resp.read()


@pytest.mark.parametrize("method", METHODS)
async def test_another_tenants_connection_is_the_same_404_as_an_unknown_one(hotpool_stack, method):
    stack = await hotpool_stack()
    victim = await _connection(stack, "acme", "acme.chat")
    intruder = bearer(await stack.key("globex", "deploy,invoke,read"))

    foreign = await _call(stack, method, victim.connection_id, intruder)
    unknown = await _call(stack, method, "conn999999=", intruder)

    assert foreign[0] == 404 and foreign == unknown
    assert victim.received == [] and victim.closed == []


async def test_a_closed_connection_of_another_tenant_is_still_404(hotpool_stack):
    stack = await hotpool_stack()
    victim = await _connection(stack, "acme", "acme.chat")
    await victim.close()
    owner = bearer(await stack.key("acme", "invoke"))
    intruder = bearer(await stack.key("globex", "invoke"))

    assert (await _call(stack, "POST", victim.connection_id, owner))[0] == 410
    assert await _call(stack, "POST", victim.connection_id, intruder) == await _call(
        stack, "POST", "conn999999=", intruder
    )


@pytest.mark.parametrize("method", METHODS)
async def test_a_function_token_cannot_reach_another_functions_connection(hotpool_stack, method):
    stack = await hotpool_stack()
    same_tenant = await _connection(stack, "acme", "acme.other")
    other_tenant = await _connection(stack, "globex", "globex.chat")
    token = bearer(await stack.client.app[WS_TOKENS].token("acme.chat"))

    for conn in (same_tenant, other_tenant):
        assert await _call(stack, method, conn.connection_id, token) == await _call(
            stack, method, "conn999999=", token
        )
        assert conn.received == [] and conn.closed == []


async def test_forged_and_garbled_tokens_and_no_key_are_401(hotpool_stack):
    stack = await hotpool_stack()
    conn = await _connection(stack, "acme", "acme.chat")
    genuine = await stack.client.app[WS_TOKENS].token("acme.chat")
    attempts = [
        bearer(derive(b"a guessed signing key", "acme.chat")),
        bearer(genuine[:-1] + ("0" if genuine[-1] != "0" else "1")),
        bearer("hpc_garbage"),
        {"Authorization": genuine},  # no scheme
        {"Authorization": ""},
    ]
    for headers in attempts:
        for method in METHODS:
            status, body = await _call(stack, method, conn.connection_id, headers)
            assert status == 401, (headers, body)
    assert conn.received == [] and conn.closed == []


async def test_a_key_without_invoke_is_403_in_its_own_namespace(hotpool_stack):
    stack = await hotpool_stack()
    conn = await _connection(stack, "acme", "acme.chat")
    reader = bearer(await stack.key("acme", "read,deploy"))

    for method in METHODS:
        assert (await _call(stack, method, conn.connection_id, reader))[0] == 403
    assert conn.received == [] and conn.closed == []


async def test_guessing_tokens_is_throttled_per_address(hotpool_stack):
    burst = 5
    stack = await hotpool_stack(auth_failure_burst=burst, auth_failures_per_s=0.01)
    conn = await _connection(stack, "acme", "acme.chat")
    genuine = bearer(await stack.client.app[WS_TOKENS].token("acme.chat"))
    server = stack.client.server
    url = f"http://{server.host}:{server.port}/ws/@connections/{conn.connection_id}"
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
    async with attacker, other:
        for n in range(burst):
            guess = bearer(derive(f"guess {n}".encode(), "acme.chat"))
            async with attacker.get(url, headers=guess) as resp:
                assert resp.status == 401
        for headers in (bearer(derive(b"one more", "acme.chat")), genuine):
            async with attacker.get(url, headers=headers) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        async with other.get(url, headers=genuine) as resp:
            assert resp.status == 200

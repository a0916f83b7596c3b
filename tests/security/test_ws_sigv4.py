"""A SigV4 signature on the @connections API is a credential like a token: it must not be
replayable onto another body or another connection, nor outlive AWS's 15 minutes, nor reach
past its function; guessing signatures is throttled per address like guessing keys.

Requests are signed by botocore's own signer with the AWS credentials a function's token makes
(``tests.main_server.ws_clients.sigv4_headers``) and sent over real HTTP to a Main."""

from __future__ import annotations

import datetime

import aiohttp
import pytest

from hotpool.main_server.state import WS_HUB, WS_TOKENS
from hotpool.shared.ws_token import derive
from tests.main_server.ws_clients import sigv4_headers
from tests.main_server.ws_stand_ins import StandInConnection

pytestmark = pytest.mark.integration

METHODS = ("POST", "GET", "DELETE")


async def _connection(stack, namespace: str, function: str) -> StandInConnection:
    conn = StandInConnection(stack.client.app[WS_HUB], namespace=namespace, function=function)
    await stack.client.app[WS_HUB].add(conn)
    return conn


def _path(connection_id: str) -> str:
    return f"/ws/@connections/{connection_id}"


def _signed(stack, method: str, path: str, body: bytes, token: str, **options) -> dict:
    return sigv4_headers(method, str(stack.client.make_url(path)), body, token, **options)


async def _send(stack, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    resp = await stack.client.request(method, path, data=body, headers=headers)
    return resp.status, await resp.json() if resp.status >= 400 else {}


async def test_a_signature_replayed_with_another_body_is_401(hotpool_stack):
    stack = await hotpool_stack()
    conn = await _connection(stack, "acme", "acme.chat")
    token = await stack.client.app[WS_TOKENS].token("acme.chat")
    path = _path(conn.connection_id)
    headers = _signed(stack, "POST", path, b"hello", token)

    status, body = await _send(stack, "POST", path, b"transfer all the money", headers)
    assert status == 401 and "does not match" in body["message"]
    assert (await _send(stack, "POST", path, b"hello", headers))[0] == 200
    assert conn.received == ["hello"]


async def test_a_signature_replayed_on_another_connection_is_401(hotpool_stack):
    stack = await hotpool_stack()
    mine = await _connection(stack, "acme", "acme.chat")
    other = await _connection(stack, "acme", "acme.chat")
    token = await stack.client.app[WS_TOKENS].token("acme.chat")

    for method in METHODS:
        headers = _signed(stack, method, _path(mine.connection_id), b"", token)
        status, body = await _send(stack, method, _path(other.connection_id), b"", headers)
        assert status == 401, (method, body)
    assert other.received == [] and other.closed == []


@pytest.mark.parametrize("skew_min", [-16, 16])
async def test_a_signature_more_than_15_minutes_off_is_401(hotpool_stack, skew_min):
    stack = await hotpool_stack()
    conn = await _connection(stack, "acme", "acme.chat")
    token = await stack.client.app[WS_TOKENS].token("acme.chat")
    at = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    at += datetime.timedelta(minutes=skew_min)
    path = _path(conn.connection_id)

    headers = _signed(stack, "POST", path, b"hi", token, at=at)
    status, body = await _send(stack, "POST", path, b"hi", headers)
    assert status == 401 and "expired" in body["message"]
    assert conn.received == []


@pytest.mark.parametrize("method", METHODS)
async def test_one_functions_keys_on_anothers_connection_are_the_same_404_as_unknown(
    hotpool_stack, method
):
    stack = await hotpool_stack()
    same_tenant = await _connection(stack, "acme", "acme.other")
    other_tenant = await _connection(stack, "globex", "globex.chat")
    token = await stack.client.app[WS_TOKENS].token("acme.chat")

    async def attempt(connection_id: str) -> tuple[int, dict]:
        path = _path(connection_id)
        return await _send(stack, method, path, b"x", _signed(stack, method, path, b"x", token))

    unknown = await attempt("conn999999=")
    assert unknown[0] == 404
    for conn in (same_tenant, other_tenant):
        assert await attempt(conn.connection_id) == unknown
        assert conn.received == [] and conn.closed == []


async def test_a_forged_secret_an_unknown_key_and_another_service_are_401(hotpool_stack):
    stack = await hotpool_stack()
    conn = await _connection(stack, "acme", "acme.chat")
    genuine = await stack.client.app[WS_TOKENS].token("acme.chat")
    path = _path(conn.connection_id)
    attempts = {
        "does not match": _signed(stack, "POST", path, b"x", derive(b"guessed", "acme.chat")),
        "not one hotpool gave out": _signed(stack, "POST", path, b"x", "AKIAIOSFODNN7_EXAMPLE"),
        "service 's3'": _signed(stack, "POST", path, b"x", genuine, service="s3"),
    }
    for refusal, headers in attempts.items():
        status, body = await _send(stack, "POST", path, b"x", headers)
        assert status == 401 and refusal in body["message"]
        assert body["message"] == body["error"]["message"]
    assert conn.received == []


async def test_guessing_signatures_is_throttled_per_address(hotpool_stack):
    burst = 5
    stack = await hotpool_stack(auth_failure_burst=burst, auth_failures_per_s=0.01)
    conn = await _connection(stack, "acme", "acme.chat")
    genuine = await stack.client.app[WS_TOKENS].token("acme.chat")
    path = _path(conn.connection_id)
    url = str(stack.client.make_url(path))
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
    async with attacker, other:
        for n in range(burst):
            guess = sigv4_headers("GET", url, b"", derive(f"guess {n}".encode(), "acme.chat"))
            async with attacker.get(url, headers=guess) as resp:
                assert resp.status == 401
        for token in (derive(b"one more", "acme.chat"), genuine):
            async with attacker.get(url, headers=sigv4_headers("GET", url, b"", token)) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        async with other.get(url, headers=sigv4_headers("GET", url, b"", genuine)) as resp:
            assert resp.status == 200

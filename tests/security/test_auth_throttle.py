"""Guessing keys is throttled per client address: after a burst of failed authentications the
address gets 429 with Retry-After, for a right key too (else the answers would still tell a
guess that hit from one that missed), while callers from other addresses go on unhindered.
"""

from __future__ import annotations

import secrets

import aiohttp
import pytest

pytestmark = pytest.mark.integration

BURST = 5


def _guess() -> dict[str, str]:
    return {"Authorization": f"Bearer hp_{secrets.token_hex(8)}_{'x' * 43}"}


async def test_failed_authentications_from_one_address_are_throttled(hotpool_stack):
    stack = await hotpool_stack(auth_failure_burst=BURST, auth_failures_per_s=0.01)
    server = stack.client.server
    url = f"http://{server.host}:{server.port}/v1/functions"
    valid = {"Authorization": stack.client.session.headers["Authorization"]}
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
    async with attacker, other:
        for _ in range(BURST):
            async with attacker.get(url, headers=_guess()) as resp:
                assert resp.status == 401, await resp.text()

        for headers in (_guess(), valid):
            async with attacker.get(url, headers=headers) as resp:
                assert resp.status == 429, await resp.text()
                assert int(resp.headers["Retry-After"]) >= 1
                assert "authentication" in (await resp.json())["error"]["message"]

        async with other.get(url, headers=valid) as resp:
            assert resp.status == 200, await resp.text()
        async with other.get(url, headers=_guess()) as resp:
            assert resp.status == 401, await resp.text()


async def test_requests_without_a_key_are_not_counted(hotpool_stack):
    stack = await hotpool_stack(auth_failure_burst=BURST, auth_failures_per_s=0.01)
    for _ in range(BURST * 2):
        resp = await stack.client.get("/v1/functions", headers={"Authorization": ""})
        assert resp.status == 401, await resp.text()
    assert (await stack.client.get("/v1/functions")).status == 200

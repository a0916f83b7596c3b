"""Connection tokens (shared.ws_token): one signing key shared through Redis, a token naming
exactly one function, and anything forged or garbled refused."""

from __future__ import annotations

import fakeredis
import pytest

from hotpool.shared import ws_keys
from hotpool.shared.errors import Unauthorized
from hotpool.shared.ws_token import ConnectionTokens, derive, function_of, looks_like_token

pytestmark = pytest.mark.unit


@pytest.fixture
async def two_processes():
    """Two processes' token makers (a Manager's and a Main's) on one Redis."""
    server = fakeredis.FakeServer()
    clients = [fakeredis.FakeAsyncRedis(server=server) for _ in range(2)]
    yield [ConnectionTokens(c) for c in clients]
    for client in clients:
        await client.aclose()


async def test_a_token_made_by_one_process_is_verified_by_another(two_processes):
    manager, main = two_processes

    token = await manager.token("acme.chat")

    assert looks_like_token(token)
    assert await main.verify(token) == "acme.chat"
    assert await main.token("acme.chat") == token


async def test_the_signing_key_is_made_once(two_processes):
    manager, main = two_processes
    first = await manager.signing_key()
    assert await main.signing_key() == first
    stored = await manager._redis.get(ws_keys.SIGNING_KEY)
    assert bytes.fromhex(stored.decode()) == first and len(first) == ws_keys.signing_key_bytes


async def test_a_token_for_another_function_is_refused(two_processes):
    manager, main = two_processes
    token = await manager.token("acme.chat")
    digest = token.rpartition("_")[2]
    other = derive(b"", "acme.other").rpartition("_")[0]

    with pytest.raises(Unauthorized):  # another function's name with this one's HMAC
        await main.verify(f"{other}_{digest}")


@pytest.mark.parametrize(
    "garbled",
    ["hpc_", "hpc__", "hpc_!!!_00", "hpc_YWNtZS5jaGF0_abc", "hpc_" + "_" * 70, "hp_x_y", ""],
)
async def test_garbled_tokens_are_refused(two_processes, garbled):
    with pytest.raises(Unauthorized):
        await two_processes[1].verify(garbled)


async def test_a_forged_token_of_the_right_shape_is_refused(two_processes):
    manager, main = two_processes
    await manager.signing_key()
    forged = derive(b"guessed key", "acme.chat")

    assert function_of(forged) == "acme.chat"
    with pytest.raises(Unauthorized):
        await main.verify(forged)


async def test_names_with_base64url_underscores_round_trip(two_processes):
    manager, main = two_processes
    # '?' and '>' make base64url emit '_' and '-'; names allow '_' and '-' themselves
    for function in ("a_b.c-d", "ns-1.fn_2", "x" * 63):
        assert await main.verify(await manager.token(function)) == function

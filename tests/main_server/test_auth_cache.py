"""The verified-key cache: concurrent requests of one key share one database lookup, and each
request is still judged by its own secret."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from hotpool.main_server.auth import Authenticator
from hotpool.shared.auth import Principal, hash_secret, new_key
from hotpool.shared.errors import Unauthorized
from hotpool.shared.keystore import INVALID_KEY
from hotpool.shared.settings import Settings

pytestmark = pytest.mark.unit


class CountingKeyStore:
    def __init__(self, secret: str, principal: Principal) -> None:
        self.lookups = 0
        self._stored = hash_secret(secret)
        self._principal = principal

    async def lookup(self, key_id: str) -> tuple[Principal, str]:
        self.lookups += 1
        await asyncio.sleep(0.05)  # a database round trip, during which others arrive
        if key_id != self._principal.key_id:
            raise Unauthorized(INVALID_KEY)
        return self._principal, self._stored


@pytest.fixture
def key():
    return new_key()


@pytest.fixture
def authenticator(key):
    principal = Principal(key.key_id, ("team-a",), frozenset({"invoke"}))
    store = CountingKeyStore(key.secret, principal)
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return Authenticator(Settings(key_cache_ttl_s=60), keystore=store, redis=redis), store


async def test_a_burst_of_one_key_makes_one_lookup(authenticator, key):
    auth, store = authenticator
    header = f"Bearer {key.token}"

    principals = await asyncio.gather(*(auth.authenticate(header) for _ in range(40)))

    assert {p.key_id for p in principals} == {key.key_id}
    assert store.lookups == 1
    await auth.authenticate(header)  # cached now
    assert store.lookups == 1


async def test_a_wrong_secret_sharing_the_lookup_is_refused_and_the_right_one_passes(
    authenticator, key
):
    auth, store = authenticator
    wrong = f"Bearer hp_{key.key_id}_{'x' * 43}"

    right, refused = await asyncio.gather(
        auth.authenticate(f"Bearer {key.token}"), auth.authenticate(wrong), return_exceptions=True
    )

    assert isinstance(right, Principal) and right.key_id == key.key_id
    assert isinstance(refused, Unauthorized)
    assert store.lookups == 1
    # nor does the cached entry let the wrong secret in later
    with pytest.raises(Unauthorized):
        await auth.authenticate(wrong)

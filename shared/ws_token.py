"""The credential a WebSocket function gets to reach its own connections.

A token is ``hpc_<function, base64url>_<HMAC-SHA256 of the function, hex>``: it names one
qualified function and proves that a holder of the signing key made it. The key lives in Redis
(``shared.ws_keys.SIGNING_KEY``), created once with SET NX, so every Main derives the token a
Manager put into a container's environment without any configuration. Verification is a
constant-time comparison with the token derived again; nothing is stored per token.

A token never expires: it is good while the signing key lives (delete the key to revoke every
token at once; containers started after that get new ones).

For AWS SDKs the token is also a pair of AWS credentials: the access key id is its
``hpc_<function>`` part (it names the function, in the clear, in every SigV4 signature), the
secret access key the whole token (``main_server.ws_sigv4`` checks such signatures).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from redis.asyncio import Redis

from hotpool.shared import ws_keys
from hotpool.shared.errors import InvalidRequest, Unauthorized
from hotpool.shared.models import validate_qualified
from hotpool.shared.redis_conn import REDIS_ERRORS, redis_errors
from hotpool.shared.ttlcache import TtlCache

PREFIX = "hpc_"
INVALID_TOKEN = "the connections token is not valid"
UNKNOWN_ACCESS_KEY = (
    "the AWS access key id is not one hotpool gave out: use the AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY of the WebSocket function's environment"
)


def looks_like_token(credential: str) -> bool:
    """Whether a Bearer credential is a connections token rather than an API key."""
    return credential.startswith(PREFIX)


def derive(signing_key: bytes, function: str) -> str:
    """The token of ``function`` (qualified name) under ``signing_key``."""
    name = base64.urlsafe_b64encode(function.encode()).decode().rstrip("=")
    digest = hmac.new(signing_key, function.encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}{name}_{digest}"


def access_key_id(token: str) -> str:
    """The AWS access key id of a token: its ``hpc_<function>`` part, without the digest
    (base64url has no '/', which SigV4's credential scope is split on)."""
    return token.rpartition("_")[0]


def function_of(token: str) -> str:
    """The qualified function a token names (not yet verified), or Unauthorized."""
    body = token[len(PREFIX) :] if token.startswith(PREFIX) else ""
    # base64url may contain '_', the hex digest never does: the last '_' splits them
    name, _, digest = body.rpartition("_")
    function = _decode_name(name, INVALID_TOKEN)
    if len(digest) != hashlib.sha256().digest_size * 2:
        raise Unauthorized(INVALID_TOKEN)
    return function


def function_of_access_key(access_key: str) -> str:
    """The qualified function an access key id names (not yet verified), or Unauthorized."""
    if not access_key.startswith(PREFIX):
        raise Unauthorized(UNKNOWN_ACCESS_KEY)
    return _decode_name(access_key[len(PREFIX) :], UNKNOWN_ACCESS_KEY)


def _decode_name(name: str, refusal: str) -> str:
    try:
        function = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        validate_qualified(function)
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidRequest):
        raise Unauthorized(refusal) from None
    return function


class ConnectionTokens:
    """Makes and checks connection tokens with the signing key kept in Redis."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._key: TtlCache[str, bytes] = TtlCache(ws_keys.signing_key_cache_s)

    async def signing_key(self) -> bytes:
        """The shared signing key, created by whichever process needs it first."""
        return await self._key.get("", self._load, stale_on=REDIS_ERRORS)

    async def _load(self) -> bytes:
        with redis_errors("the connections signing key"):
            candidate = secrets.token_hex(ws_keys.signing_key_bytes)
            await self._redis.set(ws_keys.SIGNING_KEY, candidate, nx=True)
            stored = await self._redis.get(ws_keys.SIGNING_KEY)
        if stored is None:  # deleted between the two commands: use ours next time round
            raise Unauthorized(INVALID_TOKEN)
        return bytes.fromhex(stored.decode() if isinstance(stored, bytes) else stored)

    async def token(self, function: str) -> str:
        """The token that reaches the connections of ``function`` (qualified name)."""
        return derive(await self.signing_key(), function)

    async def verify(self, token: str) -> str:
        """The qualified function a genuine token names; Unauthorized otherwise."""
        function = function_of(token)
        expected = derive(await self.signing_key(), function)
        if not hmac.compare_digest(expected.encode(), token.encode()):
            raise Unauthorized(INVALID_TOKEN)
        return function

    async def secret_of(self, access_key: str) -> tuple[str, str]:
        """The function an access key id names and its token, the secret access key its
        signatures are made with; Unauthorized for an access key no token has."""
        function = function_of_access_key(access_key)
        token = derive(await self.signing_key(), function)
        # base64 decodes some strings it never encodes: only the canonical name is a key
        if not hmac.compare_digest(access_key_id(token).encode(), access_key.encode()):
            raise Unauthorized(UNKNOWN_ACCESS_KEY)
        return function, token

"""Authentication, rate limits and namespace concurrency for Main's API.

Every request but ``/healthz`` and ``/readyz`` carries ``Authorization: Bearer <key>``. What a
key's lookup returns (its principal and the hash of its secret, which every request's secret is
checked against) is cached for ``key_cache_ttl_s``; a revocation is announced on a Redis channel so
every replica drops its copy at once (and the TTL bounds it if that message is lost).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from redis.asyncio import Redis

from hotpool.shared import keys
from hotpool.shared.auth import Principal, parse_token, secret_matches
from hotpool.shared.errors import TooManyRequests, Unauthorized
from hotpool.shared.http import Handler
from hotpool.shared.keystore import INVALID_KEY, SqlKeyStore
from hotpool.shared.pool import Admission
from hotpool.shared.redis_conn import REDIS_ERRORS, redis_errors
from hotpool.shared.settings import Settings
from hotpool.shared.ttlcache import TtlCache

log = logging.getLogger(__name__)

PRINCIPAL = web.RequestKey("principal", Principal)
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# routes that meter the key's rate themselves, in the same Redis round trip as their own work
SELF_METERED = frozenset({"invoke"})
# routes that authenticate (or not) themselves: a public web function needs no key, and its
# Authorization header belongs to the app (main_server.web); a WebSocket's key may come as a
# query parameter (main_server.ws); the @connections API also takes a function's connections
# token (main_server.ws_management)
SELF_AUTHENTICATED = frozenset({"web", "web_root", "ws", "ws_connection"})
# blocks expire within 1/auth_failures_per_s; past this many, the expired ones are dropped
MAX_BLOCKED_ADDRESSES = 10_000


class Authenticator:
    """Turns an Authorization header into a Principal, and meters it."""

    def __init__(self, settings: Settings, *, keystore: SqlKeyStore, redis: Redis) -> None:
        self._settings = settings
        self._keystore = keystore
        self._redis = redis
        # a key's principal and stored hash; each request's own secret is checked against it
        self._keys: TtlCache[str, tuple[Principal, str]] = TtlCache(settings.key_cache_ttl_s)
        self._take_token = redis.register_script(keys.TAKE_TOKEN)
        # client address -> monotonic time until which it is refused: known here without a
        # Redis round trip on every request; Redis counts the failures across replicas
        self._blocked: dict[str, float] = {}

    @property
    def keystore(self) -> SqlKeyStore:
        return self._keystore

    async def authenticate(self, header: str | None) -> Principal:
        return await self.verify(*parse_token(header))

    async def verify(self, key_id: str, secret: str) -> Principal:
        """The principal of a parsed key, or Unauthorized when its secret is not the key's."""
        principal, stored = await self._keys.get(key_id, lambda: self._keystore.lookup(key_id))
        if not secret_matches(secret, stored):
            raise Unauthorized(INVALID_KEY)
        return principal

    def check_address(self, address: str) -> None:
        """Raise TooManyRequests while ``address`` is blocked for failing to authenticate."""
        until = self._blocked.get(address)
        if until is None:
            return
        left_s = until - time.monotonic()
        if left_s > 0:
            raise too_many_failures(left_s)
        del self._blocked[address]

    async def failed(self, address: str) -> None:
        """Count a failed authentication from ``address``; raise TooManyRequests (and block
        the address, a right key included) once it is over its burst."""
        rate, burst = self._settings.auth_failures_per_s, max(1, self._settings.auth_failure_burst)
        try:
            wait_s = float(
                await self._take_token(
                    keys=[keys.auth_failures(address)], args=[rate, burst, time.time()]
                )
            )
        except REDIS_ERRORS:
            log.warning("could not count a failed authentication from %s", address)
            return
        if wait_s > 0:
            now = time.monotonic()
            if len(self._blocked) >= MAX_BLOCKED_ADDRESSES:
                self._blocked = {a: t for a, t in self._blocked.items() if t > now}
            self._blocked[address] = now + wait_s
            raise too_many_failures(wait_s)

    def forget(self, key_id: str) -> None:
        self._keys.forget(key_id)

    async def revoked(self, key_id: str) -> None:
        """A key was revoked here: drop it, and tell every replica."""
        self.forget(key_id)
        try:
            await self._redis.publish(keys.KEYS_CHANGED, key_id)
        except REDIS_ERRORS:
            log.warning("could not announce the revocation of %s; the cache TTL bounds it", key_id)

    async def follow_revocations(self) -> None:
        await self._keys.follow(self._redis, keys.KEYS_CHANGED, "key revocation feed")

    def rate_of(self, principal: Principal) -> tuple[float, int]:
        """The key's request rate (per second) and burst."""
        return principal.rate_per_s or self._settings.rate_per_s, max(1, self._settings.rate_burst)

    async def meter(self, principal: Principal) -> None:
        """Raise TooManyRequests when the key is over its request rate."""
        rate, burst = self.rate_of(principal)
        with redis_errors("the rate limiter"):
            wait = float(
                await self._take_token(
                    keys=[keys.bucket(principal.key_id)], args=[rate, burst, time.time()]
                )
            )
        if wait > 0:
            raise over_rate(rate, wait)

    def admission(
        self, principal: Principal, namespace: str, hold_s: float, *, metered: bool
    ) -> Admission:
        """What an invocation passes in the pool's first script: the key's rate (unless
        ``metered`` already) and a slot among the namespace's calls in flight."""
        rate, burst = self.rate_of(principal)
        return Admission(
            key_id=principal.key_id,
            rate_per_s=0.0 if metered else rate,
            burst=burst,
            namespace=namespace,
            namespace_limit=self._settings.namespace_max_concurrency,
            hold_s=hold_s,
        )


def over_rate(rate_per_s: float, wait_s: float) -> TooManyRequests:
    return TooManyRequests(
        f"this key is over its rate of {rate_per_s:g} requests/s", retry_after_s=wait_s
    )


def too_many_failures(wait_s: float) -> TooManyRequests:
    return TooManyRequests(
        "too many failed authentications from this address; retry later", retry_after_s=wait_s
    )


def namespace_full(namespace: str, limit: int) -> TooManyRequests:
    return TooManyRequests(
        f"namespace {namespace!r} has {limit} calls in flight, its limit; retry later",
        retry_after_s=1.0,
    )


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS or request.match_info.route.name in SELF_AUTHENTICATED:
        return await handler(request)
    authenticator = request.app[AUTHENTICATOR]
    header = request.headers.get("Authorization")
    address = request.remote or ""
    authenticator.check_address(address)
    try:
        principal = await authenticator.authenticate(header)
    except Unauthorized:
        if header:  # a key sent and wrong is a guess; no key at all guesses nothing
            await authenticator.failed(address)
        raise
    if request.match_info.route.name not in SELF_METERED:
        await authenticator.meter(principal)
    request[PRINCIPAL] = principal
    return await handler(request)

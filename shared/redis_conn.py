"""Building the Redis client: a real server from ``HOTPOOL_REDIS_URL`` (or Redis Sentinel
from ``HOTPOOL_REDIS_SENTINELS``), or the embedded in-process stand-in (fakeredis with Lua,
so the same pool scripts run unchanged)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import hiredis
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff

from hotpool.shared.errors import StoreUnavailable
from hotpool.shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from fakeredis import FakeServer

# Redis is away (BusyLoadingError, AuthenticationError and Sentinel's MasterNotFoundError are
# ConnectionErrors too): what a caller that can carry on without Redis catches
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Let Redis being away leave the block as ``StoreUnavailable`` (503) naming ``what``.

    A ReadOnlyError is a master demoted to replica by a failover (Sentinel-managed connections
    already turn it into a ConnectionError; a plain URL to the old master does not).
    """
    try:
        yield
    except (*REDIS_ERRORS, redis.exceptions.ReadOnlyError) as exc:
        raise StoreUnavailable(f"{what} (Redis) is unreachable; try again shortly") from exc


def text(raw: str | bytes) -> str:
    """A Redis reply (bytes from a real server, str or bytes from the stand-in) as text."""
    return raw.decode() if isinstance(raw, bytes) else raw


def parse_hosts(value: str, setting: str) -> list[tuple[str, int]]:
    """``"h1:26379,h2:26379"`` as (host, port) pairs."""
    hosts = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(f"{setting}: {item!r} is not host:port")
        hosts.append((host, int(port)))
    return hosts


class _HiredisPacking(AbstractConnection):
    """Commands packed by hiredis (C) rather than redis-py's per-argument Python loop, which a
    profile of the invoke path put at ~20 µs per pool script (redis-py's sync client can do
    the same; its asyncio client cannot yet)."""

    def pack_command(self, *args):  # type: ignore[no-untyped-def]
        if isinstance(args[0], str) and " " in args[0]:  # "CLIENT SETNAME" and the like
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class _FastConnection(_HiredisPacking, Connection):
    pass


class _FastSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _FastUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class _FastSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    pass


_CONNECTION_BY_SCHEME = {
    "redis": _FastConnection,
    "rediss": _FastSSLConnection,
    "unix": _FastUnixConnection,
}


def uses_in_process_redis(settings: Settings) -> bool:
    """Whether ``settings`` name no Redis server, so the in-process stand-in serves."""
    return not (settings.redis_url or settings.redis_sentinels)


def in_process_server() -> FakeServer:
    """One in-process Redis that several clients can share (``hotpool dev``'s Main and
    Manager). fakeredis and lupa are imported here, never by a service that has a real Redis:
    they cost ~16 MiB and ~175 ms of start-up."""
    import fakeredis

    return fakeredis.FakeServer()


def make_redis(settings: Settings, server: FakeServer | None = None) -> Redis:
    """A Redis client for ``settings``; ``server`` shares one embedded Redis between apps."""
    options = {
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_timeout": settings.redis_socket_timeout_s,
        "max_connections": settings.redis_max_connections,
        "health_check_interval": 10,
        # one reconnect-and-retry: after a Redis restart every pooled connection is dead, and
        # without it the first command on each fails long after Redis is back. (Redis.from_url
        # does not apply redis-py's default Retry: its connections get Retry(NoBackoff(), 0).)
        # A script re-run because its reply was lost is safe: each is idempotent or, for
        # ACQUIRE, leaves a lease the reaper reclaims.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
    }
    if settings.redis_sentinels:
        sentinels = parse_hosts(settings.redis_sentinels, "HOTPOOL_REDIS_SENTINELS")
        url_options = _url_options(settings.redis_url) if settings.redis_url else {}
        sentinel = Sentinel(
            sentinels,
            sentinel_kwargs={
                "socket_connect_timeout": settings.redis_connect_timeout_s,
                "socket_timeout": settings.redis_socket_timeout_s,
            },
            **options,
            **url_options,
        )
        return sentinel.master_for(
            settings.redis_sentinel_master, connection_class=_FastSentinelConnection
        )
    if settings.redis_url:
        scheme = settings.redis_url.partition("://")[0].lower()
        if scheme not in _CONNECTION_BY_SCHEME:
            raise SettingsError(
                f"HOTPOOL_REDIS_URL must start with redis://, rediss:// or unix://, not {scheme!r}"
            )
        try:
            return Redis.from_url(
                settings.redis_url, connection_class=_CONNECTION_BY_SCHEME[scheme], **options
            )
        except ValueError as exc:
            raise SettingsError(f"HOTPOOL_REDIS_URL is not a Redis URL: {exc}") from None
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=server or in_process_server())


def _url_options(url: str) -> dict[str, object]:
    """db and password from a redis:// URL, for the Sentinel-managed connections."""
    from redis.asyncio.connection import parse_url

    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise SettingsError(f"HOTPOOL_REDIS_URL is not a Redis URL: {exc}") from None
    return {k: v for k, v in parsed.items() if k in ("db", "password", "username")}


async def check_redis(client: Redis, settings: Settings) -> None:
    """Raise StoreUnavailable naming the setting unless Redis answers (start-up check)."""
    try:
        await client.ping()
    except (*REDIS_ERRORS, redis.exceptions.RedisError) as exc:
        setting = "HOTPOOL_REDIS_SENTINELS" if settings.redis_sentinels else "HOTPOOL_REDIS_URL"
        raise StoreUnavailable(f"Redis is unreachable ({setting}): {exc}") from exc


async def open_redis(settings: Settings) -> Redis:
    """A client from ``settings`` that has answered (``check_redis``); closed if it has not."""
    client = make_redis(settings)
    try:
        await check_redis(client, settings)
    except BaseException:
        await client.aclose()
        raise
    return client

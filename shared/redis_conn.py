"""Building the Redis client: a real server from ``HOTPOOL_REDIS_URL``, or the embedded
in-process stand-in (fakeredis with Lua, so the same pool scripts run unchanged)."""

from __future__ import annotations

import fakeredis
from redis.asyncio import Redis

from shared.settings import Settings


def make_redis(settings: Settings, server: fakeredis.FakeServer | None = None) -> Redis:
    """A Redis client for ``settings``; ``server`` shares one embedded Redis between apps."""
    if settings.redis_url:
        return Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=10,
        )
    return fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer())

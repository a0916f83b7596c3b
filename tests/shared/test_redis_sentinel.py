"""Redis Sentinel: the pool follows the master through a failover (real processes)."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Pool
from hotpool.shared.redis_conn import make_redis, parse_hosts
from hotpool.shared.settings import Settings, SettingsError
from tests.services import RedisProcess


@pytest.fixture
def redis_pair(tmp_path):
    # each server stops at the end, also when a later one cannot start (no redis-sentinel
    # installed skips the test there): the ones started before would be left running
    started: list[RedisProcess] = []
    try:
        master = RedisProcess(tmp_path / "master")
        started.append(master)
        started.append(
            RedisProcess(tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port))
        )
        started.append(
            RedisProcess(
                tmp_path / "sentinel",
                f"sentinel monitor hp 127.0.0.1 {master.port} 1",
                "sentinel down-after-milliseconds hp 500",
                "sentinel failover-timeout hp 5000",
                "sentinel parallel-syncs hp 1",
                sentinel=True,
            )
        )
        yield tuple(started)
    finally:
        for proc in reversed(started):
            proc.stop()


async def _until(check, timeout_s: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: BaseException | None = None
    while loop.time() < deadline:
        try:
            result = await check()
            if result:
                return result
        except (redis.exceptions.RedisError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout_s} s (last error: {last})")


@pytest.mark.integration
async def test_pool_survives_a_failover(redis_pair):
    master, replica, sentinel = redis_pair
    settings = Settings(
        redis_sentinels=f"127.0.0.1:{sentinel.port}",
        redis_sentinel_master="hp",
        redis_socket_timeout_s=1.0,
        redis_connect_timeout_s=0.5,
    )
    client = make_redis(settings)
    pool = Pool(client)
    entry = PoolEntry("fn", 1, "m1", "c1", "127.0.0.1:1")
    try:
        await pool.lease(entry, 60)
        assert await pool.release(entry) == 1
        # wait until the replica has the entry, then lose the master
        replica_client = make_redis(Settings(redis_url=f"redis://127.0.0.1:{replica.port}"))
        await _until(lambda: replica_client.llen("hp:pool:fn:1"))
        await replica_client.aclose()
        master.stop()

        async def promoted():
            acquired = await pool.acquire("fn", 1, 60)
            return acquired

        got = await _until(promoted)
        assert got == entry  # the replicated entry, served by the promoted replica
        assert await pool.release(got) == 1
        # the client now talks to the promoted replica
        info = await client.info("server")
        assert int(info["tcp_port"]) == replica.port
        assert (await client.info("replication"))["role"] == "master"
    finally:
        await client.aclose()


@pytest.mark.unit
def test_sentinel_hosts_are_validated():
    assert parse_hosts("a:1, b:2", "X") == [("a", 1), ("b", 2)]
    for bad in ("nohost", "h:", ":1", "h:port"):
        with pytest.raises(SettingsError, match="X"):
            parse_hosts(bad, "X")

"""Two ConnectionHubs (two Main replicas) on one real Redis: a send or close through one reaches
the socket held by the other, in order; a replica that stops closes its sockets with 1001 and
unregisters them; a connection of a replica nobody listens for any more is gone (410)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from hotpool.main_server.ws_hub import ConnectionHub
from hotpool.shared import ws_keys
from hotpool.shared.errors import Gone
from hotpool.shared.settings import Settings
from tests.async_calls import real_redis_url  # noqa: F401
from tests.main_server.ws_stand_ins import StandInConnection, key
from tests.stack import wait_for

pytestmark = pytest.mark.integration

SETTINGS = Settings.from_env({})


@pytest.fixture
async def replicas(real_redis_url):  # noqa: F811
    """Two started hubs, each with its own client of the real Redis, as two Mains have."""
    clients = [redis.asyncio.Redis.from_url(real_redis_url) for _ in range(2)]
    hubs = [ConnectionHub(SETTINGS, c, f"replica-{n}") for n, c in enumerate(clients)]
    for hub in hubs:
        await hub.start()
        assert await wait_for(lambda hub=hub: _subscribed(hub), 5.0)
    yield hubs
    for hub in hubs:
        await hub.stop()
    for client in clients:
        await client.aclose()


async def _subscribed(hub: ConnectionHub) -> bool:
    return bool((await hub._redis.pubsub_numsub(hub.channel))[0][1])


async def test_a_hundred_sends_through_another_replica_arrive_in_order(replicas):
    a, b = replicas
    conn = StandInConnection(a)
    await a.add(conn)

    for n in range(100):
        await b.send(key(), conn.connection_id, f"message {n}".encode())

    assert await wait_for(lambda: _received(conn, 100), 10.0)
    assert conn.received == [f"message {n}" for n in range(100)]


async def _received(conn: StandInConnection, n: int) -> bool:
    return len(conn.received) >= n


async def test_a_close_through_another_replica_closes_the_socket(replicas):
    a, b = replicas
    conn = StandInConnection(a)
    await a.add(conn)

    await b.close(key(), conn.connection_id)

    await asyncio.wait_for(conn.ended.wait(), 5.0)
    assert conn.closed == [(1000, "")]
    with pytest.raises(Gone):
        await b.describe(key(), conn.connection_id)


async def test_a_stopping_replica_closes_going_away_and_unregisters(replicas):
    a, b = replicas
    conns = [StandInConnection(a) for _ in range(5)]
    for conn in conns:
        await a.add(conn)

    await a.stop()

    assert all(c.closed == [(1001, "going away")] for c in conns)
    for conn in conns:
        assert not await b._redis.exists(ws_keys.connection(conn.connection_id))
        with pytest.raises(Gone):
            await b.send(key(), conn.connection_id, b"anyone?")


async def test_a_send_to_a_replica_that_died_is_gone_and_cleans_the_registry(replicas):
    a, b = replicas
    conn = StandInConnection(a)
    await a.add(conn)
    # the replica dies without a word: its listener ends, its registry entry stays
    for task in a._tasks:
        task.cancel()
    await asyncio.gather(*a._tasks, return_exceptions=True)
    assert await wait_for(lambda: _unsubscribed(a), 5.0)

    with pytest.raises(Gone):
        await b.send(key(), conn.connection_id, b"x")

    assert not await b._redis.exists(ws_keys.connection(conn.connection_id))
    assert await b._redis.exists(ws_keys.gone(conn.connection_id))
    a._local.clear()  # what died with it


async def _unsubscribed(hub: ConnectionHub) -> bool:
    return not await _subscribed(hub)

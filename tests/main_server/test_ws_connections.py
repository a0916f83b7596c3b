"""ConnectionHub on fakeredis: the registry, who may reach a connection (404 alike for unknown
and foreign ids, 403 without invoke, 410 for the caller's own ended one), delivery in order
through another hub (replica), a dead replica, a slow socket, and stopping."""

from __future__ import annotations

import asyncio
import re

import fakeredis
import pytest

from hotpool.main_server.ws_hub import ConnectionHub
from hotpool.main_server.ws_management import token_principal
from hotpool.shared import ws_keys
from hotpool.shared.errors import Forbidden, Gone, NotFound
from hotpool.shared.settings import Settings
from tests.main_server.ws_stand_ins import StandInConnection, key
from tests.stack import wait_for

pytestmark = pytest.mark.unit

SETTINGS = Settings.from_env({})


@pytest.fixture
async def hubs():
    """Factory of started hubs (replicas) on one fakeredis server, stopped after the test."""
    server = fakeredis.FakeServer()
    made: list[ConnectionHub] = []

    async def make(replica_id: str) -> ConnectionHub:
        hub = ConnectionHub(SETTINGS, fakeredis.FakeAsyncRedis(server=server), replica_id)
        await hub.start()
        made.append(hub)
        # the listener is live once the replica's channel has its subscriber
        assert await wait_for(lambda: _subscribed(hub), 5.0)
        return hub

    yield make
    for hub in made:
        await hub.stop()
        await hub._redis.aclose()


async def _subscribed(hub: ConnectionHub) -> bool:
    return bool((await hub._redis.pubsub_numsub(hub.channel))[0][1])


async def test_a_registered_connection_is_described_from_its_registry_entry(hubs):
    hub = await hubs("a")
    conn = StandInConnection(hub, connected_at=1_700_000_000.25, last_active_at=1_700_000_060.5)
    await hub.add(conn)

    entry = await hub._redis.hgetall(ws_keys.connection(conn.connection_id))
    assert entry[b"replica"] == b"a" and entry[b"function"] == b"chat"
    ttl = await hub._redis.ttl(ws_keys.connection(conn.connection_id))
    assert SETTINGS.ws_max_lifetime_s < ttl <= ws_keys.registry_ttl_s(SETTINGS)
    other = await hubs("b")
    for replica in (hub, other):
        assert await replica.describe(key(), conn.connection_id) == {
            "connectedAt": "2023-11-14T22:13:20.250Z",
            "lastActiveAt": "2023-11-14T22:14:20.500Z",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "stand-in/1.0"},
        }


async def test_utf8_is_sent_as_text_and_anything_else_as_binary(hubs):
    hub = await hubs("a")
    conn = StandInConnection(hub)
    await hub.add(conn)

    await hub.send(key(), conn.connection_id, "héllo".encode())
    await hub.send(key(), conn.connection_id, b"\xff\x00")

    assert conn.received == ["héllo", b"\xff\x00"]


async def test_unknown_and_foreign_ids_get_the_same_404_word_for_word(hubs):
    hub = await hubs("a")
    conn = StandInConnection(hub, namespace="acme", function="acme.chat")
    await hub.add(conn)
    other_tenant = key(("globex",), "admin")

    with pytest.raises(NotFound) as foreign:
        await hub.send(other_tenant, conn.connection_id, b"x")
    with pytest.raises(NotFound) as unknown:
        await hub.send(other_tenant, "nosuchid", b"x")

    assert foreign.value.to_dict() == unknown.value.to_dict()
    assert conn.received == []


async def test_a_key_without_invoke_in_the_namespace_is_forbidden(hubs):
    hub = await hubs("a")
    conn = StandInConnection(hub)
    await hub.add(conn)

    with pytest.raises(Forbidden):
        await hub.send(key(scopes="read"), conn.connection_id, b"x")
    with pytest.raises(Forbidden):
        await hub.close(key(scopes="read,deploy"), conn.connection_id)
    assert conn.received == [] and conn.closed == []


async def test_a_function_token_reaches_only_its_own_function_connections(hubs):
    hub = await hubs("a")
    mine = StandInConnection(hub, namespace="acme", function="acme.chat")
    theirs = StandInConnection(hub, namespace="acme", function="acme.other")
    for conn in (mine, theirs):
        await hub.add(conn)
    token = token_principal("acme.chat")

    await hub.send(token, mine.connection_id, b"hi")
    with pytest.raises(NotFound):
        await hub.send(token, theirs.connection_id, b"hi")
    with pytest.raises(NotFound):
        await hub.describe(token, theirs.connection_id)

    assert mine.received == ["hi"] and theirs.received == []


async def test_an_ended_connection_is_gone_to_its_tenant_and_unknown_to_others(hubs):
    hub, other = await hubs("a"), await hubs("b")
    conn = StandInConnection(hub, namespace="acme", function="acme.chat")
    await hub.add(conn)
    await hub.close(key(("acme",)), conn.connection_id)
    assert conn.closed == [(1000, "")]

    for replica in (hub, other):
        with pytest.raises(Gone):
            await replica.send(key(("acme",)), conn.connection_id, b"x")
        with pytest.raises(NotFound):
            await replica.describe(key(("globex",)), conn.connection_id)
    assert not await hub._redis.exists(ws_keys.connection(conn.connection_id))


async def test_sends_through_another_replica_arrive_in_order(hubs):
    a, b = await hubs("a"), await hubs("b")
    conn = StandInConnection(a)
    await a.add(conn)

    for n in range(100):
        await b.send(key(), conn.connection_id, str(n).encode())

    assert await wait_for(lambda: _count(conn, 100), 5.0)
    assert conn.received == [str(n) for n in range(100)]
    assert b.counters["ws_forwarded"] == 100


async def _count(conn: StandInConnection, n: int) -> bool:
    return len(conn.received) >= n


async def test_a_close_through_another_replica_closes_after_the_sends_before_it(hubs):
    a, b = await hubs("a"), await hubs("b")
    conn = StandInConnection(a)
    await a.add(conn)

    await b.send(key(), conn.connection_id, b"last words")
    await b.close(key(), conn.connection_id)

    await asyncio.wait_for(conn.ended.wait(), 5.0)
    assert conn.received == ["last words"] and conn.closed == [(1000, "")]
    assert a.local() == []


async def test_a_connection_of_a_replica_that_died_is_gone_and_unregistered(hubs):
    b = await hubs("b")
    # what a replica that died without a word leaves: its entry, and nobody on its channel
    dead = {"replica": "dead", "namespace": "default", "function": "chat"}
    fields = dict.fromkeys(("connected_at", "last_active_at"), "1.0")
    await b._redis.hset(ws_keys.connection("orphan"), mapping=dead | fields)

    with pytest.raises(Gone):
        await b.send(key(), "orphan", b"x")

    assert not await b._redis.exists(ws_keys.connection("orphan"))
    with pytest.raises(Gone):  # the tombstone answers from now on
        await b.describe(key(), "orphan")
    assert b.counters["ws_replica_gone"] == 1


async def test_a_slow_socket_does_not_hold_up_another_connections_messages(hubs):
    a, b = await hubs("a"), await hubs("b")
    slow = StandInConnection(a, gate=asyncio.Event())
    fast = StandInConnection(a)
    for conn in (slow, fast):
        await a.add(conn)

    for n in range(3):
        await b.send(key(), slow.connection_id, f"s{n}".encode())
        await b.send(key(), fast.connection_id, f"f{n}".encode())

    assert await wait_for(lambda: _count(fast, 3), 5.0)
    assert fast.received == ["f0", "f1", "f2"] and slow.received == []
    slow.gate.set()
    assert await wait_for(lambda: _count(slow, 3), 5.0)
    assert slow.received == ["s0", "s1", "s2"]


async def test_a_socket_too_slow_for_its_queue_is_closed(hubs):
    a, b = await hubs("a"), await hubs("b")
    slow = StandInConnection(a, gate=asyncio.Event())
    await a.add(slow)
    chunk = b"x" * SETTINGS.ws_max_message_bytes

    with pytest.raises(Gone):  # past the 1 MiB a connection may have queued, it is closed
        for _ in range(100):
            await b.send(key(), slow.connection_id, chunk)
            await asyncio.sleep(0.01)  # the other replica's listener takes it in

    assert await wait_for(lambda: _closed(slow), 5.0)
    assert slow.closed[0][0] == 1008 and re.search("too slowly", slow.closed[0][1])
    assert a.counters["ws_outbox_overflows"] == 1


async def _closed(conn: StandInConnection) -> bool:
    return bool(conn.closed)


async def test_stopping_a_replica_closes_its_sockets_going_away_and_unregisters_them(hubs):
    a, b = await hubs("a"), await hubs("b")
    conns = [StandInConnection(a) for _ in range(3)]
    for conn in conns:
        await a.add(conn)

    await a.stop()

    assert [c.closed for c in conns] == [[(1001, "going away")]] * 3
    for conn in conns:
        assert not await a._redis.exists(ws_keys.connection(conn.connection_id))
        with pytest.raises(Gone):
            await b.send(key(), conn.connection_id, b"x")


async def test_activity_times_reach_the_registry(hubs):
    a = await hubs("a")
    conn = StandInConnection(a, last_active_at=100.0)
    await a.add(conn)
    conn.last_active_at = 200.0

    await a._sync()

    stored = await a._redis.hget(ws_keys.connection(conn.connection_id), "last_active_at")
    assert float(stored) == 200.0

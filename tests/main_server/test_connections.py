"""The connection guard's decisions, over fake transports: the cap, who makes room, the
header deadline, and that aiohttp's protocol sees every event of an admitted connection."""

from __future__ import annotations

import asyncio

import pytest

from hotpool.main_server.connections import ConnectionGuard

pytestmark = pytest.mark.unit


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(f"data {data!r}")

    def connection_lost(self, exc) -> None:
        self.events.append("lost")


class Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def connect(guard: ConnectionGuard):
    conn = guard()
    transport = Transport()
    conn.connection_made(transport)
    return conn, transport


async def test_at_the_cap_the_oldest_connection_without_a_request_makes_room():
    guard = ConnectionGuard(Inner, max_connections=2, header_timeout_s=60)
    busy, busy_t = connect(guard)
    busy.data_received(b"GET / HTTP/1.1\r\n\r\n")
    _, idle_t = connect(guard)

    newest, newest_t = connect(guard)

    assert idle_t.aborted and not busy_t.aborted and not newest_t.aborted
    assert (guard.evicted, guard.open_connections) == (1, 2)
    assert newest._inner.events == ["made"]


async def test_when_every_connection_is_serving_a_new_one_is_refused():
    guard = ConnectionGuard(Inner, max_connections=1, header_timeout_s=60)
    first, first_t = connect(guard)
    first.data_received(b"GET / HTTP/1.1\r\nHost: x\r")
    for byte in b"\n\r\n":  # the head's end split across reads, a byte at a time, counts
        first.data_received(bytes([byte]))

    refused, refused_t = connect(guard)
    refused.connection_lost(None)

    assert refused_t.aborted and not first_t.aborted
    assert guard.refused == 1
    assert refused._inner.events == []  # aiohttp never heard of it


async def test_a_head_not_arrived_in_time_closes_the_connection():
    guard = ConnectionGuard(Inner, max_connections=10, header_timeout_s=0.05)
    slow, slow_t = connect(guard)
    slow.data_received(b"GET / HTTP/1.1\r\nX: ")
    quick, quick_t = connect(guard)
    quick.data_received(b"GET / HTTP/1.1\r\n\r\n")

    await asyncio.sleep(0.2)
    slow.connection_lost(None)  # what the loop does after the abort

    assert slow_t.aborted and not quick_t.aborted
    assert guard.timed_out == 1
    assert slow._inner.events == ["made", "data b'GET / HTTP/1.1\\r\\nX: '", "lost"]
    assert guard.open_connections == 1

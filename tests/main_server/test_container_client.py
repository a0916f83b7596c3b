"""ContainerClient, the hot path's HTTP/1.1 client, against scripted peers and the real bootstrap.

Every test runs on the standard event loop and on uvloop, the loop Main runs on (uvloop's
transports are not ``asyncio.Transport`` subclasses, which once broke this client). A peer is
a small asyncio server whose ``script`` answers each request it reads, well or badly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotpool.main_server.container_client import (
    CallFailed,
    ConnectFailed,
    ContainerClient,
    max_body_bytes,
    max_head_bytes,
)
from tests.helpers import free_port
from tests.manager.bootstraps import (  # noqa: F401
    SECRET,
    SECRET_HEADER,
    init_body,
    start_bootstrap,
)
from tests.stack import wait_for

RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run, "uvloop": uvloop.run,
}  # fmt: skip


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a scenario to completion on a fresh loop of each kind."""
    return RUNNERS[request.param]


@dataclass
class Received:
    head: str
    body: bytes


Script = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


def answer(body: bytes = b"{}", status: int = 200, *, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def echo(request: Received, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(request.body))


async def read_request(reader: asyncio.StreamReader) -> Received | None:
    """The next request on a connection, or None once the client has hung up."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next(
            int(line.split(":", 1)[1])
            for line in head.split("\r\n")
            if line.lower().startswith("content-length:")
        )
        return Received(head, await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class Peer:
    """A scripted HTTP server on 127.0.0.1 that counts its connections and who ended them."""

    def __init__(self, script: Script = echo) -> None:
        self.script = script
        self.received: list[Received] = []
        self.accepted = 0
        self.client_hung_up = 0  # connections the client closed while the peer awaited a request
        self.address = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        self.accepted += 1
        try:
            while not writer.is_closing():
                request = await read_request(reader)
                if request is None:
                    self.client_hung_up += 1
                    return
                self.received.append(request)
                await self.script(request, writer)
        finally:
            writer.close()


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether ``predicate`` holds within ``timeout_s``, letting the loop run meanwhile."""

    async def holds() -> bool:
        return predicate()

    return await wait_for(holds, timeout_s)


async def post(client: ContainerClient, peer: Peer, body: bytes, timeout_s: float = 5.0):
    return await client.post(peer.address, "/invoke", body, {}, timeout_s)


# --- keep-alive ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_sequential_calls_share_one_connection(run):
    async def scenario() -> None:
        async with Peer() as peer:
            client = ContainerClient()
            for n in range(20):
                headers = {"X-Hotpool-Request-Id": f"r{n}"}
                got = await client.post(peer.address, "/invoke", b"%d" % n, headers, 5.0)
                assert got == (200, b"%d" % n)
            assert (client.opened, peer.accepted) == (1, 1)
            head = peer.received[0].head.split("\r\n")
            assert head[0] == "POST /invoke HTTP/1.1"
            sent = {f"Host: {peer.address}", "Content-Length: 1", "X-Hotpool-Request-Id: r0"}
            assert sent <= set(head)
            await client.close()

    run(scenario())


@pytest.mark.unit
def test_concurrent_calls_each_take_a_connection_then_all_are_reused(run):
    async def scenario() -> None:
        three_in = asyncio.Event()

        async def after_three(request: Received, writer: asyncio.StreamWriter) -> None:
            if len(peer.received) == 3:
                three_in.set()
            await three_in.wait()  # all three are in flight at once
            writer.write(answer(request.body))

        async with Peer(after_three) as peer:
            client = ContainerClient()
            got = await asyncio.gather(*(post(client, peer, b"%d" % n) for n in range(3)))
            assert got == [(200, b"0"), (200, b"1"), (200, b"2")]
            for _ in range(6):
                assert await post(client, peer, b"again") == (200, b"again")
            assert (client.opened, peer.accepted) == (3, 3)

    run(scenario())


@pytest.mark.unit
def test_without_keepalive_each_call_opens_a_connection_that_main_closes(run):
    async def scenario() -> None:
        async with Peer() as peer:
            client = ContainerClient(keepalive=False)
            for n in range(5):
                assert await post(client, peer, b"%d" % n) == (200, b"%d" % n)
            assert (client.opened, peer.accepted) == (5, 5)
            # Main hung up first each time: the TIME_WAIT sockets are its own
            assert await eventually(lambda: peer.client_hung_up == 5)

    run(scenario())


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_refused_connection_is_connect_failed(run):
    async def scenario() -> None:
        client = ContainerClient()
        for address in (f"127.0.0.1:{free_port()}", "127.0.0.1:not-a-port", "no-port"):
            with pytest.raises(ConnectFailed):
                await client.post(address, "/invoke", b"{}", {}, 5.0)
        assert client.opened == 0

    run(scenario())


def sends(raw: bytes, *, then: str = "") -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """Write ``raw``, then close the connection, reset it, or (by default) leave it open."""

    async def misbehave(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if then == "close":
            writer.close()
        elif then == "reset":
            writer.transport.abort()

    return misbehave


HALF = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
BROKEN = {
    "closed mid-head": sends(b"HTTP/1.1 200 OK\r\nContent-Le", then="close"),
    "closed mid-body": sends(HALF, then="close"),
    "reset mid-body": sends(HALF, then="reset"),
    "closed before answering": sends(b"", then="close"),
    "not HTTP": sends(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "no status code": sends(b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n"),
    "chunked, no length": sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok"),
    "length not a number": sends(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"),
    "negative length": sends(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    "length over the limit": sends(
        f"HTTP/1.1 200 OK\r\nContent-Length: {max_body_bytes + 1}\r\n\r\n".encode()
    ),
    "more bytes than the length": sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokay"),
    "endless head": sends(b"HTTP/1.1 200 OK\r\nX: " + b"y" * (max_head_bytes + 1)),
}


@pytest.mark.unit
@pytest.mark.parametrize("misbehave", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_is_call_failed_and_its_connection_is_dropped(run, misbehave):
    async def scenario() -> None:
        async def script(request: Received, writer: asyncio.StreamWriter) -> None:
            if request.body == b"break":
                await misbehave(writer)
                await asyncio.Event().wait()  # whatever it does next, Main must not wait for it
            writer.write(answer(request.body))

        async with Peer(script) as peer:
            client = ContainerClient()
            with pytest.raises(CallFailed):
                await post(client, peer, b"break")
            assert await post(client, peer, b"fine") == (200, b"fine")
            assert (client.opened, peer.accepted) == (2, 2)

    run(scenario())


async def time_out(client: ContainerClient, peer: Peer) -> None:
    await post(client, peer, b"slow", timeout_s=0.2)


async def cancel(client: ContainerClient, peer: Peer) -> None:
    call = asyncio.create_task(post(client, peer, b"slow"))
    assert await eventually(lambda: len(peer.received) == 1)
    call.cancel()
    await call


ABANDONED = {"timed out": (time_out, TimeoutError), "cancelled": (cancel, asyncio.CancelledError)}


@pytest.mark.unit
@pytest.mark.parametrize(("abandon", "raised"), ABANDONED.values(), ids=ABANDONED.keys())
def test_an_abandoned_call_aborts_its_connection(run, abandon, raised):
    async def scenario() -> None:
        async def slow(request: Received, writer: asyncio.StreamWriter) -> None:
            if request.body != b"slow":  # that one is never answered
                writer.write(answer(request.body))

        async with Peer(slow) as peer:
            client = ContainerClient()
            with pytest.raises(raised):
                await abandon(client, peer)
            # dropped at once: an answer coming late must find nobody to misdeliver it to
            assert await eventually(lambda: peer.client_hung_up == 1)
            assert await post(client, peer, b"fast") == (200, b"fast")
            assert (client.opened, peer.accepted) == (2, 2)

    run(scenario())


# --- connections the peer or Main ends ----------------------------------------------------------


ENDING = {
    "Connection: close": answer(b"x", extra="Connection: close\r\n"),
    "HTTP/1.0": answer(b"x").replace(b"HTTP/1.1", b"HTTP/1.0", 1),
}


@pytest.mark.unit
@pytest.mark.parametrize("ending", ENDING.values(), ids=ENDING.keys())
def test_an_answer_that_ends_the_connection_is_heeded(run, ending):
    async def scenario() -> None:
        async def closing(request: Received, writer: asyncio.StreamWriter) -> None:
            writer.write(ending)

        async with Peer(closing) as peer:
            client = ContainerClient()
            for _ in range(3):
                assert await post(client, peer, b"x") == (200, b"x")
            assert (client.opened, peer.accepted) == (3, 3)
            # the peer left each connection open: Main closed it
            assert await eventually(lambda: peer.client_hung_up == 3)

    run(scenario())


async def then_close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def then_chatter(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(0.02)
    writer.write(b"HTTP/1.1 200 OK\r\n")  # an answer to nothing


@pytest.mark.unit
@pytest.mark.parametrize("after", [then_close, then_chatter], ids=["closes", "chatters"])
def test_an_idle_connection_the_peer_spoilt_is_not_reused(run, after):
    async def scenario() -> None:
        async def answer_then(request: Received, writer: asyncio.StreamWriter) -> None:
            writer.write(answer(request.body))
            await writer.drain()
            await after(writer)

        async with Peer(answer_then) as peer:
            client = ContainerClient()
            assert await post(client, peer, b"one") == (200, b"one")
            await asyncio.sleep(0.1)  # Main's loop reads the FIN or the bytes while it idles
            assert await post(client, peer, b"two") == (200, b"two")
            assert (client.opened, peer.accepted) == (2, 2)

    run(scenario())


@pytest.mark.unit
def test_a_connection_idle_past_the_idle_timeout_is_replaced(run):
    async def scenario() -> None:
        async with Peer() as peer:
            client = ContainerClient(idle_timeout_s=0.0)
            for n in range(3):
                assert await post(client, peer, b"%d" % n) == (200, b"%d" % n)
            assert client.opened == 3
            assert await eventually(lambda: peer.client_hung_up == 2)

    run(scenario())


@pytest.mark.unit
def test_forget_and_close_drop_idle_connections(run):
    async def scenario() -> None:
        async with Peer() as gone, Peer() as kept:
            client = ContainerClient()
            for peer in (gone, kept, gone, kept):
                await post(client, peer, b"x")
            client.forget(gone.address)
            assert await eventually(lambda: gone.client_hung_up == 1)
            await post(client, kept, b"x")
            assert client.opened == 2  # the other container's connection is still kept
            await post(client, gone, b"x")
            assert client.opened == 3
            await client.close()
            assert await eventually(lambda: (gone.client_hung_up, kept.client_hung_up) == (2, 1))

    run(scenario())


@pytest.mark.unit
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from([200, 404, 500, 503]),
    body=st.binary(max_size=3000),
    cuts=st.lists(st.integers(1, 3100), max_size=6),
)
def test_an_answer_in_pieces_is_read_whole(run, status, body, cuts):
    raw = answer(body, status, extra="Content-Type: application/json\r\n")
    points = sorted({0, len(raw), *(c for c in cuts if c < len(raw))})

    async def scenario() -> None:
        async def in_pieces(request: Received, writer: asyncio.StreamWriter) -> None:
            for start, end in itertools.pairwise(points):
                writer.write(raw[start:end])
                await writer.drain()
                await asyncio.sleep(0.001)

        async with Peer(in_pieces) as peer:
            client = ContainerClient()
            for _ in range(2):
                assert await post(client, peer, b"{}") == (status, body)
            assert client.opened == 1

    run(scenario())


# --- the real bootstrap -------------------------------------------------------------------------


def time_wait_sockets(port: int) -> tuple[int, int]:
    """TIME_WAIT sockets of IPv4 connections to ``port``: (client side, server side)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("no /proc/net/tcp to read socket states from")
    client = server = 0
    for line in table.read_text().splitlines()[1:]:
        _, local, remote, state, *_ = line.split()
        if state == "06":  # TIME_WAIT
            client += int(remote.rpartition(":")[2], 16) == port
            server += int(local.rpartition(":")[2], 16) == port
    return client, server


# what Main sends every container: the secret its bootstrap was started with
AUTH = {SECRET_HEADER: SECRET}


@pytest.fixture
def bootstrap_port(start_bootstrap) -> int:  # noqa: F811 (the factory imported above)
    """The port of a running bootstrap subprocess, not yet initialised."""
    return start_bootstrap().port


@pytest.mark.integration
def test_the_bootstrap_serves_many_calls_on_one_connection(run, bootstrap_port):
    address = f"127.0.0.1:{bootstrap_port}"

    async def scenario() -> None:
        client = ContainerClient()
        status, _ = await client.post(address, "/init", orjson.dumps(init_body()), AUTH, 10.0)
        assert status == 200
        for n in range(50):
            headers = {"X-Hotpool-Request-Id": f"r{n}", **AUTH}
            status, raw = await client.post(address, "/invoke", b'{"n": %d}' % n, headers, 10.0)
            assert (status, orjson.loads(raw)["result"]) == (200, {"n": n})
        assert client.opened == 1
        await client.close()

    run(scenario())


@pytest.mark.integration
def test_without_keepalive_the_time_wait_sockets_are_mains(run, bootstrap_port):
    address = f"127.0.0.1:{bootstrap_port}"

    async def scenario() -> None:
        client = ContainerClient(keepalive=False)
        status, _ = await client.post(address, "/init", orjson.dumps(init_body()), AUTH, 10.0)
        assert status == 200
        for n in range(5):
            status, raw = await client.post(address, "/invoke", b'{"n": %d}' % n, AUTH, 10.0)
            assert (status, orjson.loads(raw)["result"]) == (200, {"n": n})
        assert client.opened == 6

        # Main hangs up first, so the sockets in TIME_WAIT are on its side, none the container's
        # (an earlier connection to a reused port may linger too: at least six)
        def settled() -> bool:
            on_main, on_container = time_wait_sockets(bootstrap_port)
            return on_main >= 6 and on_container == 0

        assert await eventually(settled), time_wait_sockets(bootstrap_port)

    run(scenario())

"""The streamed answer's frames (main_server.frames) and ContainerClient's streaming side,
against scripted peers speaking DESIGN15 §A: chunked transfer, one frame per chunk.

The decoder is fed every split of an answer (hypothesis); the client is checked for what a
stream does to its connection: reused after the terminator, dropped when abandoned, EOF sent
on ``half_close``, and reading paused while more than ``stream_buffer_bytes`` wait unread.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server.container_client import ContainerClient
from hotpool.main_server.frames import ChunkDecoder, max_frame_bytes
from hotpool.main_server.ports import CallFailed
from tests.main_server.test_container_client import RUNNERS, Peer, Received, answer, eventually

pytestmark = pytest.mark.unit


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a scenario on a fresh loop of each kind (Main runs on uvloop)."""
    return RUNNERS[request.param]


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-hotpool-stream\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)
SUMMARY = b"E" + orjson.dumps({"status": "success", "duration_ms": 1.0})


def chunk(frame: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(frame), frame)


def body(*frames: bytes) -> bytes:
    return b"".join(map(chunk, frames)) + b"0\r\n\r\n"


FRAMES = [
    b'H{"statusCode": 201}',
    b"dpart one ",
    b"Dand its end\n",
    b"D" + bytes(range(256)),
    SUMMARY,
]


def decode(data: bytes, cuts: list[int]) -> tuple[list[bytes], ChunkDecoder]:
    decoder = ChunkDecoder()
    frames: list[bytes] = []
    edges = [0, *sorted(set(cuts)), len(data)]
    for start, stop in itertools.pairwise(edges):
        if stop > start:
            frames += decoder.feed(data[start:stop])
    return frames, decoder


@given(st.lists(st.integers(min_value=0, max_value=len(body(*FRAMES))), max_size=12))
def test_frames_come_out_whole_however_the_bytes_are_split(cuts):
    frames, decoder = decode(body(*FRAMES), cuts)
    assert frames == FRAMES
    assert decoder.done


def test_every_single_byte_split_gives_the_same_frames():
    data = body(*FRAMES)
    for cut in range(len(data) + 1):
        frames, decoder = decode(data, [cut])
        assert frames == FRAMES and decoder.done, cut
    frames, decoder = decode(data, list(range(len(data))))  # one byte at a time
    assert frames == FRAMES and decoder.done


def test_a_chunk_extension_is_ignored():
    decoder = ChunkDecoder()
    assert decoder.feed(b"3;name=value\r\nDab\r\n0\r\n\r\n") == [b"Dab"]
    assert decoder.done


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"%x\r\n" % (max_frame_bytes + 1), "frame of"),  # refused from its size line
        (chunk(b"Xunknown"), "unknown kind"),
        (b"zz\r\nD\r\n", "bad chunk size"),
        (b"-1\r\n", "bad chunk size"),
        (b"3\r\nDabcd\r\n", "not followed by CRLF"),
        (b"1" * 300, "too long"),
        (b"0\r\nX-Trailer: 1\r\n\r\n", "does not end"),
        (chunk(SUMMARY) + b"0\r\n\r\nmore", "does not end"),
    ],
)
def test_broken_or_hostile_framing_is_call_failed(data, complaint):
    with pytest.raises(CallFailed, match=complaint):
        ChunkDecoder().feed(data)


def test_bytes_after_the_end_are_call_failed():
    decoder = ChunkDecoder()
    decoder.feed(body(SUMMARY))
    with pytest.raises(CallFailed, match="after the end"):
        decoder.feed(b"1\r\n")


def test_the_largest_frame_passes():
    frame = b"d" + b"x" * (max_frame_bytes - 1)
    assert ChunkDecoder().feed(body(frame)) == [frame]


def test_a_summary_may_be_longer_than_an_item_frame_but_not_longer_than_its_bound():
    # the summary carries stdout and stderr, each up to the log limit, JSON-escaped
    summary = b"E" + b" " * (3 * max_frame_bytes)
    assert ChunkDecoder(4 * max_frame_bytes).feed(body(summary)) == [summary]
    with pytest.raises(CallFailed, match="at most"):
        ChunkDecoder(2 * max_frame_bytes).feed(body(summary))


def test_only_the_summary_may_be_longer_than_an_item_frame():
    part = b"d" + b"x" * max_frame_bytes
    decoder = ChunkDecoder(4 * max_frame_bytes)
    # refused at its kind byte, before the rest of it arrives
    with pytest.raises(CallFailed, match="at most"):
        decoder.feed(f"{len(part):x}\r\n".encode() + part[:1])


# --- ContainerClient ----------------------------------------------------------------------------


async def read_all(stream) -> list[bytes]:
    frames = []
    while (frame := await stream.frame()) is not None:
        frames.append(frame)
    return frames


def test_a_chunked_answer_is_a_stream_and_its_connection_serves_the_next_call(run):
    async def streams_then_echoes(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.body == b"stream":
            writer.write(STREAM_HEAD + body(b"Done", b"Dtwo", SUMMARY))
        else:
            writer.write(answer(request.body))

    async def scenario() -> None:
        async with Peer(streams_then_echoes) as peer:
            client = ContainerClient()
            status, stream = await client.call(peer.address, "/invoke", b"stream", {}, 5.0)
            assert status == 200 and not isinstance(stream, bytes)
            assert await read_all(stream) == [b"Done", b"Dtwo", SUMMARY]
            assert await client.call(peer.address, "/invoke", b"plain", {}, 5.0) == (200, b"plain")
            assert (client.opened, peer.accepted) == (1, 1)
            # post() is for answers with a length: a stream there is a broken call
            with pytest.raises(CallFailed, match="streamed"):
                await client.post(peer.address, "/invoke", b"stream", {}, 5.0)

    run(scenario())


def test_an_abandoned_stream_drops_its_connection(run):
    async def never_ends(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + chunk(b"Done"))

    async def scenario() -> None:
        async with Peer(never_ends) as peer:
            client = ContainerClient()
            _, stream = await client.call(peer.address, "/invoke", b"{}", {}, 5.0)
            assert await stream.frame() == b"Done"
            stream.close()
            await client.call(peer.address, "/invoke", b"{}", {}, 5.0)
            assert client.opened == 2
            assert await eventually(lambda: peer.client_hung_up == 1)

    run(scenario())


def test_a_stream_past_its_deadline_raises_timeout_and_drops_the_connection(run):
    async def stalls(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD + chunk(b"Done"))

    async def scenario() -> None:
        async with Peer(stalls) as peer:
            client = ContainerClient()
            _, stream = await client.call(peer.address, "/invoke", b"{}", {}, 0.3)
            assert await stream.frame() == b"Done"
            with pytest.raises(TimeoutError):
                await stream.frame()
            assert await eventually(lambda: peer.client_hung_up == 1)

    run(scenario())


def test_half_close_reaches_the_container_as_eof_and_the_summary_still_arrives(run):
    async def scenario() -> None:
        saw_eof = asyncio.Event()

        async def streams_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(STREAM_HEAD + chunk(b"Dfirst"))
            assert await reader.read() == b""  # EOF: Main half-closed
            saw_eof.set()
            writer.write(chunk(b'E{"status": "success", "aborted": true}') + b"0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(streams_until_eof, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = ContainerClient()
        _, stream = await client.call(address, "/invoke", b"{}", {}, 5.0)
        assert await stream.frame() == b"Dfirst"
        stream.half_close()
        frames = await read_all(stream)
        assert saw_eof.is_set()
        assert orjson.loads(frames[-1][1:])["aborted"] is True
        server.close()

    run(scenario())


def test_a_stream_nobody_reads_stops_the_socket_at_the_buffer_bound(run):
    """Back-pressure: past stream_buffer_bytes unread, Main stops reading, so the peer's
    writes back up in the kernel while Main holds no more than the bound (plus a read)."""
    frame = b"d" + b"x" * 65535
    total_frames = 400  # 25 MiB: far more than the socket buffers on both sides

    sent = 0

    async def floods(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(STREAM_HEAD)
        for _ in range(total_frames):
            writer.write(chunk(frame))
            await writer.drain()
            sent += 1
        writer.write(body(SUMMARY))
        await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_server(floods, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = ContainerClient(stream_buffer_bytes=256 * 1024)
        _, stream = await client.call(address, "/invoke", b"{}", {}, 30.0)
        await asyncio.sleep(0.5)  # the peer writes as fast as it may; nobody reads
        conn = stream._conn
        held = conn._held + conn._decoder.pending_bytes
        assert conn._paused
        assert sent < total_frames // 2  # the peer is held up, not buffered whole in Main
        assert held < 256 * 1024 + 512 * 1024  # the bound plus one read of the socket
        frames = await read_all(stream)  # and reading on takes everything, in order
        assert len(frames) == total_frames + 1 and frames[-1] == SUMMARY
        server.close()

    run(scenario())

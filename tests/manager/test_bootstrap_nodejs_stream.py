"""Streamed answers of the Node.js bootstrap: the Python runtime's stream contract
(test_bootstrap_stream.py) with generators, async generators and Node Readables."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from hotpool.manager.backend import ContainerBackend, ContainerSpec
from hotpool.manager.docker_backend import DockerBackend
from hotpool.manager.process_backend import ProcessBackend
from tests.manager.test_bootstrap import (
    SECRET_HEADER,
    Bootstrap,
    call,
    closed_by_server,
    init,
    invoke,
    make_zip,
)
from tests.manager.test_bootstrap_nodejs import FILES, init_body
from tests.manager.test_bootstrap_stream import (
    FRAME_BYTES,
    LOCAL,
    FrameReader,
    items,
    run_stream,
    stream_request,
    summary,
    wait_for_mark,
)
from tests.services import RUNTIME_IMAGE_NODEJS
from tests.stack import require_docker

pytestmark = pytest.mark.integration


@pytest.fixture
def gens(start_node: Callable[[], Bootstrap]) -> Bootstrap:
    bootstrap = start_node()
    conn = bootstrap.connect()
    zipped = make_zip({"gens.js": FILES["gens.js"]})
    status, body = init(conn, init_body("gens.dispatch", code_zip_b64=zipped))
    assert status == 200, body
    conn.close()
    return bootstrap


def test_a_generators_items_arrive_as_one_frame_each_then_the_summary(gens):
    frames = run_stream(LOCAL, gens.port, "three")

    assert [kind for kind, _ in frames] == ["D", "D", "D", "E"]
    assert items(frames) == [b"one", "twö".encode(), b'{"n":3}\n']
    end = summary(frames)
    assert end["status"] == "success" and "error" not in end
    assert end["bytes"] == sum(len(item) for item in items(frames))
    assert end["first_byte_ms"] is not None and end["aborted"] is False
    assert end["stdout"].endswith("\tINFO\tmaking three\n")
    assert end["peak_memory_mb"] > 0


@pytest.mark.parametrize(
    ("mode", "kinds", "expected"),
    [
        ("empty", ["E"], []),
        ("big", ["d", "d", "d", "D", "E"], [bytes([7]) * 200 * 1024]),
        ("web", ["H", "D", "D", "E"], [b"<p>", b"hi</p>"]),
        ("async_three", ["D", "D", "D", "E"], [b"item 0", b"item 1", b"item 2"]),
        ("readable", ["D", "D", "E"], [b"r1", b"r2"]),
    ],
)
def test_every_kind_of_stream(gens, mode, kinds, expected):
    frames = run_stream(LOCAL, gens.port, mode)

    assert [kind for kind, _ in frames] == kinds
    assert items(frames) == expected
    assert summary(frames)["status"] == "success"
    if mode == "web":
        head = json.loads(frames[0][1])
        assert head == {"statusCode": 201, "headers": {"Content-Type": "text/html"}}


def test_an_error_after_two_items_ends_in_an_error_summary_and_the_connection_serves_on(gens):
    with socket.create_connection((LOCAL, gens.port), timeout=10) as sock:
        sock.sendall(stream_request("fails"))
        reader = FrameReader(sock)
        reader.head()
        frames = reader.frames()
        assert items(frames) == [b"a", b"b"]
        error = summary(frames)["error"]
        assert (error["type"], error["message"]) == ("RangeError", "broke after two")
        sock.sendall(stream_request("three"))
        reader.head()
        assert len(items(reader.frames())) == 3


def test_an_item_that_cannot_be_encoded_is_a_marshal_error(gens):
    frames = run_stream(LOCAL, gens.port, "unencodable")

    assert items(frames) == [b"fine"]
    assert summary(frames)["error"]["type"] == "Runtime.MarshalError"


@pytest.mark.parametrize(("mode", "expected"), [("slow_async", [b"first"]),
                                                ("slow_sync", [b"first", b"second"])])  # fmt: skip
def test_an_abort_closes_the_generator_and_the_container_serves_on(gens, tmp_path, mode, expected):
    marker = tmp_path / "marker"
    with socket.create_connection((LOCAL, gens.port), timeout=10) as sock:
        sock.sendall(stream_request(mode, path=str(marker)))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        first = reader.frame()
        wait_for_mark(marker, "waiting")
        sock.shutdown(socket.SHUT_WR)
        frames = [first, *reader.frames()]
        assert closed_by_server(sock)
    assert items(frames) == expected
    assert summary(frames)["aborted"] is True
    if mode == "slow_sync":  # closed at its next yield: its finally ran
        wait_for_mark(marker, "finally")
    conn = gens.connect()
    assert invoke(conn, {"mode": "plain"})[1]["result"] == {"ok": True}


def test_a_reader_that_stops_reading_stops_the_generator_and_the_container_stays_busy(
    gens, tmp_path
):
    counter = tmp_path / "count"
    probe = gens.connect()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FRAME_BYTES)
        sock.settimeout(10)
        sock.connect((LOCAL, gens.port))
        sock.sendall(stream_request("counted", path=str(counter)))
        time.sleep(1.0)  # reads nothing meanwhile
        produced_while_paused = int(counter.read_text())
        assert call(probe, "GET", "/healthz")[1]["busy"] is True
        assert invoke(probe, {"mode": "plain"})[1]["error"]["type"] == "Busy"
        reader = FrameReader(sock)
        reader.head()
        frames = reader.frames()
    # what the kernels buffer (Node cannot size its send buffer: autotuned), of 200
    assert produced_while_paused < 100
    assert len(items(frames)) == 200
    deadline = time.monotonic() + 5
    while call(probe, "GET", "/healthz")[1]["busy"]:
        assert time.monotonic() < deadline, "still busy after the stream ended"
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["forever", "async_forever"])
def test_a_stream_past_its_deadline_ends_in_a_timeout_summary(gens, mode):
    frames = run_stream(LOCAL, gens.port, mode, headers={"X-Hotpool-Deadline-Ms": "1000"})

    assert items(frames)[0] == b"tick"
    end = summary(frames)
    assert (end["status"], end["error"]["type"]) == ("error", "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in end["error"]["message"]


@pytest.fixture(params=["process", "docker"])
async def node_backend(request, tmp_path) -> AsyncIterator[ContainerBackend]:
    """A fresh backend of each kind that runs Node containers, closed after the test."""
    if request.param == "docker":
        await require_docker(RUNTIME_IMAGE_NODEJS)
        made: ContainerBackend = DockerBackend(
            manager_id=f"mgr-node-{uuid.uuid4().hex[:8]}", images={"nodejs": RUNTIME_IMAGE_NODEJS}
        )
    else:
        made = ProcessBackend(tmp_path / "c")
    try:
        yield made
    finally:
        await made.close()


def abort_at_once(host: str, port: int, secret: str) -> list[tuple[str, bytes]]:
    """A stream half-closed after its first frame: the frames up to E."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(stream_request("slow_async", secret))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        assert reader.frame() == ("D", b"first")
        sock.shutdown(socket.SHUT_WR)
        return reader.frames()


async def test_a_node_container_of_either_backend_streams_and_hears_an_abort(node_backend):
    container = await node_backend.start(ContainerSpec("nodejs", 128))
    body = init_body("gens.dispatch", code_zip_b64=make_zip({"gens.js": FILES["gens.js"]}))
    async with aiohttp.ClientSession(headers={SECRET_HEADER: container.secret}) as http:
        async with http.post(f"http://{container.address}/init", json=body) as resp:
            assert resp.status == 200, await resp.text()
    host, port = container.address.rsplit(":", 1)

    three = await asyncio.to_thread(run_stream, host, int(port), "three", container.secret)
    frames = await asyncio.to_thread(abort_at_once, host, int(port), container.secret)

    assert items(three) == [b"one", "twö".encode(), b'{"n":3}\n']
    # ended well before its 10 s sleep: the half-close went through the port mapping (the
    # generator's finally runs only if it was not yet awaiting its sleep: JavaScript cannot
    # cancel a pending await, as Python's runtime cancels it)
    assert summary(frames)["aborted"] is True


@pytest.fixture
def streamified(start_node: Callable[[], Bootstrap]) -> Bootstrap:
    bootstrap = start_node()
    conn = bootstrap.connect()
    zipped = make_zip({"streamified.mjs": FILES["streamified.mjs"]})
    status, body = init(conn, init_body("streamified.handler", code_zip_b64=zipped))
    assert status == 200, body
    conn.close()
    return bootstrap


@pytest.mark.parametrize(
    ("mode", "head", "expected"),
    [
        ("plain", None, b"Hello, world!"),
        ("web", {"statusCode": 201, "headers": {"X-Kind": "streamified"}}, b"Hello, world!"),
        ("type", {"statusCode": 200, "headers": {"Content-Type": "text/plain"}}, b"Hello, world!"),
        ("pipeline", None, b"one two req-s"),
    ],
)
def test_awslambda_streamify_response_streams_what_the_handler_writes(
    streamified, mode, head, expected
):
    frames = run_stream(LOCAL, streamified.port, mode, headers={"X-Hotpool-Request-Id": "req-s"})

    assert summary(frames)["status"] == "success"
    if head is None:
        assert frames[0][0] != "H"
    else:
        assert (frames[0][0], json.loads(frames[0][1])) == ("H", head)
    # what was written, in order (writes that wait in the stream together are one item)
    assert b"".join(items(frames)) == expected


def test_a_streamified_handler_that_throws_ends_in_an_error_summary(streamified):
    frames = run_stream(LOCAL, streamified.port, "fail")

    assert b"".join(items(frames)) == b"Hello, world!"
    error = summary(frames)["error"]
    assert (error["type"], error["message"]) == ("TypeError", "broke mid-stream")

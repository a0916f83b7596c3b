"""Streamed results, the runtime contract: each runtime's bootstrap, run as a real subprocess
and read frame by frame off a raw socket, sends a generator's items as they are produced
(python_app/gens.py and nodejs_app/gens.js are twins by mode), with back-pressure, abort and
the call's deadline, on both backends.

``provided`` is left out: Lambda's Runtime API streams only through its HTTP response
streaming mode, which the relay does not serve. Each language's own ways (asyncio's
cancellation, Node's Readables and ``awslambda.streamifyResponse``) are tested beside:
test_bootstrap_python.py, test_bootstrap_nodejs_stream.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hotpool.manager.backend import ContainerBackend, ContainerSpec
from hotpool.manager.docker_backend import DockerBackend
from hotpool.manager.process_backend import ProcessBackend
from tests.manager.bootstraps import (
    SECRET_HEADER,
    Bootstrap,
    call,
    closed_by_server,
    init,
    init_body,
    invoke,
)
from tests.manager.frames import (
    FRAME_BYTES,
    LOCAL,
    FrameReader,
    items,
    run_stream,
    stream_request,
    summary,
    wait_for_mark,
)
from tests.services import RUNTIME_IMAGE, RUNTIME_IMAGE_NODEJS
from tests.stack import require_docker

pytestmark = pytest.mark.integration

# an object item is JSON and a newline; each language's own encoder spaces it its own way
OBJECT_ITEM = {"python": b'{"n": 3}\n', "nodejs": b'{"n":3}\n'}
# what the generator printed, in each runtime's console format
MADE_THREE = {"python": r"making three\n", "nodejs": r"\S+\t\S+\tINFO\tmaking three\n"}
# each language's own exception
BROKE = {"python": "ValueError", "nodejs": "RangeError"}


@pytest.fixture
def gens(start_runtime) -> Bootstrap:
    """A bootstrap of the case's runtime initialised with the generators' dispatcher."""
    bootstrap = start_runtime()
    conn = bootstrap.connect()
    status, body = init(conn, init_body("gens.dispatch", bootstrap.runtime))
    assert status == 200, body
    conn.close()
    return bootstrap


def test_a_generators_items_arrive_as_one_frame_each_then_the_summary(gens):
    frames = run_stream(LOCAL, gens.port, "three")

    assert [kind for kind, _ in frames] == ["D", "D", "D", "E"]
    assert items(frames) == [b"one", "twö".encode(), OBJECT_ITEM[gens.runtime]]
    end = summary(frames)
    assert end["status"] == "success" and "error" not in end
    assert end["bytes"] == sum(len(item) for item in items(frames))
    assert end["first_byte_ms"] is not None and end["first_byte_ms"] <= end["duration_ms"]
    assert end["aborted"] is False
    assert re.fullmatch(MADE_THREE[gens.runtime], end["stdout"]), end["stdout"]
    assert end["peak_memory_mb"] > 0


def test_an_empty_generator_sends_only_the_summary(gens):
    frames = run_stream(LOCAL, gens.port, "empty")

    assert [kind for kind, _ in frames] == ["E"]
    end = summary(frames)
    assert (end["status"], end["bytes"], end["first_byte_ms"]) == ("success", 0, None)


def test_an_item_over_64_kib_is_split_into_parts(gens):
    frames = run_stream(LOCAL, gens.port, "big")

    assert [kind for kind, _ in frames] == ["d", "d", "d", "D", "E"]
    assert [len(payload) for _, payload in frames[:4]] == [FRAME_BYTES] * 3 + [8192]
    assert items(frames) == [bytes(range(256)) * 800]
    assert summary(frames)["bytes"] == 200 * 1024


def test_the_web_form_sends_its_head_first(gens):
    frames = run_stream(LOCAL, gens.port, "web")

    assert [kind for kind, _ in frames] == ["H", "D", "D", "E"]
    assert json.loads(frames[0][1]) == {"statusCode": 201, "headers": {"Content-Type": "text/html"}}
    assert items(frames) == [b"<p>", b"hi</p>"]


def test_an_async_generator_streams(gens):
    frames = run_stream(LOCAL, gens.port, "async_three")

    assert items(frames) == [b"item 0", b"item 1", b"item 2"]
    assert summary(frames)["status"] == "success"


def test_an_error_after_two_items_ends_in_an_error_summary_and_the_connection_serves_on(gens):
    with socket.create_connection((LOCAL, gens.port), timeout=10) as sock:
        sock.sendall(stream_request("fails"))
        reader = FrameReader(sock)
        assert reader.head()[1]["connection"] == "keep-alive"
        frames = reader.frames()

        assert items(frames) == [b"a", b"b"]
        end = summary(frames)
        assert end["status"] == "error"
        error = end["error"]
        assert (error["type"], error["message"]) == (BROKE[gens.runtime], "broke after two")
        assert "broke after two" in error["traceback"]
        # the same connection takes the next call
        sock.sendall(stream_request("three"))
        reader.head()
        assert len(items(reader.frames())) == 3


def test_an_item_that_cannot_be_encoded_is_a_marshal_error(gens):
    frames = run_stream(LOCAL, gens.port, "unencodable")

    assert items(frames) == [b"fine"]
    assert summary(frames)["error"]["type"] == "Runtime.MarshalError"


def abort_after_first_item(bootstrap: Bootstrap, mode: str, marker) -> list[tuple[str, bytes]]:
    """Start a stream, half-close once the generator works on its second item; the frames up
    to E. The server then closes."""
    with socket.create_connection((LOCAL, bootstrap.port), timeout=10) as sock:
        sock.sendall(stream_request(mode, path=str(marker)))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        first = reader.frame()
        assert first == ("D", b"first")
        wait_for_mark(marker, "waiting")
        sock.shutdown(socket.SHUT_WR)
        frames = [first, *reader.frames()]
        assert closed_by_server(sock)
    return frames


def test_an_abort_closes_a_sync_generator_at_its_next_yield(gens, tmp_path):
    marker = tmp_path / "marker"
    frames = abort_after_first_item(gens, "slow_sync", marker)

    # it worked on, yielded its second item, and was closed there: its finally ran
    wait_for_mark(marker, "finally")
    marks = {"python": ["waiting", "GeneratorExit", "finally"], "nodejs": ["waiting", "finally"]}
    assert marker.read_text().split() == marks[gens.runtime]
    assert items(frames) == [b"first", b"second"]
    assert summary(frames)["aborted"] is True


def test_after_an_abort_the_container_serves_a_new_connection(gens, tmp_path):
    frames = abort_after_first_item(gens, "slow_async", tmp_path / "marker")

    assert items(frames) == [b"first"]
    assert summary(frames)["aborted"] is True
    conn = gens.connect()
    status, body = invoke(conn, {"mode": "plain"})
    assert (status, body["status"], body["result"]) == (200, "success", {"ok": True})
    assert call(conn, "GET", "/healthz")[1]["busy"] is False


# items made while the reader paused, of 200: the bootstrap's send buffer and the reader's
# window; Python's runtime sizes its send buffer (512 KiB), Node's is autotuned
PAUSED_AT_MOST = {"python": 25, "nodejs": 100}


def test_a_reader_that_stops_reading_stops_the_generator_and_the_container_stays_busy(
    gens, tmp_path
):
    counter = tmp_path / "count"
    probe = gens.connect()
    with socket.socket() as sock:
        # a small receive window, as a paused reader's: what the kernels buffer stays small
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

    assert produced_while_paused < PAUSED_AT_MOST[gens.runtime]
    assert len(items(frames)) == 200
    assert summary(frames)["bytes"] == 200 * FRAME_BYTES
    deadline = time.monotonic() + 5
    while call(probe, "GET", "/healthz")[1]["busy"]:
        assert time.monotonic() < deadline, "still busy after the stream ended"
        time.sleep(0.01)


def test_the_next_call_finds_the_container_free_once_the_summary_arrived(gens):
    # as Main does: it releases the container when the E frame is in, and the next call may
    # come on another kept-alive connection at once
    with (
        socket.create_connection((LOCAL, gens.port), timeout=10) as streamed,
        socket.create_connection((LOCAL, gens.port), timeout=10) as other,
    ):
        reader, other_reader = FrameReader(streamed), FrameReader(other)
        for _ in range(100):
            streamed.sendall(stream_request("one"))
            reader.head()
            assert summary(reader.frames())["status"] == "success"
            other.sendall(stream_request("plain"))
            status, headers = other_reader.head()
            body = json.loads(other_reader._take(int(headers["content-length"])))
            assert (status, body.get("result")) == (200, {"ok": True}), body


@pytest.mark.parametrize("mode", ["forever", "async_forever"])
def test_a_stream_past_its_deadline_ends_in_a_timeout_summary(gens, mode):
    frames = run_stream(LOCAL, gens.port, mode, headers={"X-Hotpool-Deadline-Ms": "1000"})

    assert items(frames)[0] == b"tick"
    end = summary(frames)
    assert (end["status"], end["error"]["type"]) == ("error", "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in end["error"]["message"]
    assert end["aborted"] is False


def test_the_container_is_free_before_the_summary_is_sent(start_runtime):
    # once Main has read the summary it gives the container to the next call, which must not
    # find it busy; a summary of megabytes that its reader does not take shows the order
    bootstrap = start_runtime()
    conn = bootstrap.connect()
    body = init_body("gens.dispatch", bootstrap.runtime, log_limit_bytes=8_000_000)
    assert init(conn, body)[0] == 200
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FRAME_BYTES)
        sock.settimeout(10)
        sock.connect((LOCAL, bootstrap.port))
        sock.sendall(stream_request("chatty"))
        reader = FrameReader(sock)
        reader.head()
        assert reader.frame() == ("D", b"done")
        # the summary's send is stuck on this unread socket; the container is free all the same
        deadline = time.monotonic() + 5
        while call(conn, "GET", "/healthz")[1]["busy"]:
            assert time.monotonic() < deadline, "busy while only its summary was left to send"
            time.sleep(0.01)
        status, answer = invoke(conn, {"mode": "plain"})
        assert (status, answer["result"]) == (200, {"ok": True})
        end = summary(reader.frames())
    assert end["status"] == "success" and len(end["stdout"]) > 3_000_000


IMAGES = {"python": RUNTIME_IMAGE, "nodejs": RUNTIME_IMAGE_NODEJS}


@pytest.fixture(params=["process", "docker"])
async def runtime_backend(request, runtime, tmp_path) -> AsyncIterator[ContainerBackend]:
    """A fresh backend of each kind that runs the case's runtime, closed after the test."""
    if request.param == "docker":
        await require_docker(IMAGES[runtime])
        made: ContainerBackend = DockerBackend(
            manager_id=f"mgr-stream-{uuid.uuid4().hex[:8]}", images=IMAGES
        )
    else:
        made = ProcessBackend(tmp_path / "c")
    try:
        yield made
    finally:
        await made.close()


def abort_at_once(host: str, port: int, secret: str) -> list[tuple[str, bytes]]:
    """An async generator's stream half-closed after its first frame: the frames up to E."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(stream_request("slow_async", secret))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        assert reader.frame() == ("D", b"first")
        sock.shutdown(socket.SHUT_WR)
        return reader.frames()


async def test_a_container_of_either_backend_streams_and_hears_an_abort(runtime_backend, runtime):
    container = await runtime_backend.start(ContainerSpec(runtime, 128))
    body = init_body("gens.dispatch", runtime)
    async with aiohttp.ClientSession(headers={SECRET_HEADER: container.secret}) as http:
        async with http.post(f"http://{container.address}/init", json=body) as resp:
            assert resp.status == 200, await resp.text()
    host, port = container.address.rsplit(":", 1)

    three = await asyncio.to_thread(run_stream, host, int(port), "three", container.secret)
    frames = await asyncio.to_thread(abort_at_once, host, int(port), container.secret)

    assert items(three) == [b"one", "twö".encode(), OBJECT_ITEM[runtime]]
    # ended well before its 10 s sleep: the half-close went through the port mapping
    end = summary(frames)
    assert end["aborted"] is True
    if runtime == "python":  # cancelled in its await, its finally printed (Node cannot cancel)
        assert end["stdout"] == "closed\n"

"""Streamed results of the in-container bootstrap (DESIGN15 §A), run as a real subprocess and
read frame by frame off a raw socket: a generator's items arrive as they are produced, in
chunked frames H / d / D / E, with back-pressure, abort, and the call's deadline."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hotpool.manager.backend import ContainerBackend, ContainerSpec
from tests.manager.test_backend_contract import backend  # noqa: F401 (a fixture)
from tests.manager.test_bootstrap import (  # noqa: F401 (start_bootstrap: a fixture)
    SECRET,
    SECRET_HEADER,
    Bootstrap,
    call,
    closed_by_server,
    init,
    init_body,
    invoke,
    make_zip,
    start_bootstrap,
)

pytestmark = pytest.mark.integration

FRAME_BYTES = 64 * 1024
LOCAL = "127.0.0.1"
# one handler, its behaviour chosen by the event's "mode"; markers go to the event's "path"
GENS_SOURCE = textwrap.dedent(
    """
    import asyncio
    import time

    def dispatch(event, context):
        return globals()[event["mode"]](event)

    def plain(event):
        return {"ok": True}

    def three(event):
        print("making three")
        yield b"one"
        yield ""  # empty: skipped
        yield "tw\\u00f6"
        yield {"n": 3}

    def one(event):
        yield "1"

    def empty(event):
        yield from ()

    def big(event):
        yield bytes(range(256)) * 800  # 200 KiB

    def web(event):
        def body():
            yield "<p>"
            yield "hi</p>"
        return {"statusCode": 201, "headers": {"Content-Type": "text/html"}, "body": body()}

    def fails(event):
        yield "a"
        yield "b"
        raise ValueError("broke after two")

    def unencodable(event):
        yield "fine"
        yield {1, 2}

    async def async_three(event):
        for n in range(3):
            await asyncio.sleep(0)
            yield f"item {n}"

    def mark(event, text):
        if "path" not in event:
            return
        with open(event["path"], "a") as f:
            f.write(text + " ")

    def slow_sync(event):
        try:
            yield "first"
            mark(event, "waiting")
            time.sleep(0.3)
            yield "second"
            time.sleep(0.3)
            yield "third"
        except GeneratorExit:
            mark(event, "GeneratorExit")
            raise
        finally:
            mark(event, "finally")

    async def slow_async(event):
        try:
            yield "first"
            mark(event, "waiting")
            await asyncio.sleep(10)
            yield "second"
        except asyncio.CancelledError:
            mark(event, "CancelledError")
            raise
        finally:
            print("closed")
            mark(event, "finally")

    def counted(event):
        for n in range(200):
            with open(event["path"], "w") as f:
                f.write(str(n + 1))
            yield b"x" * 65536

    def forever(event):
        while True:
            yield "tick"
            time.sleep(0.05)

    async def async_forever(event):
        while True:
            yield "tick"
            await asyncio.sleep(10)

    def chatty(event):
        print("x" * 4_000_000)  # the summary carries it: megabytes
        yield "done"
    """
)


class FrameReader:
    """The chunked answer of one /invoke, read frame by frame off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(FRAME_BYTES)
        assert data, "connection closed mid-answer"
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def head(self) -> tuple[int, dict[str, str]]:
        """The status and the headers (names lower-cased)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        return int(status_line.split()[1]), headers

    def frame(self) -> tuple[str, bytes] | None:
        """The next frame as (kind, payload), or None at the terminating chunk."""
        size = int(self._line(), 16)
        if size == 0:
            assert self._take(2) == b"\r\n"
            return None
        data = self._take(size)
        assert self._take(2) == b"\r\n"
        return chr(data[0]), data[1:]

    def frames(self) -> list[tuple[str, bytes]]:
        """Every frame up to and including ``E``; checks the terminating chunk follows it."""
        frames: list[tuple[str, bytes]] = []
        while (frame := self.frame()) is not None:
            assert not frames or frames[-1][0] != "E", "a frame after E"
            frames.append(frame)
        assert frames and frames[-1][0] == "E"
        return frames


def stream_request(mode: str, secret: str = SECRET, **event: Any) -> bytes:
    headers = {"Content-Type": "application/json", SECRET_HEADER: secret}
    headers |= event.pop("headers", {})
    body = json.dumps({"mode": mode, **event}).encode()
    lines = ["POST /invoke HTTP/1.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def summary(frames: list[tuple[str, bytes]]) -> dict[str, Any]:
    kind, payload = frames[-1]
    assert kind == "E"
    return json.loads(payload)


def items(frames: list[tuple[str, bytes]]) -> list[bytes]:
    """The items: d parts joined up to each D."""
    found, part = [], b""
    for kind, payload in frames:
        if kind in "dD":
            part += payload
        if kind == "D":
            found.append(part)
            part = b""
    return found


@pytest.fixture
def gens(start_bootstrap: Callable[[], Bootstrap]) -> Bootstrap:  # noqa: F811
    """A bootstrap initialised with the generator handlers."""
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    status, body = init(
        conn, init_body("gens.dispatch", code_zip_b64=make_zip({"gens.py": GENS_SOURCE}))
    )
    assert status == 200, body
    conn.close()
    return bootstrap


def run_stream(
    host: str, port: int, mode: str, secret: str = SECRET, **event: Any
) -> list[tuple[str, bytes]]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(stream_request(mode, secret, **event))
        reader = FrameReader(sock)
        status, headers = reader.head()
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        assert headers["content-type"] == "application/x-hotpool-stream"
        return reader.frames()


def test_a_generators_items_arrive_as_one_frame_each_then_the_summary(gens):
    frames = run_stream(LOCAL, gens.port, "three")

    assert [kind for kind, _ in frames] == ["D", "D", "D", "E"]
    assert items(frames) == [b"one", "twö".encode(), b'{"n": 3}\n']
    end = summary(frames)
    assert end["status"] == "success" and "error" not in end
    assert end["bytes"] == sum(len(item) for item in items(frames))
    assert end["first_byte_ms"] is not None and end["first_byte_ms"] <= end["duration_ms"]
    assert end["aborted"] is False
    assert end["stdout"] == "making three\n"
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
    with socket.create_connection(("127.0.0.1", gens.port), timeout=10) as sock:
        sock.sendall(stream_request("fails"))
        reader = FrameReader(sock)
        assert reader.head()[1]["connection"] == "keep-alive"
        frames = reader.frames()

        assert items(frames) == [b"a", b"b"]
        end = summary(frames)
        assert end["status"] == "error"
        assert (end["error"]["type"], end["error"]["message"]) == ("ValueError", "broke after two")
        assert "broke after two" in end["error"]["traceback"]
        # the same connection takes the next call
        sock.sendall(stream_request("three"))
        reader.head()
        assert len(items(reader.frames())) == 3


def test_an_item_that_cannot_be_encoded_is_a_marshal_error(gens):
    frames = run_stream(LOCAL, gens.port, "unencodable")

    assert items(frames) == [b"fine"]
    assert summary(frames)["error"]["type"] == "Runtime.MarshalError"


def wait_for_mark(marker: Path, word: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while word not in (marker.read_text() if marker.exists() else ""):
        assert time.monotonic() < deadline, f"the generator never marked {word!r}"
        time.sleep(0.005)


def abort_after_first_item(bootstrap: Bootstrap, mode: str, marker: Path) -> tuple[list, float]:
    """Start a stream, half-close once the generator works on its second item; the frames up
    to E and the time from the half-close to the marker file showing ``finally``. The server
    then closes."""
    with socket.create_connection(("127.0.0.1", bootstrap.port), timeout=10) as sock:
        sock.sendall(stream_request(mode, path=str(marker)))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        first = reader.frame()
        assert first == ("D", b"first")
        wait_for_mark(marker, "waiting")
        sock.shutdown(socket.SHUT_WR)
        aborted_at = time.monotonic()
        wait_for_mark(marker, "finally")
        closed_after_s = time.monotonic() - aborted_at
        frames = [first, *reader.frames()]
        assert closed_by_server(sock)
    return frames, closed_after_s


def test_an_abort_cancels_an_async_generator_waiting_for_its_next_item_at_once(gens, tmp_path):
    marker = tmp_path / "marker"
    frames, closed_after_s = abort_after_first_item(gens, "slow_async", marker)

    # it was sleeping for 10 s: cancelled in its await, then closed
    assert closed_after_s < 1.0
    assert marker.read_text().split() == ["waiting", "CancelledError", "finally"]
    assert items(frames) == [b"first"]
    end = summary(frames)
    assert (end["aborted"], end["status"]) == (True, "success")


def test_an_abort_closes_a_sync_generator_at_its_next_yield(gens, tmp_path):
    marker = tmp_path / "marker"
    frames, _ = abort_after_first_item(gens, "slow_sync", marker)

    # it slept on, yielded its second item, and was closed there
    assert marker.read_text().split() == ["waiting", "GeneratorExit", "finally"]
    assert items(frames) == [b"first", b"second"]
    assert summary(frames)["aborted"] is True


def test_after_an_abort_the_container_serves_a_new_connection(gens, tmp_path):
    abort_after_first_item(gens, "slow_async", tmp_path / "marker")

    conn = gens.connect()
    status, body = invoke(conn, {"mode": "plain"})
    assert (status, body["status"], body["result"]) == (200, "success", {"ok": True})
    assert call(conn, "GET", "/healthz")[1]["busy"] is False


def test_a_reader_that_stops_reading_stops_the_generator_and_the_container_stays_busy(
    gens, tmp_path
):
    counter = tmp_path / "count"
    probe = gens.connect()
    with socket.socket() as sock:
        # a small receive window, as a paused reader's: what the kernels buffer stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FRAME_BYTES)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", gens.port))
        sock.sendall(stream_request("counted", path=str(counter)))
        time.sleep(1.0)  # reads nothing meanwhile
        produced_while_paused = int(counter.read_text())
        assert call(probe, "GET", "/healthz")[1]["busy"] is True
        assert invoke(probe, {"mode": "plain"})[1]["error"]["type"] == "Busy"

        reader = FrameReader(sock)
        reader.head()
        frames = reader.frames()

    # about 10: the bootstrap's send buffer (512 KiB) and this socket's window, of 200
    assert produced_while_paused < 25
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


def abort_at_once(host: str, port: int, secret: str) -> list[tuple[str, bytes]]:
    """An async generator's stream half-closed after its first frame: the frames up to E."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(stream_request("slow_async", secret))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        assert reader.frame() == ("D", b"first")
        sock.shutdown(socket.SHUT_WR)
        return reader.frames()


async def test_a_container_of_either_backend_streams_and_hears_an_abort(
    backend: ContainerBackend,  # noqa: F811
):
    container = await backend.start(ContainerSpec("python", 128))
    body = init_body("gens.dispatch", code_zip_b64=make_zip({"gens.py": GENS_SOURCE}))
    async with aiohttp.ClientSession(headers={SECRET_HEADER: container.secret}) as http:
        async with http.post(f"http://{container.address}/init", json=body) as resp:
            assert resp.status == 200, await resp.text()
    host, port = container.address.rsplit(":", 1)

    three = await asyncio.to_thread(run_stream, host, int(port), "three", container.secret)
    frames = await asyncio.to_thread(abort_at_once, host, int(port), container.secret)

    assert items(three) == [b"one", "twö".encode(), b'{"n": 3}\n']
    # closed well before its 10 s sleep ended: the half-close went through the port mapping
    end = summary(frames)
    assert (end["aborted"], end["stdout"]) == (True, "closed\n")


def test_the_container_is_free_before_the_summary_is_sent(start_bootstrap):  # noqa: F811
    # once Main has read the summary it gives the container to the next call, which must not
    # find it busy; a summary of megabytes that its reader does not take shows the order
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    source = make_zip({"gens.py": GENS_SOURCE})
    body = init_body("gens.dispatch", code_zip_b64=source, log_limit_bytes=8_000_000)
    assert init(conn, body)[0] == 200
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FRAME_BYTES)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", bootstrap.port))
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

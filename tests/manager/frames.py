"""Reading a streamed /invoke answer (DESIGN15 §A) frame by frame off a raw socket: chunked
frames H (the web form's head), d / D (an item's parts, its last part) and E (the summary)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from tests.manager.bootstraps import SECRET, SECRET_HEADER

FRAME_BYTES = 64 * 1024
LOCAL = "127.0.0.1"


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


def wait_for_mark(marker: Path, word: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while word not in (marker.read_text() if marker.exists() else ""):
        assert time.monotonic() < deadline, f"the generator never marked {word!r}"
        time.sleep(0.005)

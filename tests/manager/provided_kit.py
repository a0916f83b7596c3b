"""Running the provided relay as a real subprocess, and a stand-in runtime for its Runtime API."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP

SECRET = "provided-test-secret-1f3a"
SECRET_HEADER = "X-Hotpool-Container-Secret"
API = "/2018-06-01/runtime"


def provided_zip(
    files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)
) -> bytes:
    """A zip of ``files``; those named in ``executable`` carry mode 755, as `zip` keeps it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the mode below is read back
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def init_body(code: bytes | None, handler: str = "function.handler", **overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "function_name": "fn",
        "function_version": 3,
        "handler": handler,
        "memory_mb": 128,
        "timeout_s": 30,
        "env": {"GREETING": "hello"},
    }
    if code is not None:
        body["code_zip_b64"] = base64.b64encode(code).decode()
    return json.dumps(body | overrides).encode()


@dataclass
class Relay:
    """One running relay process."""

    process: subprocess.Popen[bytes]
    port: int
    api: str  # host:port of its Runtime API
    code_dir: Path

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> tuple[int, Any]:
        """One request to hotpool's side, with the secret; (status, decoded JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(
                method, path, body=body, headers={SECRET_HEADER: SECRET, **(headers or {})}
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        finally:
            assert self.process.stderr is not None
            self.process.stderr.close()


def start_relay(tmp_path: Path, *flags: str) -> Relay:
    code_dir = tmp_path / "code"
    process = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            "-u",
            "-B",
            str(PYTHON_BOOTSTRAP),
            "--runtime",
            "provided",
            "--code-dir",
            str(code_dir),
            "--opt-dir",
            str(tmp_path / "opt"),
            *flags,
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
    )
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(SECRET.encode() + b"\n")
    process.stdin.close()
    line = process.stderr.readline().decode()
    assert line.startswith("HOTPOOL_READY port="), line
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return Relay(process, int(fields["port"]), fields["runtime_api"], code_dir)


class StandIn:
    """The test as a custom runtime: a connection to the Runtime API for each request, so a
    poll may wait on one while the test posts on another."""

    def __init__(self, api: str) -> None:
        self.host, port = api.rsplit(":", 1)
        self.port = int(port)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, API + path, body=body, headers=headers or {})
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    def next(self) -> tuple[dict[str, str], bytes]:
        status, headers, body = self.request("GET", "/invocation/next")
        assert status == 200, (status, body)
        return headers, body


class StreamedPost:
    """The stand-in streaming a response as Lambda's runtimes do: a chunked POST with
    ``Lambda-Runtime-Function-Response-Mode: streaming``, written a chunk at a time."""

    def __init__(self, api: str, request_id: str, headers: dict[str, str] | None = None) -> None:
        host, port = api.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        fields = {
            "Host": api,
            "Lambda-Runtime-Function-Response-Mode": "streaming",
            "Transfer-Encoding": "chunked",
            "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
            **(headers or {}),
        }
        head = f"POST {API}/invocation/{request_id}/response HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value)
        self.sock.sendall(head.encode() + b"\r\n")

    def write(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))

    def end(self, trailers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """The terminating chunk (and trailers); the relay's (status, JSON answer)."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in (trailers or {}).items())
        self.sock.sendall(b"0\r\n" + lines.encode() + b"\r\n")
        return self.answer()

    def answer(self) -> tuple[int, dict[str, Any]]:
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        status, body = response.status, response.read()
        self.sock.close()
        return status, json.loads(body)


class FramedInvoke:
    """An /invoke read as Main reads a streamed answer: frame by frame."""

    def __init__(self, relay: Relay, event: bytes, request_id: str) -> None:
        from hotpool.main_server.frames import ChunkDecoder

        self.sock = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
        head = (
            f"POST /invoke HTTP/1.1\r\nHost: c\r\n{SECRET_HEADER}: {SECRET}\r\n"
            f"X-Hotpool-Request-Id: {request_id}\r\nContent-Length: {len(event)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + event)
        self._decoder = ChunkDecoder(max_summary_bytes=1 << 20)
        self._frames: list[bytes] = []
        self._buffer = b""
        self.head = b""

    def frame(self) -> bytes:
        """The next frame (kind byte + payload)."""
        while not self._frames:
            data = self.sock.recv(65536)
            assert data, "the relay closed the connection mid-stream"
            if not self.head:
                self._buffer += data
                if b"\r\n\r\n" not in self._buffer:
                    continue
                self.head, _, data = self._buffer.partition(b"\r\n\r\n")
                assert b"Transfer-Encoding: chunked" in self.head, self.head
            self._frames += self._decoder.feed(data)
        return self._frames.pop(0)

    def rest(self) -> tuple[list[bytes], dict[str, Any]]:
        """The frames up to the summary, and the summary."""
        frames = []
        while (frame := self.frame())[:1] != b"E":
            frames.append(frame)
        return frames, json.loads(frame[1:])


def open_output(port: int, secret: str = SECRET) -> tuple[socket.socket, bytes]:
    """A connection to an image relay's ``POST /output``, as the Manager opens it, and the
    relay's answer head (101 when it switched to frames)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    # as asyncio's streams (the Manager's) do: a small frame is not held back for an ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        f"POST /output HTTP/1.1\r\nHost: relay\r\n{SECRET_HEADER}: {secret}\r\n"
        "Connection: Upgrade\r\nUpgrade: hotpool-output\r\nContent-Length: 0\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(4096)
        if not data:
            break
        answer += data
    return sock, answer


@pytest.fixture
def external(tmp_path: Path) -> Iterator[Relay]:
    """A relay started with ``--external`` (as an image's): the test plays the runtime."""
    relay = start_relay(tmp_path, "--external")
    yield relay
    relay.stop()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for a poll or a call that waits while the test goes on."""
    with ThreadPoolExecutor(4) as executor:
        yield executor

"""Real services started by the test session itself: an S3-compatible moto server, Redis
servers and sentinels, and a TCP proxy that a test can cut to simulate a service going away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

# The local Redis the tests use (databases 12, 14 and 15 are theirs and get flushed);
# HOTPOOL_TEST_REDIS_PORT points two test runs on one machine at two servers.
REDIS_PORT = int(os.environ.get("HOTPOOL_TEST_REDIS_PORT", "6379"))
# The Python runtime image the Docker tests start; HOTPOOL_TEST_RUNTIME_IMAGE lets a test run
# use an image built from its own work tree (deploy/build-images.sh honours
# HOTPOOL_RUNTIME_IMAGE) without touching the shared tag.
RUNTIME_IMAGE = os.environ.get("HOTPOOL_TEST_RUNTIME_IMAGE", "hotpool/runtime-python:latest")
# the Node.js runtime image, alike (deploy/build-images.sh honours HOTPOOL_RUNTIME_IMAGE_NODEJS)
RUNTIME_IMAGE_NODEJS = os.environ.get(
    "HOTPOOL_TEST_RUNTIME_IMAGE_NODEJS", "hotpool/runtime-nodejs:latest"
)
# the custom-runtime image (runtime=provided), alike (HOTPOOL_RUNTIME_IMAGE_PROVIDED builds it)
RUNTIME_IMAGE_PROVIDED = os.environ.get(
    "HOTPOOL_TEST_RUNTIME_IMAGE_PROVIDED", "hotpool/runtime-provided:latest"
)
# the Lambda-style image of the container-image function tests (tests/lambda_image/build.sh
# builds it, and the same tag + "-v2")
LAMBDA_IMAGE = os.environ.get("HOTPOOL_TEST_LAMBDA_IMAGE", "hotpool-test/lambda-python:latest")


def missing_service(reason: str) -> None:
    """Skip locally, but fail in CI: a service CI promised must not silently go missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def wait_port(port: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto standalone S3 server; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_port(port):
            missing_service("the moto S3 server did not start (pip install 'moto[server]')")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class RedisProcess:
    """A redis-server (or redis-sentinel) process of the test's own."""

    def __init__(self, workdir: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        binary = "redis-sentinel" if sentinel else "redis-server"
        if shutil.which(binary) is None:
            missing_service(
                f"{binary} is not installed (apt-get install redis-server redis-sentinel)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        if sentinel:
            config = workdir / "sentinel.conf"
            config.write_text("\n".join(args) + "\n")
            command = [binary, str(config), "--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", *args]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_port(self.port):
            self.stop()
            missing_service(f"{binary} did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``cut()`` drops every connection and refuses new
    ones until ``restore()``, as if the service behind it went away."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

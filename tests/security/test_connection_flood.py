"""Item 7: an attacker holding many idle or slow connections does not stop a legitimate client.

``hotpool dev`` runs as a child limited to 1,024 file descriptors (soft and hard). The attacker
opens 2,000 connections that send nothing (no key is needed to connect) and 200 slowloris
connections that send one byte of a request head per second. Before the guard, the idle ones
took every descriptor and /healthz stopped answering, and the slow ones were held until the
75 s keep-alive timer. Now Main keeps at most HOTPOOL_HTTP_MAX_CONNECTIONS, closing the oldest
connection still without a request to make room, and closes a connection whose first request
head has not arrived within HOTPOOL_HTTP_HEADER_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from hotpool.benchmarks.devserver import wait_announced
from tests.helpers import handler_zip, service_env

pytestmark = pytest.mark.integration

IDLE = 2000
SLOW = 200
CHILD_FILES = 1024
HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 300


def _child_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_FILES, CHILD_FILES))


@pytest.fixture
def main_url(tmp_path):
    env = service_env()
    env.update(
        HOTPOOL_PREWARM_COUNT="0",
        HOTPOOL_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        HOTPOOL_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
    )
    log = open(tmp_path / "dev.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_limits,
    )  # fmt: skip
    try:
        urls = wait_announced(tmp_path / "dev.log", ("main",), lambda: proc.poll() is None, 30)
        key = (tmp_path / ".hotpool" / "admin.key").read_text().strip()
        yield urls["main"], key
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


async def _open_idle(host: str, port: int, n: int) -> list[asyncio.StreamWriter]:
    """``n`` connections that send nothing (those the server refused at once are dropped)."""
    writers = []
    for start in range(0, n, 100):
        batch = [asyncio.open_connection(host, port) for _ in range(min(100, n - start))]
        for opened in await asyncio.gather(*batch, return_exceptions=True):
            if not isinstance(opened, BaseException):
                writers.append(opened[1])
    return writers


async def _slowloris(host: str, port: int, closed_after: list[float], stop: asyncio.Event) -> None:
    """One byte of a never-ending request head a second, until the server closes or ``stop``."""
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection(host, port)
        began = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for byte in head:
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                    closed_after.append(time.monotonic() - began)
                    break
            except TimeoutError:
                pass
            except OSError:
                closed_after.append(time.monotonic() - began)
                break
            if stop.is_set():
                break
        writer.close()


async def test_idle_and_slow_connections_do_not_stop_a_legitimate_client(main_url):
    url, key = main_url
    where = urlsplit(url)
    host, port = where.hostname, where.port
    assert host is not None and port is not None
    closed_after: list[float] = []
    stop = asyncio.Event()
    slow = [asyncio.create_task(_slowloris(host, port, closed_after, stop)) for _ in range(SLOW)]
    idle = await _open_idle(host, port, IDLE)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(url, headers=headers, timeout=timeout) as client:
            resp = await client.get("/healthz")
            assert resp.status == 200
            resp = await client.put(
                "/v1/functions/legit",
                data=handler_zip("return 'served'"),
                headers={"Content-Type": "application/zip"},
            )
            assert resp.status in (200, 201), await resp.text()
            resp = await client.post("/v1/functions/legit/invoke", json={})
            assert resp.status == 200
            assert await resp.json() == "served"

        # the slow heads are cut at the header timeout, long before their 1,000-odd seconds
        await asyncio.wait_for(asyncio.gather(*slow), timeout=HEADER_TIMEOUT_S + 20)
        assert len(closed_after) == SLOW
        assert max(closed_after) < HEADER_TIMEOUT_S + 10
    finally:
        stop.set()
        for task in slow:
            task.cancel()
        for writer in idle:
            writer.close()


async def test_a_body_trickled_past_the_body_timeout_gets_408(hotpool_stack):
    stack = await hotpool_stack(http_body_timeout_s=1.0)
    assert (await stack.deploy("legit", handler_zip("return 'served'"))).status == 201
    key = await stack.key("default")
    server = stack.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"POST /v1/functions/legit/invoke HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"a": '
    )
    try:
        answer = await asyncio.wait_for(reader.read(4096), timeout=15)
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 408")
    assert b"HOTPOOL_HTTP_BODY_TIMEOUT_S" in answer

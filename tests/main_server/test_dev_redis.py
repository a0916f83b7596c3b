"""``hotpool dev``'s Redis across restarts: a private redis-server keeps the queued asynchronous
events on disk and drops what described the last run; the in-process stand-in says it keeps
nothing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hotpool.benchmarks.devserver import wait_announced
from hotpool.shared import async_keys
from tests.helpers import service_env
from tests.services import missing_service

pytestmark = pytest.mark.integration

LOST_WARNING = (
    "WARNING hotpool.main_server.serve asynchronous events queued in the in-process Redis "
    "stand-in are lost when hotpool dev stops; install redis-server to keep them"
)


@pytest.fixture
def dev(tmp_path) -> Iterator[Callable[..., tuple[subprocess.Popen, Path]]]:
    """Start ``hotpool dev`` in ``tmp_path`` (one state folder for every start); returns the
    process and its log once it is ready. Whatever still runs is stopped at the end."""
    base = service_env()
    base["HOTPOOL_PREWARM_COUNT"] = "0"
    procs: list[subprocess.Popen] = []

    def start(embedded_redis: str) -> tuple[subprocess.Popen, Path]:
        log_path = tmp_path / f"dev{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
                cwd=tmp_path, env={**base, "HOTPOOL_EMBEDDED_REDIS": embedded_redis},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        wait_announced(log_path, ("main",), lambda: proc.poll() is None, 60)
        return proc, log_path

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _redis(log_path: Path) -> redis.Redis:
    """A client of the private redis-server the ready line in ``log_path`` names."""
    (url,) = re.findall(r"Redis: (unix://[^)\s]+)", log_path.read_text())
    return redis.Redis.from_url(url)


def test_a_restart_keeps_the_asynchronous_keys_and_drops_the_rest(dev):
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    event = async_keys.inv("before-kill")
    stale = "hp:pool:restart-test:1"
    proc, log_path = dev("server")
    client = _redis(log_path)
    client.hset(event, mapping={"status": "queued"})
    client.xadd(async_keys.stream("default"), {"id": "before-kill"})
    client.rpush(stale, "an idle container of the last run")
    client.close()
    # killed: no shutdown of its own, and its redis-server is killed with it
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    proc, log_path = dev("server")
    client = _redis(log_path)
    assert client.hgetall(event) == {b"status": b"queued"}
    assert [fields for _, fields in client.xrange(async_keys.stream("default"))] == [
        {b"id": b"before-kill"}
    ]
    assert not client.exists(stale)
    dropped = re.findall(
        r"embedded Redis: dropped (\d+) keys of the last run", log_path.read_text()
    )
    assert len(dropped) == 1 and int(dropped[0]) >= 1
    assert LOST_WARNING not in log_path.read_text()
    client.hset(async_keys.inv("before-stop"), mapping={"status": "queued"})
    client.close()
    proc.terminate()
    assert proc.wait(timeout=30) == 0

    _, log_path = dev("server")
    client = _redis(log_path)
    assert client.exists(event, async_keys.inv("before-stop")) == 2
    client.close()


def test_the_in_process_stand_in_warns_that_it_keeps_nothing(dev):
    _, log_path = dev("inprocess")
    output = log_path.read_text()
    assert LOST_WARNING in output
    assert "embedded Redis: dropped" not in output

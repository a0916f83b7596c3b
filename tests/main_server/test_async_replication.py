"""HOTPOOL_ASYNC_WAIT_REPLICAS: a 202 means that many Redis replicas hold the event.

A primary of the test's own with one real replica (``redis-server --replicaof``), and the shared
test Redis, which has none: there every accept is a 503 that names the queued event, and a
repeat with the same Idempotency-Key is a 503 again rather than a 202 that skipped the check.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.async_calls import (
    LEDGER,
    accepted,
    error_of,
    send,
    settled,
)
from tests.helpers import free_port
from tests.services import missing_service

pytestmark = pytest.mark.integration


def _server(tmp_path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), *extra,
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def primary_with_replica(tmp_path) -> Iterator[str]:
    """The URL of a primary whose one replica has finished its first sync."""
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    primary_port, replica_port = free_port(), free_port()
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    procs = [_server(tmp_path / "p", primary_port, "--repl-diskless-sync-delay", "0")]
    procs.append(
        _server(tmp_path / "r", replica_port, "--replicaof", "127.0.0.1", str(primary_port))
    )
    try:
        primary = redis.Redis(port=primary_port, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                replica = primary.info("replication").get("slave0")
                if isinstance(replica, dict) and replica.get("state") == "online":
                    break
            except redis.exceptions.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        primary.close()
        yield f"redis://127.0.0.1:{primary_port}/0"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


async def test_a_202_waits_for_a_replica_that_holds_the_event(
    hotpool_stack, primary_with_replica, tmp_path
):
    stack = await hotpool_stack(redis_url=primary_with_replica, async_wait_replicas=1)
    resp = await stack.deploy("fn", LEDGER, env={"LEDGER": str(tmp_path / "ledger")})
    assert resp.status == 201, await resp.text()
    request_id = await accepted(await send(stack, "fn", {"n": 1}))
    assert (await settled(stack, request_id))["status"] == "succeeded"


async def test_without_the_replicas_an_accept_is_a_503_and_so_is_its_repeat(
    hotpool_stack, real_redis_url, tmp_path
):
    # the shared test Redis has no replica: WAIT never reaches one
    stack = await hotpool_stack(
        redis_url=real_redis_url, async_wait_replicas=1, async_wait_timeout_s=0.1
    )
    resp = await stack.deploy("fn", LEDGER, env={"LEDGER": str(tmp_path / "ledger")})
    assert resp.status == 201, await resp.text()
    keyed = {"X-Hotpool-Invocation-Type": "Event", "Idempotency-Key": "order-1"}

    first = await send(stack, "fn", {"n": 1}, headers=keyed)
    error = await error_of(first, 503)
    request_id = error["request_id"]
    assert first.headers["X-Hotpool-Request-Id"] == request_id
    assert "0 of 1 replicas" in error["message"] and "same Idempotency-Key" in error["message"]
    # the repeat finds the first event but no replica holding it: a 503 again, same id
    again = await error_of(await send(stack, "fn", {"n": 1}, headers=keyed), 503)
    assert again["request_id"] == request_id
    # without a key, the advice is not to send it again
    unkeyed = await error_of(await send(stack, "fn", {"n": 2}), 503)
    assert "would queue it twice" in unkeyed["message"]
    # queued on the primary all the same: it runs, once
    assert (await settled(stack, request_id))["status"] == "succeeded"

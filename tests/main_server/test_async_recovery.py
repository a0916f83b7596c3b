"""Asynchronous events are never lost: a replica that dies mid-call leaves its event to another
(at least once), a Redis that comes back empty is reported, and a restart of ``hotpool dev``
keeps the events it had accepted."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient, TestServer

from hotpool.benchmarks.devserver import wait_announced
from hotpool.main_server.app import create_app
from hotpool.main_server.state import ASYNC_CONSUMER
from hotpool.shared import async_keys
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.redis_conn import make_redis
from tests.helpers import service_env
from tests.main_server.async_events import (
    FAST,
    ledger,
    ledger_zip,
    records,
    send,
    wait_status,
)
from tests.services import RedisProcess, missing_service
from tests.stack import wait_for

pytestmark = pytest.mark.integration

# an attempt's deadline counts the cold-start bound too: a short one reruns sooner
QUICK_RERUN = {**FAST, "cold_start_timeout_s": 3}
# sleeps event["s"] seconds (its timeout is 2 s), then writes an "end" line to its ledger
SLOW = ledger_zip(
    "time.sleep(event['s'])\n_ledger(event, context, 'end')\nreturn {'attempt': context.attempt}"
)


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A redis-server of the test's own (it may be flushed); ask for it before hotpool_stack,
    so the stack is torn down first."""
    server = RedisProcess(tmp_path / "redis")
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


async def test_an_event_whose_replica_dies_mid_call_runs_again_on_another(
    redis_url, hotpool_stack, tmp_path
):
    # replica A gets no time to finish what it runs when it stops: as if it died
    stack = await hotpool_stack(redis_url=redis_url, drain_timeout_s=0, **QUICK_RERUN)
    path = tmp_path / "ledger"
    await stack.deploy("slow", SLOW, timeout_s=2, env={"LEDGER": str(path)})
    replica_a = stack.client.app[ASYNC_CONSUMER]
    # a warm container, so attempt 1 begins as it starts (no cold start inside its deadline)
    assert (await stack.invoke("slow", {"s": 0})).status == 200
    await stack.idle_entries("slow", 1)

    request_id = await send(stack.client, "slow", {"s": 1.5})
    await wait_status(stack.client, request_id, ("running",), timeout_s=10)
    assert await wait_for(lambda: _started(path, 2), timeout_s=10)
    consumer = await stack.redis.hget(async_keys.inv(request_id), "consumer")
    assert consumer.decode() == replica_a.name

    b_redis = make_redis(stack.settings)
    replica_b = TestClient(TestServer(create_app(stack.settings, redis=b_redis)))
    await replica_b.start_server()
    replica_b.session.headers["Authorization"] = stack.client.session.headers["Authorization"]
    try:
        # A's consumer is cancelled mid-call: nothing acknowledges the entry, which stays
        # pending on A, silent from now on
        await stack.client.close()
        assert replica_a.counters["async_succeeded"] == 0

        done = await wait_status(replica_b, request_id, timeout_s=30)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2 and done["result"] == {"attempt": 2}
        runs = [r for r in ledger(path) if r["id"] == request_id]
        assert [r["attempt"] for r in runs] == [1, 2]
        # the two attempts did not overlap: B waited out attempt 1's timeout + grace
        (first_end,) = [
            r for r in ledger(path, "end") if r["id"] == request_id and r["attempt"] == 1
        ]
        assert runs[1]["at"] > first_end["at"]

        async def recorded() -> bool:
            return any(r.get("attempt") == 2 for r in await records(replica_b, "slow"))

        assert await wait_for(recorded, timeout_s=10)
        succeeded = [
            (r["request_id"], r["attempt"])
            for r in await records(replica_b, "slow")
            if r["trigger"] == "async" and r["status"] == "success"
        ]
        assert succeeded == [(f"{request_id}:2", 2)]
        resp = await replica_b.get("/system/status")
        counters = (await resp.json())["counters"]
        assert counters["async_reclaimed"] == 1
        assert counters["async_succeeded"] == 1
    finally:
        await replica_b.close()
        await b_redis.aclose()


async def test_an_event_taken_from_a_replica_that_was_alive_after_all_runs_once(
    hotpool_stack, tmp_path
):
    stack = await hotpool_stack(**QUICK_RERUN)
    path = tmp_path / "ledger"
    await stack.deploy("slow", SLOW, timeout_s=2, env={"LEDGER": str(path)})
    request_id = await send(stack.client, "slow", {"s": 1})
    await wait_status(stack.client, request_id, ("running",), timeout_s=10)

    # another replica presumes this one dead and takes its event, as after a network split:
    # it is deferred to the attempt's deadline, by when the first attempt has ended
    queue = AsyncQueue(stack.redis)
    taken = await queue.reclaim("a-replica-far-away", await queue.namespaces(), idle_s=0)
    assert taken == [request_id]

    done = await wait_status(stack.client, request_id, timeout_s=10)
    assert done["status"] == "succeeded" and done["attempts"] == 1

    async def dropped() -> bool:  # the deferred copy came due, found the event ended
        resp = await stack.client.get("/system/status")
        return (await resp.json())["counters"].get("async_gone", 0) >= 1

    assert await wait_for(dropped, timeout_s=10)
    assert [(r["id"], r["attempt"]) for r in ledger(path)] == [(request_id, 1)]
    assert (await wait_status(stack.client, request_id))["attempts"] == 1


async def _started(path, n: int) -> bool:
    return len(ledger(path)) >= n


async def test_a_redis_that_comes_back_empty_is_reported(
    redis_url, hotpool_stack, tmp_path, caplog
):
    caplog.set_level(logging.ERROR, logger="hotpool.main_server.async_consumer")
    stack = await hotpool_stack(redis_url=redis_url, **QUICK_RERUN)
    path = tmp_path / "ledger"
    await stack.deploy("steady", ledger_zip(), env={"LEDGER": str(path)})
    before = await send(stack.client, "steady", {"n": 1})
    assert (await wait_status(stack.client, before))["status"] == "succeeded"

    direct = redis.asyncio.Redis.from_url(redis_url)
    try:
        await direct.flushall()
    finally:
        await direct.aclose()

    def logged() -> bool:
        return any(
            r.levelno == logging.ERROR and "without the asynchronous queue" in r.getMessage()
            for r in caplog.records
        )

    async def reported() -> bool:
        return logged()

    assert await wait_for(reported, timeout_s=10)
    resp = await stack.client.get("/system/status")
    assert (await resp.json())["counters"]["async_redis_data_lost"] >= 1

    # and it accepts and runs events again
    after = await send(stack.client, "steady", {"n": 2})
    assert (await wait_status(stack.client, after, timeout_s=30))["status"] == "succeeded"
    assert [r["event"] for r in ledger(path)] == [{"n": 1}, {"n": 2}]


def _call(
    method: str, url: str, key: str, body: bytes | None = None, kind: str = "application/json"
) -> tuple[int, Any]:
    """One request to a ``hotpool dev``; invocations are asynchronous ones."""
    request = urllib.request.Request(
        url, data=body, method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": kind,
                 "X-Hotpool-Invocation-Type": "Event"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


# SIGKILL: no shutdown of its own, nor of its Redis; SIGTERM: it drains and stops its Redis
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_restart_of_hotpool_dev_loses_no_accepted_event(tmp_path, stop):
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    env = service_env()
    env.update(
        HOTPOOL_PREWARM_COUNT="0", HOTPOOL_EMBEDDED_REDIS="server",
        # one event at a time, so most of them are still queued when it is killed
        HOTPOOL_ASYNC_CONCURRENCY="1", HOTPOOL_ASYNC_CONSUMER_TIMEOUT_S="1",
        HOTPOOL_LEASE_GRACE_S="0.5", HOTPOOL_COLD_START_TIMEOUT_S="3",
    )  # fmt: skip
    procs: list[subprocess.Popen] = []

    def start() -> str:
        log_path = tmp_path / f"dev{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        return wait_announced(log_path, ("main",), lambda: proc.poll() is None, 60)["main"]

    try:
        url = start()
        key = (tmp_path / ".hotpool" / "admin.key").read_text().strip()
        path = tmp_path / "ledger"
        env_json = orjson.dumps({"LEDGER": str(path)}).decode()
        query = urllib.parse.urlencode({"timeout_s": 2, "env": env_json})
        code = ledger_zip("time.sleep(0.5)")
        status, body = _call(
            "PUT", f"{url}/v1/functions/tick?{query}", key, code, "application/zip"
        )
        assert status == 201, body
        ids = []
        for n in range(6):
            status, body = _call("POST", f"{url}/v1/functions/tick/invoke", key, orjson.dumps(n))
            assert status == 202, body
            ids.append(body["request_id"])
        deadline = time.monotonic() + 20
        while not ledger(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger(path), "no event began"
        _, last = _call("GET", f"{url}/v1/invocations/{ids[-1]}", key)
        assert last["status"] == "queued"  # killed with events still queued

        os.kill(procs[0].pid, stop)
        procs[0].wait(timeout=30)
        url = start()

        final = {}
        deadline = time.monotonic() + 60
        while len(final) < len(ids) and time.monotonic() < deadline:
            for request_id in set(ids) - set(final):
                status, body = _call("GET", f"{url}/v1/invocations/{request_id}", key)
                assert status == 200, body  # accepted, so known
                if body["status"] in ("succeeded", "failed", "expired"):
                    final[request_id] = body["status"]
            time.sleep(0.1)
        assert final == {request_id: "succeeded" for request_id in ids}
        assert {line["id"] for line in ledger(path)} == set(ids)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

"""Herd control end to end (BRIEF.md §2): simultaneous misses share cold starts, a function
never has more than max_concurrency containers, a full cluster answers 429 rather than
overcommitting, and a Redis outage gives fast 503s and heals by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions

from hotpool.shared.redis_conn import REDIS_ERRORS
from tests.helpers import handler_zip
from tests.services import REDIS_PORT, TcpProxy, missing_service
from tests.stack import wait_for

pytestmark = pytest.mark.integration

SLEEPY = handler_zip("import time\ntime.sleep((event or {}).get('s', 0))\nreturn 'slept'")


class Sampler:
    """Samples the number of live containers in the background; ``peak`` is the most seen."""

    def __init__(self, stack) -> None:
        self._stack = stack
        self.peak = 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, len(self._stack.live_containers()))
            await asyncio.sleep(0.005)


async def nothing_leaked(stack, name: str, version: int = 1) -> bool:
    """Invariant 2: pool entries + leases == live containers, each container once."""
    placed = await stack.pool_entries(name, version) + await stack.leases()
    ids = [raw.split("|")[3] for raw in placed]
    return len(ids) == len(set(ids)) and set(ids) == stack.live_containers()


async def test_simultaneous_misses_share_cold_starts(hotpool_stack):
    stack = await hotpool_stack(waiters_per_start=4)
    assert (await stack.deploy("herd", SLEEPY)).status == 201

    async with Sampler(stack) as sampler:
        replies = await asyncio.gather(*(stack.invoke("herd", {"s": 0.3}) for _ in range(20)))

    assert [r.status for r in replies] == [200] * 20
    cold = [r.headers["X-Hotpool-Cold-Start"] for r in replies].count("true")
    assert 1 <= cold <= 10
    assert sampler.peak <= 10 and len(stack.live_containers()) == cold
    assert await stack.leases() == []
    assert await nothing_leaked(stack, "herd")


async def test_max_concurrency_caps_containers_and_queued_calls_succeed(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("capped", SLEEPY, max_concurrency=2)).status == 201

    async with Sampler(stack) as sampler:
        replies = await asyncio.gather(*(stack.invoke("capped", {"s": 0.3}) for _ in range(8)))

    assert [r.status for r in replies] == [200] * 8
    assert sampler.peak <= 2
    assert await stack.leases() == []
    assert await nothing_leaked(stack, "capped")


async def _over_the_limit(stack, name: str, calls: int) -> list:
    async with Sampler(stack) as sampler:
        replies = await asyncio.gather(*(stack.invoke(name, {"s": 2}) for _ in range(calls)))
    assert sampler.peak <= 1
    return replies


async def _assert_one_served_rest_refused(replies) -> None:
    assert sorted(r.status for r in replies) == [200, 429, 429]
    for reply in replies:
        if reply.status == 429:
            assert int(reply.headers["Retry-After"]) >= 1
            body = await reply.json()
            assert body["error"]["code"] == "TooManyRequests"
            assert "concurrency limit" in body["error"]["message"]


async def test_calls_over_the_limit_of_a_warm_function_get_429(hotpool_stack):
    stack = await hotpool_stack(queue_timeout_s=0.5)
    assert (await stack.deploy("one", SLEEPY, max_concurrency=1)).status == 201
    assert (await stack.invoke("one", {"s": 0})).status == 200  # warm

    replies = await _over_the_limit(stack, "one", 3)

    await _assert_one_served_rest_refused(replies)


async def test_calls_over_the_limit_of_a_cold_function_get_429(hotpool_stack):
    stack = await hotpool_stack(queue_timeout_s=0.5, cold_start_timeout_s=10)
    assert (await stack.deploy("one", SLEEPY, max_concurrency=1)).status == 201

    replies = await _over_the_limit(stack, "one", 3)

    await _assert_one_served_rest_refused(replies)


async def test_full_manager_queues_then_refuses_another_function(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=1, queue_timeout_s=0.2)
    assert (await stack.deploy("first", SLEEPY)).status == 201
    assert (await stack.deploy("second", SLEEPY)).status == 201

    async with Sampler(stack) as sampler:
        replies = await asyncio.gather(
            stack.invoke("first", {"s": 0.5}), stack.invoke("second", {"s": 0.5})
        )

    # a container of the other function is never handed over: one call must wait, and time out
    assert sorted(r.status for r in replies) == [200, 429]
    refused = next(r for r in replies if r.status == 429)
    assert "Retry-After" in refused.headers
    assert sampler.peak <= 1


# --- Redis going away --------------------------------------------------------------------------

REDIS_DB = 12


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    """A cuttable proxy to the real Redis; its db 12 is flushed before and after."""
    direct = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_DB}", socket_connect_timeout=2.0
    )
    try:
        await direct.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        await direct.aclose()
        missing_service(f"Redis not reachable at 127.0.0.1:{REDIS_PORT}: {exc}")
    await direct.flushdb()
    proxy = TcpProxy(REDIS_PORT)
    await proxy.start()
    try:
        yield proxy
    finally:
        # the stack (set up after this fixture) is torn down first, through the proxy
        await proxy.cut()
        await direct.flushdb()
        await direct.aclose()


async def test_redis_outage_gives_fast_503_and_recovers(redis_proxy, hotpool_stack):
    stack = await hotpool_stack(
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}",
        redis_socket_timeout_s=1,
        redis_connect_timeout_s=0.5,
        lease_grace_s=0.3,
        lease_reaper_interval_s=0.2,
    )
    assert (await stack.deploy("steady", SLEEPY)).status == 201
    assert (await stack.invoke("steady", {})).status == 200
    # the answer goes out just before the container's release (Invoker.invocation): a cut
    # in between would leave a lease for the reaper at its deadline, which is not under test
    assert await wait_for(lambda: _no_leases(stack), timeout_s=5)

    await redis_proxy.cut()
    begun = time.monotonic()
    resp = await stack.invoke("steady", {})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "StoreUnavailable"
    assert time.monotonic() - begun < 10  # failing fast, not hanging

    await redis_proxy.restore()

    async def serving() -> bool:
        return (await stack.invoke("steady", {})).status == 200

    assert await wait_for(serving, timeout_s=20)
    # the Manager's pooled connections died with the cut too; let its next heartbeat find out
    # (shutting down on one is test_manager_shutdown_removes_containers_while_redis_is_away)
    assert await wait_for(lambda: _heartbeat_ok(stack), timeout_s=10)

    async def settled() -> bool:
        return not await stack.leases() and await nothing_leaked(stack, "steady")

    assert await wait_for(settled, timeout_s=10)
    assert len(stack.live_containers()) >= 1


async def _no_leases(stack) -> bool:
    return not await stack.leases()


async def _heartbeat_ok(stack) -> bool:
    try:
        await stack.manager.heartbeat()
    except REDIS_ERRORS:
        return False
    return True


async def test_manager_shutdown_removes_containers_while_redis_is_away(redis_proxy, hotpool_stack):
    stack = await hotpool_stack(
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}",
        redis_socket_timeout_s=1,
        redis_connect_timeout_s=0.5,
    )
    assert (await stack.deploy("steady", SLEEPY)).status == 201
    assert (await stack.invoke("steady", {})).status == 200
    (container,) = stack.live_containers()
    pid = stack.manager._backend._procs[container].pid

    await redis_proxy.cut()
    try:
        with contextlib.suppress(*REDIS_ERRORS):
            await stack.manager_server.close()
        assert not _process_exists(pid), "the container outlived its Manager"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        await redis_proxy.restore()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child not yet reaped is a zombie: gone for our purposes
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][0] != "Z"


async def test_a_crowd_of_waiters_does_not_run_out_of_redis_connections(redis_proxy, hotpool_stack):
    # found by `hotpool bench` at 128 connections: every request queued for a container holds
    # a Redis connection for its BLPOP, and past the pool's old limit of 100 the next command
    # failed at once ("Too many connections", a 503)
    stack = await hotpool_stack(redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB}")
    assert (await stack.deploy("crowd", SLEEPY, max_concurrency=20)).status == 201

    replies = await asyncio.gather(*(stack.invoke("crowd", {"s": 0.1}) for _ in range(150)))

    assert sorted(r.status for r in replies) == [200] * 150, {await r.text() for r in replies}
    assert await wait_for(lambda: nothing_leaked(stack, "crowd"), timeout_s=5)

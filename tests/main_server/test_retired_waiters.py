"""A request whose version is retired (a deploy or a delete) before it gets a container moves to
the function's current version (main_server.acquire), on fakeredis with the fakes of
tests/fakes.py.

The waits here are long (30 s) and the BLPOP slices too, so a request is served at once only if
the retirement itself wakes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import fakeredis
import pytest

from hotpool.main_server.invoke import Invocation, Invoker
from hotpool.shared import keys
from hotpool.shared.errors import NoCapacity, NotFound
from hotpool.shared.models import FunctionConfig, PoolEntry
from hotpool.shared.pool import Admission, Pool
from hotpool.shared.redis_conn import text
from hotpool.shared.settings import Settings
from tests.fakes import ECHO_V1, FakeManagers, FakeRecords, FakeTransport, FakeVersions, success
from tests.stack import wait_for

pytestmark = pytest.mark.unit

V1 = dataclasses.replace(ECHO_V1, config=FunctionConfig(timeout_s=5.0, max_concurrency=1))
LONG_S = 30.0
SETTINGS = Settings(
    lease_grace_s=1.0,
    queue_timeout_s=LONG_S,
    cold_start_timeout_s=LONG_S,
    redis_socket_timeout_s=2 * LONG_S,  # one BLPOP slice lasts the whole wait
)
# far below the waits: a request still waiting then was stranded
PROMPT_S = 5.0


def container(name: str, version: int) -> PoolEntry:
    return PoolEntry(V1.name, version, "m1", name, f"10.0.{version}.1:9000")


class Rig:
    def __init__(self) -> None:
        self.redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.pool = Pool(self.redis)
        self.transport = FakeTransport(success("ok"))
        self.managers = FakeManagers()
        self.records = FakeRecords()
        self.versions = FakeVersions(V1)
        self.invoker = Invoker(
            SETTINGS,
            pool=self.pool,
            managers=self.managers,
            containers=self.transport,
            records=self.records,
            versions=self.versions,
        )

    async def invoke(self, admission: Admission | None = None) -> Invocation:
        async with self.invoker.invocation(V1, b"{}", "req-1", admission) as done:
            return done

    async def waiting_on_v1(self) -> bool:
        return [text(t) for t in await self.redis.zrange(keys.waiting(V1.name, 1), 0, -1)] == [
            "req-1"
        ]

    async def deploy_v2(self, *, idle: PoolEntry | None = None) -> None:
        """What FunctionService.deploy does to the pool, with ``idle`` warm in v2."""
        v2 = self.versions.deploy(V1)
        await self.pool.unretire(v2.name, v2.version)
        if idle is not None:
            assert await self.pool.put_back(idle)
        await self.pool.retire(V1.name, V1.version)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    yield made
    await made.redis.aclose()


async def test_a_queued_request_is_woken_by_the_deploy_and_runs_on_the_new_version(rig):
    # v1 is at its limit: its one container is busy with a long call
    busy = container("busy", 1)
    await rig.pool.lease(busy, 60)
    admission = Admission("key-1", 0.0, 0, "acme", 1, 60.0)  # one call of acme in flight
    call = asyncio.create_task(rig.invoke(admission))
    assert await wait_for(rig.waiting_on_v1)

    await rig.deploy_v2(idle=container("fresh", 2))
    done = await asyncio.wait_for(call, PROMPT_S)

    assert (done.status, done.body) == (200, b'"ok"')
    assert [p.address for p in rig.transport.posts] == ["10.0.2.1:9000"]
    assert rig.records.records[0]["version"] == 2
    # admitted once: a second admission would have found acme's one slot taken
    assert await rig.redis.zrange(keys.ns_inflight("acme"), 0, -1) == []
    assert not await rig.waiting_on_v1()
    assert rig.invoker.counters["moved_to_current_version"] == 1
    # the new version's container is back in its pool; the old one is untouched
    assert await rig.pool.acquire(V1.name, 2, 1) == container("fresh", 2)
    assert await rig.redis.zscore(keys.LEASES, busy.encode()) is not None


async def test_a_request_waiting_for_a_cold_start_moves_and_starts_the_new_version(rig):
    # another request's cold start of v1 is under way: this one waits for it
    await rig.redis.zadd(keys.starting(V1.name, 1), {"other": 1e12})
    call = asyncio.create_task(rig.invoke())
    assert await wait_for(rig.waiting_on_v1)

    await rig.deploy_v2()
    done = await asyncio.wait_for(call, PROMPT_S)

    assert done.status == 200 and done.cold_start
    assert [c.entry.version for c in rig.managers.started] == [2]


async def test_a_request_holding_a_stale_version_never_runs_it(rig):
    await rig.deploy_v2()

    done = await rig.invoke()  # it resolved v1 before the deploy (a cache)

    assert done.status == 200
    assert [c.entry.version for c in rig.managers.started] == [2]
    assert rig.records.records[0]["version"] == 2


async def test_a_request_waiting_on_a_deleted_function_is_told_at_once(rig):
    await rig.pool.lease(container("busy", 1), 60)
    admission = Admission("key-1", 0.0, 0, "acme", 1, 60.0)
    call = asyncio.create_task(rig.invoke(admission))
    assert await wait_for(rig.waiting_on_v1)

    del rig.versions.latest[V1.name]
    await rig.pool.retire(V1.name, V1.version)

    with pytest.raises(NotFound):
        await asyncio.wait_for(call, PROMPT_S)
    assert rig.transport.posts == [] and rig.managers.started == []
    assert await rig.redis.zrange(keys.ns_inflight("acme"), 0, -1) == []
    assert not await rig.waiting_on_v1()


async def test_a_request_queued_after_a_refused_cold_start_sees_the_deploy_it_missed(rig):
    async def full_once_v1_is_retired(fv):
        # the deploy lands while the Manager is asked: nobody waits on v1 yet to be woken
        await rig.deploy_v2(idle=container("fresh", 2))
        raise NoCapacity("every Manager is at capacity", full=True)

    rig.managers.cold_start = full_once_v1_is_retired

    done = await asyncio.wait_for(rig.invoke(), PROMPT_S)

    assert done.status == 200 and rig.records.records[0]["version"] == 2
    assert [p.address for p in rig.transport.posts] == ["10.0.2.1:9000"]
    assert not await rig.waiting_on_v1()

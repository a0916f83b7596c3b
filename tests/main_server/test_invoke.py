"""The invoke path's retry policy and bookkeeping (main_server.invoke and main_server.acquire)
on fakeredis, with containers and a Manager scripted by the fakes of tests/fakes.py.

Each case says what the containers (and the Manager) do; the test checks what the caller got,
what the fakes were asked, what is left in the pool, and the execution record written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import fakeredis
import pytest

from hotpool.main_server.invoke import Invocation, Invoker, max_delivery_attempts
from hotpool.main_server.ports import CallFailed
from hotpool.shared import keys
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvocationTimeout,
    NoCapacity,
    NotDelivered,
    RuntimeImageMissing,
    TooManyRequests,
)
from hotpool.shared.models import PoolEntry
from hotpool.shared.pool import Admission, Pool
from hotpool.shared.redis_conn import text
from hotpool.shared.settings import Settings
from tests.fakes import (
    ECHO_V1,
    FakeManagers,
    FakeRecords,
    FakeTransport,
    FakeVersions,
    Outcome,
    raised,
    success,
)
from tests.stack import wait_for

pytestmark = pytest.mark.unit

FV = ECHO_V1
SETTINGS = Settings(
    lease_grace_s=1.0, queue_timeout_s=0.3, cold_start_timeout_s=2.0, redis_socket_timeout_s=0.2
)
OOM = {"exit_code": 137, "oom_killed": True, "error_type": "OutOfMemory",
       "message": "the function exceeded its memory limit of 128 MB and was killed"}  # fmt: skip
EXITED = {"exit_code": 3, "oom_killed": False, "error_type": "RuntimeExited",
          "message": "the function's runtime exited with code 3"}  # fmt: skip


def address_of(container_id: str) -> str:
    """The address the fakes give a container: warm-N is 10.0.0.N, cold-N is 10.1.0.N."""
    kind, n = container_id.split("-")
    return f"10.{0 if kind == 'warm' else 1}.0.{n}:9000"


def warm(n: int) -> PoolEntry:
    return PoolEntry(FV.name, FV.version, "m1", f"warm-{n}", address_of(f"warm-{n}"))


class Rig:
    """An Invoker on its own fakeredis, with a scripted transport and Manager."""

    def __init__(self, *answers: Outcome) -> None:
        self.server = fakeredis.FakeServer()
        self.redis = fakeredis.FakeAsyncRedis(server=self.server)
        self.pool = Pool(self.redis)
        self.transport = FakeTransport(*answers)
        self.managers = FakeManagers()
        self.records = FakeRecords()
        self.invoker = Invoker(
            SETTINGS,
            pool=self.pool,
            managers=self.managers,
            containers=self.transport,
            records=self.records,
            versions=FakeVersions(FV),
        )

    async def warm(self, count: int) -> None:
        for n in range(count):
            assert await self.pool.put_back(warm(n))

    async def invoke(self, admission: Admission | None = None) -> Invocation:
        async with self.invoker.invocation(FV, b'{"n": 1}', "req-1", admission) as done:
            return done

    async def idle(self) -> list[str]:
        """Container ids in the version's pool list, in order."""
        raw = await self.redis.lrange(keys.pool(FV.name, FV.version), 0, -1)
        return [PoolEntry.decode(r).container_id for r in raw]

    async def leased(self) -> list[str]:
        return [
            PoolEntry.decode(r).container_id for r in await self.redis.zrange(keys.LEASES, 0, -1)
        ]

    async def tokens(self, key: str) -> list[str]:
        return [text(t) for t in await self.redis.zrange(key, 0, -1)]

    def posted_to(self) -> list[str]:
        return [p.address for p in self.transport.posts]


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(*answers: Outcome) -> Rig:
        made.append(Rig(*answers))
        return made[-1]

    yield make
    for r in made:
        await r.redis.aclose()


# --- what a call's outcome does ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    warm: int  # idle containers before the call: warm-0, warm-1, ...
    answers: tuple[Outcome, ...]  # what each POST gets, in order
    status: int | None = None  # the invocation's HTTP status, when it returns
    raises: type[HotpoolError] | None = None
    function_error: str | None = None  # the error type the caller sees, if any
    posted: tuple[str, ...] = ("warm-0",)  # the containers called, in order
    discarded: tuple[tuple[str, bool], ...] = ()  # removed through the Manager: (id, failed)
    idle_after: tuple[str, ...] = ()  # the pool list after the call
    record: tuple[str, str | None] | None = None  # (status, error type); None: no record
    exits: dict[str, dict[str, object]] = field(default_factory=dict)  # Manager's exit reports
    counters: dict[str, int] = field(default_factory=dict)


REFUSED = NotDelivered("cannot connect to the container: Connection refused")
CASES = {
    "warm hit": Case(
        1, (success("hi"),), status=200, idle_after=("warm-0",), record=("success", None)
    ),
    "the handler raised": Case(
        1, (raised("ZeroDivisionError", "division by zero"),), status=500,
        function_error="ZeroDivisionError", idle_after=("warm-0",),
        record=("error", "ZeroDivisionError"),
    ),
    "refused connect: evicted, retried on the next container": Case(
        2, (REFUSED, success(1)), status=200, posted=("warm-0", "warm-1"),
        discarded=(("warm-0", False),), idle_after=("warm-1",), record=("success", None),
        counters={"sent_to_dead": 1},
    ),
    "refused connect: retried on a cold start": Case(
        1, (REFUSED, success(1)), status=200, posted=("warm-0", "cold-1"),
        discarded=(("warm-0", False),), idle_after=("cold-1",), record=("success", None),
        counters={"sent_to_dead": 1, "cold_starts": 1},
    ),
    "refused on every try: no container could be reached": Case(
        4, (REFUSED,) * max_delivery_attempts, raises=ContainerFailed,
        posted=("warm-0", "warm-1", "warm-2"),
        discarded=(("warm-0", False), ("warm-1", False), ("warm-2", False)),
        idle_after=("warm-3",), counters={"sent_to_dead": 3},
    ),
    "broken call, the container was OOM-killed": Case(
        2, (CallFailed("connection reset"),), raises=FunctionError,
        function_error="OutOfMemory", discarded=(("warm-0", True),), idle_after=("warm-1",),
        record=("error", "OutOfMemory"), exits={"warm-0": OOM},
        counters={"container_failed": 1},
    ),
    "broken call, the runtime exited": Case(
        1, (CallFailed("connection closed"),), raises=FunctionError,
        function_error="RuntimeExited", discarded=(("warm-0", True),),
        record=("error", "RuntimeExited"), exits={"warm-0": EXITED},
    ),
    "broken call, no exit status: never sent again": Case(
        2, (CallFailed("connection reset"),), raises=ContainerFailed,
        discarded=(("warm-0", True),), idle_after=("warm-1",),
        record=("failed", "ContainerFailed"), counters={"container_failed": 1},
    ),
    "timeout: the container is discarded": Case(
        2, (TimeoutError(),), raises=InvocationTimeout, discarded=(("warm-0", False),),
        idle_after=("warm-1",), record=("timeout", "Timeout"), counters={"timeouts": 1},
    ),
    "garbage: not JSON": Case(
        1, ((200, b"<html>oops</html>"),), raises=ContainerFailed,
        discarded=(("warm-0", True),), record=("failed", "ContainerFailed"),
    ),
    "garbage: an error status": Case(
        1, ((409, b'{"error": {"type": "Busy"}}'),), raises=ContainerFailed,
        discarded=(("warm-0", True),), record=("failed", "ContainerFailed"),
    ),
    "garbage: JSON without a status": Case(
        1, ((200, b'{"result": 1}'),), raises=ContainerFailed,
        discarded=(("warm-0", True),), record=("failed", "ContainerFailed"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_call_outcome(rig, case: Case):
    r = rig(*case.answers)
    r.managers.exits.update(case.exits)
    await r.warm(case.warm)

    if case.raises is None:
        done = await r.invoke()
        assert (done.status, done.function_error) == (case.status, case.function_error)
    else:
        with pytest.raises(case.raises) as caught:
            await r.invoke()
        if case.function_error is not None:
            assert isinstance(caught.value, FunctionError)
            assert caught.value.error_type == case.function_error

    assert r.posted_to() == [address_of(c) for c in case.posted]
    assert r.managers.removed == list(case.discarded)
    # a discarded container's kept connections are dropped too
    assert r.transport.forgotten == [address_of(c) for c, _ in case.discarded]
    assert await r.idle() == list(case.idle_after)
    assert await r.leased() == []
    if case.record is None:  # it reached no container: no record
        assert r.records.records == []
    else:
        [record] = r.records.records
        assert (record["status"], (record.get("error") or {}).get("type")) == case.record
        assert record["container_id"] == case.posted[-1]
        assert record["request_id"] == "req-1" and record["duration_ms"] >= 0
    for name, count in case.counters.items():
        assert r.invoker.counters[name] == count, name


async def test_the_call_carries_the_event_request_id_and_deadline(rig):
    r = rig(success({"ok": True}))
    await r.warm(1)

    done = await r.invoke()

    assert done.body == b'{"ok":true}' and not done.cold_start
    [post] = r.transport.posts
    assert (post.path, post.body) == ("/invoke", b'{"n": 1}')
    assert post.headers["X-Hotpool-Request-Id"] == "req-1"
    assert post.headers["X-Hotpool-Deadline-Ms"] == "5000"
    assert post.timeout_s > FV.config.timeout_s


# --- cold starts and capacity ---------------------------------------------------------------------


async def test_a_miss_cold_starts_leases_and_calls_the_new_container(rig):
    r = rig(success("cold"), success("warm"))

    first = await r.invoke()
    second = await r.invoke()

    [cold] = r.managers.started
    assert (first.status, first.cold_start) == (200, True)
    assert (second.status, second.cold_start) == (200, False)
    assert r.posted_to() == [cold.entry.address] * 2  # the second call found it warm
    assert await r.idle() == ["cold-1"] and await r.leased() == []
    assert await r.tokens(keys.starting(FV.name, FV.version)) == []
    record = r.records.records[0]
    assert record["cold_start"] is True and record["init_ms"] == cold.total_ms
    assert record["cold_start_breakdown"] == cold.breakdown()
    assert r.records.records[1]["cold_start"] is False


async def test_a_cold_start_whose_code_fails_to_load_is_an_init_error(rig):
    r = rig()
    r.managers.refuse(FunctionError("No module named 'numpy'", error_type="ImportError"))

    with pytest.raises(FunctionError) as caught:
        await r.invoke()

    assert caught.value.error_type == "ImportError"
    assert r.transport.posts == []
    [record] = r.records.records
    assert record["status"] == "error" and record["cold_start"] is True
    assert record["error"] == {
        "type": "ImportError", "message": "No module named 'numpy'", "phase": "init"
    }  # fmt: skip
    assert await r.tokens(keys.starting(FV.name, FV.version)) == []
    assert await r.idle() == [] and await r.leased() == []


REFUSALS = {
    "every Manager full: queued, then 429": (
        NoCapacity("every Manager is at capacity", full=True),
        TooManyRequests,
    ),
    "no Manager available: 503 at once": (NoCapacity("no Manager is available"), NoCapacity),
    "runtime image missing": (RuntimeImageMissing("no image"), RuntimeImageMissing),
}


@pytest.mark.parametrize(("refusal", "raises"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_cold_start(rig, refusal, raises):
    r = rig()
    r.managers.refuse(refusal)

    with pytest.raises(raises) as caught:
        await r.invoke()

    if raises is TooManyRequests:
        assert caught.value.retry_after_s >= 1
        assert r.invoker.counters["plan_queue"] == 1
        assert r.invoker.counters["rejected_429"] == 1
    assert r.transport.posts == [] and r.records.records == []
    assert await r.tokens(keys.starting(FV.name, FV.version)) == []
    assert await r.tokens(keys.waiting(FV.name, FV.version)) == []
    assert await r.leased() == []


async def test_a_request_queued_on_a_full_cluster_takes_a_released_container(rig):
    r = rig(success("queued"))
    r.managers.refuse(NoCapacity("every Manager is at capacity", full=True))

    async def release_one() -> None:
        async def queued() -> bool:
            return await r.tokens(keys.waiting(FV.name, FV.version)) == ["req-1"]

        assert await wait_for(queued)
        await r.pool.put_back(warm(0))

    done, _ = await asyncio.gather(r.invoke(), release_one())

    assert (done.status, done.body) == (200, b'"queued"')
    assert r.posted_to() == [address_of("warm-0")]
    assert r.invoker.counters["waited_and_got"] == 1
    assert await r.idle() == ["warm-0"] and await r.leased() == []


# --- release -------------------------------------------------------------------------------------


async def test_a_container_of_a_version_retired_during_the_call_is_removed(rig):
    r = rig(success(1))
    await r.warm(1)

    async with r.invoker.invocation(FV, b"{}", "req-1") as done:
        assert await r.pool.retire(FV.name, FV.version) == []  # the one container is leased
        assert done.status == 200

    assert r.managers.removed == [("warm-0", False)]
    assert await r.idle() == [] and await r.leased() == []


async def test_redis_unreachable_at_release_is_not_the_callers_problem(rig):
    r = rig(success(1))
    await r.warm(1)
    admission = Admission("key-1", 0.0, 0, "acme", 5, 30.0)

    async with r.invoker.invocation(FV, b"{}", "req-1", admission) as done:
        r.server.connected = False

    assert done.status == 200 and r.invoker.in_flight == 0
    r.server.connected = True
    # the lease and the namespace slot stay behind and expire: the reaper reclaims the container
    assert await r.leased() == ["warm-0"] and await r.idle() == []
    assert await r.tokens(keys.ns_inflight("acme")) == ["req-1"]


async def test_a_retried_request_holds_one_namespace_slot_and_gives_it_back(rig):
    r = rig(REFUSED, success(1))
    await r.warm(2)
    admission = Admission("key-1", 0.0, 0, "acme", 1, 30.0)  # room for one call in flight

    done = await r.invoke(admission)

    assert done.status == 200 and r.posted_to() == [address_of("warm-0"), address_of("warm-1")]
    assert await r.tokens(keys.ns_inflight("acme")) == []
    assert await r.idle() == ["warm-1"] and await r.leased() == []

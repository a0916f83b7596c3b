"""The Redis warm pool: acquire, release, lease, evict, retire, reclaim — one Lua script each.

Keys and scripts live in ``shared.keys``; this module only runs them. Time comes from the
injected clock so tests can drive it; ``plan_miss`` is the herd-control decision as a pure
function, which the ACQUIRE_OR_PLAN script mirrors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis

from hotpool.shared import keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.redis_conn import text


class Plan(Enum):
    """What a request does when it finds no idle container."""

    LEASE = "lease"  # it got one after all
    RETIRED = "retired"  # the version was retired (a deploy or delete): move to the current one
    START = "start"  # it starts a container (a cold start)
    WAIT = "wait"  # enough cold starts are under way: wait for whichever container comes
    QUEUE = "queue"  # the function is at max_concurrency: wait for a release, or 429
    OVER_RATE = "rate"  # refused: the key is over its request rate (``Admission``)
    NAMESPACE_FULL = "namespace"  # refused: the namespace has its limit of calls in flight


@dataclass(frozen=True)
class Admission:
    """What an invocation must pass in the same round trip as its acquire: its key's rate
    bucket (skipped when ``rate_per_s`` is 0: metered already) and a slot among its
    namespace's calls in flight, held under the request's token until ``release``."""

    key_id: str
    rate_per_s: float
    burst: int
    namespace: str
    namespace_limit: int
    hold_s: float  # the slot frees itself after this long, should its caller die


@dataclass(frozen=True)
class Planned:
    """The answer of ``acquire_or_plan``."""

    plan: Plan
    entry: PoolEntry | None = None  # with Plan.LEASE
    retry_after_s: float = 0.0  # with Plan.OVER_RATE


def plan_miss(
    *,
    starting: int,
    waiting: int,
    leased: int,
    max_concurrency: int,
    waiters_per_start: int,
    retired: bool = False,
) -> Plan:
    """The herd-control decision on a miss, over a snapshot of one function version.

    A retired version takes nobody: nothing refills its list, so the request must move on.

    Each cold start under way may carry ``waiters_per_start`` waiting requests, which take
    whichever container is released or arrives first; only a request beyond that starts
    another container, and never past ``max_concurrency`` containers (leased + starting,
    the idle list being empty).
    """
    if retired:
        return Plan.RETIRED
    if leased + starting >= max_concurrency:
        return Plan.QUEUE  # at the limit: only a release can serve it, within queue_timeout_s
    if starting * waiters_per_start > waiting:
        return Plan.WAIT
    return Plan.START


@dataclass(frozen=True)
class PoolCounts:
    """A snapshot of the pool for /system/status."""

    idle: dict[str, int]  # "function:version" -> idle containers
    leased: dict[str, int]  # "function:version" -> leased (busy) containers
    starting: dict[str, int]  # "function:version" -> cold starts under way


class Pool:
    """The warm pool of idle containers, shared by every Main and Manager through Redis."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        register = redis.register_script
        self._acquire = register(keys.ACQUIRE)
        self._acquire_or_plan = register(keys.ACQUIRE_OR_PLAN)
        self._enter = register(keys.ENTER)
        self._lease = register(keys.LEASE)
        self._release = register(keys.RELEASE)
        self._put_back = register(keys.PUT_BACK)
        self._reclaim = register(keys.RECLAIM)
        self._remove_idle = register(keys.REMOVE_IDLE)
        self._evict = register(keys.EVICT)
        self._retire = register(keys.RETIRE)
        self._lock = register(keys.LOCK)
        self._unlock = register(keys.UNLOCK)

    async def acquire(self, function: str, version: int, lease_s: float) -> PoolEntry | None:
        """Take an idle container of this version and lease it, or None when the list is empty."""
        raw = await self._acquire(
            keys=[keys.pool(function, version), keys.LEASES, keys.fv(function, version)],
            args=[self._clock() + lease_s],
        )
        return PoolEntry.decode(raw) if raw is not None else None

    async def acquire_or_plan(
        self,
        function: str,
        version: int,
        *,
        lease_s: float,
        token: str,
        max_concurrency: int,
        waiters_per_start: int,
        start_s: float,
        wait_s: float,
        admission: Admission | None = None,
    ) -> Planned:
        """Lease an idle container, or register the request as starting or waiting.

        With an ``admission`` the request first takes a token from its key's rate bucket and
        a slot of its namespace (refused: Plan.OVER_RATE or Plan.NAMESPACE_FULL, nothing
        changed but the bucket), all in the same script.
        """
        now = self._clock()
        keys_ = [
            keys.pool(function, version),
            keys.LEASES,
            keys.fv(function, version),
            keys.starting(function, version),
            keys.waiting(function, version),
            keys.retired(function, version),
        ]
        args: list[float | int | str] = [
            now + lease_s, now, max_concurrency, waiters_per_start, token,
            now + start_s, now + wait_s,
        ]  # fmt: skip
        if admission is None:
            plan, raw = await self._acquire_or_plan(keys=keys_, args=args)
        else:
            keys_ += [keys.bucket(admission.key_id), keys.ns_inflight(admission.namespace)]
            args += [
                admission.rate_per_s, admission.burst, admission.namespace_limit,
                now + admission.hold_s,
            ]  # fmt: skip
            plan, raw = await self._enter(keys=keys_, args=args)
        decided = Plan(text(plan))
        if decided is Plan.LEASE:
            return Planned(decided, PoolEntry.decode(raw))
        if decided is Plan.OVER_RATE:
            return Planned(decided, retry_after_s=float(text(raw)))
        return Planned(decided)

    async def exit(self, namespace: str, token: str) -> None:
        """Give up a namespace slot taken with an ``Admission`` (``release`` does it too)."""
        await self._redis.zrem(keys.ns_inflight(namespace), token)

    async def lease(self, entry: PoolEntry, lease_s: float, *, token: str = "") -> None:
        """Lease a container that is not in the list (a fresh cold start, or one taken by
        ``wait_for``), dropping the request's starting or waiting token."""
        await self._lease(
            keys=[
                keys.LEASES,
                keys.fv(entry.function, entry.version),
                keys.starting(entry.function, entry.version),
            ],
            args=[entry.encode(), self._clock() + lease_s, token],
        )
        if token:
            await self._redis.zrem(keys.waiting(entry.function, entry.version), token)

    async def start_failed(self, function: str, version: int, token: str) -> None:
        await self._redis.zrem(keys.starting(function, version), token)

    async def add_waiting(self, function: str, version: int, token: str, wait_s: float) -> None:
        await self._redis.zadd(keys.waiting(function, version), {token: self._clock() + wait_s})

    async def stop_waiting(self, function: str, version: int, token: str) -> None:
        await self._redis.zrem(keys.waiting(function, version), token)

    async def wait_for(
        self, function: str, version: int, timeout_s: float
    ) -> PoolEntry | Plan | None:
        """Block until a container of this version is pushed (BLPOP), or None at the timeout;
        ``Plan.RETIRED`` when the version is retired meanwhile (its wake list got a sentinel).

        The caller must ``lease`` what it gets: until then the container is in neither the
        list nor a lease, and the reaper returns it to the pool if the caller dies.
        """
        pool, wake = keys.pool(function, version), keys.wake(function, version)
        got = await self._redis.blpop([pool, wake], timeout=timeout_s)
        if not got:
            return None
        return Plan.RETIRED if text(got[0]) == wake else PoolEntry.decode(got[1])

    async def is_retired(self, function: str, version: int) -> bool:
        return bool(await self._redis.exists(keys.retired(function, version)))

    async def release(self, entry: PoolEntry, *, namespace: str = "", token: str = "") -> int:
        """Give a leased container back, and the namespace slot held under ``token``.

        Returns 1 when it is back in the pool, 0 when its version is retired (the caller
        removes it), -1 when its lease was already gone (reclaimed or evicted; nothing to do).
        """
        return int(
            await self._release(
                keys=[
                    keys.pool(entry.function, entry.version),
                    keys.LEASES,
                    keys.retired(entry.function, entry.version),
                    keys.idle(entry.manager_id),
                    keys.fv(entry.function, entry.version),
                    keys.ns_inflight(namespace),
                ],
                args=[entry.encode(), self._clock(), token if namespace else ""],
            )
        )

    async def put_back(self, entry: PoolEntry) -> bool:
        """Return an unleased container to its list; False when its version is retired."""
        pushed = await self._put_back(
            keys=[
                keys.pool(entry.function, entry.version),
                keys.retired(entry.function, entry.version),
                keys.idle(entry.manager_id),
            ],
            args=[entry.encode(), self._clock()],
        )
        return int(pushed) == 1

    async def reclaim(self, entry: PoolEntry) -> bool:
        """Take over an expired lease (the reaper); False if it was released meanwhile."""
        taken = await self._reclaim(
            keys=[keys.LEASES, keys.fv(entry.function, entry.version)],
            args=[entry.encode(), self._clock()],
        )
        return int(taken) == 1

    async def remove_idle(self, entry: PoolEntry) -> bool:
        """Take an idle container out of its list; False means it is in use (leave it alone)."""
        removed = await self._remove_idle(
            keys=[keys.pool(entry.function, entry.version), keys.idle(entry.manager_id)],
            args=[entry.encode()],
        )
        return int(removed) == 1

    async def evict(self, entry: PoolEntry) -> None:
        """Forget a dead or killed container: out of its list, its lease and the idle set."""
        await self._evict(
            keys=[
                keys.pool(entry.function, entry.version),
                keys.LEASES,
                keys.idle(entry.manager_id),
                keys.fv(entry.function, entry.version),
            ],
            args=[entry.encode()],
        )

    async def retire(self, function: str, version: int) -> list[PoolEntry]:
        """Stop a version taking containers back and wake its waiters; return its idle
        containers for removal."""
        raw = await self._retire(
            keys=[
                keys.pool(function, version),
                keys.retired(function, version),
                keys.waiting(function, version),
                keys.wake(function, version),
            ],
            args=[keys.retired_marker_ttl_s, self._clock(), keys.wake_ttl_s, keys.WAKE_SENTINEL],
        )
        return [PoolEntry.decode(item) for item in raw]

    async def unretire(self, function: str, version: int) -> None:
        await self._redis.delete(keys.retired(function, version), keys.wake(function, version))

    async def idle_since(self, manager_id: str, cutoff: float) -> list[PoolEntry]:
        """Entries of a Manager that have been idle since before ``cutoff``."""
        raw = await self._redis.zrangebyscore(keys.idle(manager_id), "-inf", cutoff)
        return [PoolEntry.decode(item) for item in raw]

    async def idle_scores(self, manager_id: str) -> list[tuple[PoolEntry, float]]:
        """Every idle entry of a Manager with the time it went idle, longest idle first."""
        raw = await self._redis.zrange(keys.idle(manager_id), 0, -1, withscores=True)
        return [(PoolEntry.decode(item), float(score)) for item, score in raw]

    async def idle_count(self, manager_id: str) -> int:
        """How many containers of a Manager sit idle in their lists (a cold start may evict
        them). The idle set alone overcounts: a lease takes an entry out of its list only."""
        entries = [entry for entry, _ in await self.idle_scores(manager_id)]
        if not entries:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.lpos(keys.pool(entry.function, entry.version), entry.encode())
            found = await pipe.execute()
        return sum(1 for position in found if position is not None)

    async def expired_leases(self, now: float) -> list[PoolEntry]:
        raw = await self._redis.zrangebyscore(keys.LEASES, "-inf", now)
        return [PoolEntry.decode(item) for item in raw]

    async def placed(self) -> set[str]:
        """Every entry that is in a pool list or leased, encoded."""
        found = {text(raw) for raw in await self._redis.zrange(keys.LEASES, 0, -1)}
        async for key in self._redis.scan_iter(match=keys.POOL_PREFIX + "*", count=500):
            found.update(text(raw) for raw in await self._redis.lrange(key, 0, -1))
        return found

    async def is_placed(self, entry: PoolEntry) -> bool:
        """Whether this entry is leased or in its pool list now."""
        raw = entry.encode()
        if await self._redis.zscore(keys.LEASES, raw) is not None:
            return True
        return await self._redis.lpos(keys.pool(entry.function, entry.version), raw) is not None

    async def hold_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or renew a lock held by ``owner``; True while ``owner`` holds it."""
        return int(await self._lock(keys=[name], args=[owner, int(ttl_s * 1000)])) == 1

    async def release_lock(self, name: str, owner: str) -> None:
        await self._unlock(keys=[name], args=[owner])

    async def counts(self) -> PoolCounts:
        idle: dict[str, int] = {}
        async for key in self._redis.scan_iter(match=keys.POOL_PREFIX + "*", count=500):
            name = text(key)
            length = await self._redis.llen(name)
            if length:
                idle[name.removeprefix(keys.POOL_PREFIX)] = length
        leased: dict[str, int] = {}
        for raw in await self._redis.zrange(keys.LEASES, 0, -1):
            entry = PoolEntry.decode(raw)
            label = f"{entry.function}:{entry.version}"
            leased[label] = leased.get(label, 0) + 1
        starting: dict[str, int] = {}
        now = self._clock()
        async for key in self._redis.scan_iter(match=keys.STARTING_PREFIX + "*", count=500):
            n = await self._redis.zcount(key, now, "+inf")
            if n:
                starting[text(key).removeprefix(keys.STARTING_PREFIX)] = n
        return PoolCounts(idle=idle, leased=leased, starting=starting)

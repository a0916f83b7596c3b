"""Getting a container for one request: a warm one from the pool, a cold start, or a wait.

Herd control (ADR-001's competitive consumption): a request that misses while enough cold
starts are under way for the version waits on the list (BLPOP) and takes whichever container
is released or arrives first, instead of starting one more. No version ever has more than its
``max_concurrency`` containers, nor a Manager more than its capacity; past that a request waits
up to ``queue_timeout_s`` for a release, then gets 429 with Retry-After.

A deploy (or delete) retires a version: nothing refills its list any more, so its waiters are
woken at once (a sentinel on the version's wake list) and move to the function's current
version, as does a request that misses on a version already retired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hotpool.main_server.auth import namespace_full, over_rate
from hotpool.main_server.ports import ColdStart, FunctionVersions, ManagerApi
from hotpool.shared.errors import FunctionError, NoCapacity, TooManyRequests
from hotpool.shared.models import FunctionVersion, PoolEntry
from hotpool.shared.pool import Admission, Plan, Pool
from hotpool.shared.redis_conn import REDIS_ERRORS, redis_errors
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Acquired:
    """A leased container, the version it runs (the request's, or the current one when the
    request's was retired before it got a container), and the cold start that made it."""

    entry: PoolEntry
    fv: FunctionVersion
    cold: ColdStart | None = None


class Acquirer:
    """Hands each request one leased container of its function version."""

    def __init__(
        self, settings: Settings, *, pool: Pool, managers: ManagerApi, versions: FunctionVersions
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._managers = managers
        self._versions = versions
        self.counters: Counter[str] = Counter()

    async def acquire(
        self,
        fv: FunctionVersion,
        record: dict[str, Any],
        *,
        token: str,
        admission: Admission | None = None,
    ) -> Acquired:
        """A leased container for one request; with ``admission`` the request is first
        metered and admitted to its namespace in the same script (429 when refused)."""
        with redis_errors("the pool"):
            return await self._acquire(fv, record, token, admission)

    async def _acquire(
        self,
        fv: FunctionVersion,
        record: dict[str, Any],
        token: str,
        admission: Admission | None,
    ) -> Acquired:
        settings = self._settings
        deadline = time.monotonic() + settings.cold_start_timeout_s
        while True:
            lease_s = fv.config.timeout_s + settings.lease_grace_s
            planned = await self._pool.acquire_or_plan(
                fv.name,
                fv.version,
                lease_s=lease_s,
                token=token,
                max_concurrency=fv.config.max_concurrency,
                waiters_per_start=settings.waiters_per_start,
                start_s=settings.cold_start_timeout_s,
                wait_s=max(settings.cold_start_timeout_s, settings.queue_timeout_s) + 1,
                admission=admission,
            )
            plan = planned.plan
            if plan is Plan.LEASE:
                assert planned.entry is not None
                return Acquired(planned.entry, fv)
            if plan is Plan.OVER_RATE:
                assert admission is not None
                raise over_rate(admission.rate_per_s, planned.retry_after_s)
            if plan is Plan.NAMESPACE_FULL:
                assert admission is not None
                raise namespace_full(admission.namespace, admission.namespace_limit)
            admission = None  # admitted: a second plan must not take another slot
            if plan is Plan.RETIRED:
                fv = await self._current(fv, deadline)
                continue
            if plan is Plan.START:
                started = await self._start(fv, lease_s, token, record)
                if started is not None:
                    return started
                plan = Plan.QUEUE  # no Manager has room: queue like a full function
                await self._pool.add_waiting(fv.name, fv.version, token, settings.queue_timeout_s)
            self.counters[f"plan_{plan.value}"] += 1
            wait_s = settings.queue_timeout_s if plan is Plan.QUEUE else deadline - time.monotonic()
            got = await self._wait(fv, max(0.0, wait_s))
            if isinstance(got, PoolEntry):
                await self._pool.lease(got, lease_s, token=token)
                self.counters["waited_and_got"] += 1
                return Acquired(got, fv)
            await self._pool.stop_waiting(fv.name, fv.version, token)
            if got is Plan.RETIRED:
                fv = await self._current(fv, deadline)
                continue
            if plan is Plan.QUEUE or time.monotonic() >= deadline:
                raise self._gave_up(fv, plan)
            # the cold starts we waited for failed or went to others: plan again

    def _gave_up(self, fv: FunctionVersion, plan: Plan) -> TooManyRequests | NoCapacity:
        """What a request that waited in vain is told: 429 when it queued, else 503."""
        settings = self._settings
        if plan is Plan.QUEUE:
            self.counters["rejected_429"] += 1
            return TooManyRequests(
                f"{fv.name} is at its concurrency limit ({fv.config.max_concurrency} "
                "containers) or the cluster is full; retry later",
                retry_after_s=max(1.0, settings.queue_timeout_s / 2),
            )
        return NoCapacity(
            f"no container of {fv.name} became free within {settings.cold_start_timeout_s:g} s"
        )

    async def _current(self, fv: FunctionVersion, deadline: float) -> FunctionVersion:
        """The function's current version, for a request whose version was retired before it
        got a container.

        As with Lambda's ``$LATEST``, a request that was waiting when a deploy landed runs the
        new version; one that arrives after the deploy never runs the old one (it finds the
        old list empty and retired). The request keeps its one admission: it is not metered
        again.
        """
        if time.monotonic() >= deadline:
            raise self._gave_up(fv, Plan.WAIT)
        self.counters["moved_to_current_version"] += 1
        return await self._versions.current(fv.name)

    async def _start(
        self, fv: FunctionVersion, lease_s: float, token: str, record: dict[str, Any]
    ) -> Acquired | None:
        """A cold start; None when no Manager has room."""
        self.counters["cold_starts"] += 1
        try:
            cold = await self._managers.cold_start(fv)
        except NoCapacity as exc:
            await self._pool.start_failed(fv.name, fv.version, token)
            self.counters["no_capacity"] += 1
            if exc.details.get("full"):
                return None  # the cluster is full: queue for a release
            raise
        except FunctionError as exc:
            await self._pool.start_failed(fv.name, fv.version, token)
            record.update(
                status="error",
                cold_start=True,
                error={"type": exc.error_type, "message": exc.message, "phase": "init"},
                # what the module printed before it failed goes to the record, not the client
                stdout=str(exc.details.pop("stdout", "")),
                stderr=str(exc.details.pop("stderr", "")),
            )
            raise
        except BaseException:
            await asyncio.shield(self._pool.start_failed(fv.name, fv.version, token))
            raise
        try:
            await self._pool.lease(cold.entry, lease_s, token=token)
        except REDIS_ERRORS:
            await self._managers.remove(cold.entry)
            raise
        return Acquired(cold.entry, fv, cold)

    async def _wait(self, fv: FunctionVersion, timeout_s: float) -> PoolEntry | Plan | None:
        """BLPOP in slices shorter than the Redis socket timeout, up to ``timeout_s``;
        ``Plan.RETIRED`` as soon as the version is retired."""
        end = time.monotonic() + timeout_s
        slice_s = max(0.1, self._settings.redis_socket_timeout_s / 2)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            # a request that queued after a refused cold start registered outside the plan's
            # script, so a retirement just before found it not waiting yet (no sentinel)
            if await self._pool.is_retired(fv.name, fv.version):
                return Plan.RETIRED
            got = await self._pool.wait_for(fv.name, fv.version, min(left, slice_s))
            if got is not None:
                return got

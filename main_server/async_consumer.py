"""The asynchronous trigger: every Main replica consumes the event streams and runs each event
through the one invoke path (admission, lease, call, release, record).

At least once: an event stays pending on the replica that read it until that replica ends,
retries or defers it in one script. A replica that dies leaves its entries pending and silent;
another takes them after ``async_consumer_timeout_s`` and runs them again once the function's
timeout + lease grace (+ the cold-start bound) has passed since the attempt began
(``shared.async_keys.RECLAIM``), so two attempts never overlap. What to do with an
attempt's outcome is ``async_outcome.decide``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from hotpool.main_server.async_outcome import Decision, Outcome, decide, destination_event
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invoker
from hotpool.main_server.stream import collect
from hotpool.shared.async_queue import AsyncQueue, Attempt, Entry, new_epoch
from hotpool.shared.errors import HotpoolError, NotFound
from hotpool.shared.models import FunctionVersion
from hotpool.shared.pool import Admission
from hotpool.shared.redis_conn import REDIS_ERRORS
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

# a blocked read returns at least this often, so a stop, a lost group or a namespace that
# queued its first event (its stream is read from the next turn on) is noticed
read_block_ms = 1000
# how often the list of namespaces with a stream is read again
namespaces_interval_s = 1.0
# how often due retries are moved back into the stream (their delays' resolution)
move_interval_s = 0.05
# how often the queue's epoch marker is checked (a Redis that lost its data)
epoch_interval_s = 1.0
# how long an event waits when async calls hold their whole share of its function
busy_defer_s = 0.5
# pause after a Redis error before the loops try again
redis_retry_s = 0.5
# how long an attempt that ran keeps trying to write its outcome while Redis is unreachable;
# past it the entry is left to the reclaim path and the event runs again
finish_retry_max_s = 60.0


class AsyncConsumer:
    """Runs queued asynchronous events on this replica, ``async_concurrency`` at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: AsyncQueue,
        invoker: Invoker,
        functions: FunctionService,
        name: str | None = None,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._invoker = invoker
        self._functions = functions
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{new_epoch()[:6]}"
        self.counters: Counter[str] = Counter()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._entries: dict[str, Entry] = {}  # the entries being run here, by entry id
        self._local: Counter[str] = Counter()  # events running here, by namespace
        self._namespaces: list[str] = []
        self._turn = 0  # where the next read starts in the namespaces, round robin
        self._slot_free = asyncio.Event()
        self._epoch: str | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run_forever(self) -> None:
        """Read and run events until ``stop``; the housekeeping runs beside it."""
        housekeeping = asyncio.create_task(
            self._supervised(self._housekeeping), name="async-housekeeping"
        )
        try:
            await self._supervised(self._consume)
        finally:
            await _stop_task(housekeeping)

    async def _supervised(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` again after an error nobody foresaw: a replica that stopped consuming
        without a word would leave its share of the queue to the others for ever."""
        while not self._stopping:
            try:
                await loop()
            except Exception:
                self.counters["async_loop_errors"] += 1
                log.exception("async %s failed; starting it again", loop.__name__.strip("_"))
                await asyncio.sleep(redis_retry_s)

    async def stop(self, consuming: asyncio.Task[None], drain_s: float = 0.0) -> None:
        """Stop reading, let the events running here end within ``drain_s``, then cancel the
        rest: they stay pending and another replica reruns them."""
        self._stopping = True
        self._slot_free.set()
        await _stop_task(consuming)
        tasks = list(self._running.values())
        if tasks and drain_s > 0:
            await asyncio.wait(tasks, timeout=drain_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(self) -> None:
        while not self._stopping:
            free = self._settings.async_concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                if self._epoch is None:
                    await self._check_epoch(startup=True)
                entries = await self._read(free)
            except ResponseError as exc:
                # a stream or its group went away (NOGROUP; UNBLOCKED when it went during a
                # blocked read, Redis 7): put the groups back, and let the epoch tell whether
                # Redis lost the queue
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                await self._queue.ensure_groups(self._namespaces)
                await self._check_epoch()
                continue
            except REDIS_ERRORS as exc:
                log.warning("async consumer: Redis unreachable (%s); retrying", exc)
                await asyncio.sleep(redis_retry_s)
                continue
            for entry in entries:
                self._start(entry)

    async def _read(self, free: int) -> list[Entry]:
        """Up to ``free`` entries, taking the namespaces in turn.

        A namespace may hold no more than its fair part of this replica's slots (all but one
        while it is the only one with events running here), so a tenant with a backlog of
        slow events cannot take every slot from the others. The namespaces are
        read a few at a time without blocking; only when none has an entry does the read
        block, on all of them, and what it brings beyond ``free`` is handed back at once.
        """
        eligible = self._eligible()
        if not eligible:  # no stream yet, or every namespace holds its part: wait for either
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), namespaces_interval_s)
            return []
        self._turn = (self._turn + 1) % len(eligible)
        order = eligible[self._turn :] + eligible[: self._turn]
        entries: list[Entry] = []
        start = 0
        while start < len(order) and len(entries) < free:
            chunk = order[start : start + free - len(entries)]
            start += len(chunk)
            entries += await self._queue.read(self.name, chunk, 1, None)
        if entries:
            return entries
        entries = await self._queue.read(self.name, order, 1, read_block_ms)
        for extra in entries[free:]:
            await self._queue.defer(extra)
        return entries[:free]

    def notice(self, namespace: str) -> None:
        """A namespace queued an event here: read its stream from the next turn on, instead
        of after the next refresh of the namespaces (a waiting read wakes at once; a blocked
        one within ``read_block_ms``)."""
        if namespace not in self._namespaces:
            self._namespaces = sorted([*self._namespaces, namespace])
            self._slot_free.set()

    def _eligible(self) -> list[str]:
        """The namespaces under their fair part of this replica's slots."""
        concurrency = self._settings.async_concurrency
        busy = [ns for ns, n in self._local.items() if n > 0]
        # one namespace alone keeps a slot free for whichever queues next, as that one's
        # first event would otherwise wait for a slow event of the first to end
        fair = max(1, concurrency - 1 if len(busy) <= 1 else -(-concurrency // len(busy)))
        return [ns for ns in self._namespaces if self._local[ns] < fair]

    def _start(self, entry: Entry) -> None:
        task = asyncio.create_task(self._run(entry), name=f"async-{entry.request_id}")
        self._running[entry.entry_id] = task
        self._entries[entry.entry_id] = entry
        self._local[entry.namespace] += 1
        task.add_done_callback(lambda _t, e=entry: self._done(e))

    def _done(self, entry: Entry) -> None:
        self._running.pop(entry.entry_id, None)
        self._entries.pop(entry.entry_id, None)
        self._local[entry.namespace] -= 1
        if self._local[entry.namespace] <= 0:
            del self._local[entry.namespace]
        self._slot_free.set()

    async def _housekeeping(self) -> None:
        """Move due retries back, renew this replica's claims, take a dead replica's events,
        and watch for a Redis that lost the queue."""
        timeout_s = self._settings.async_consumer_timeout_s
        renew_every_s = max(0.05, timeout_s / 4)
        last_renew = last_epoch = last_namespaces = 0.0
        while not self._stopping:
            await asyncio.sleep(move_interval_s)
            now = time.monotonic()
            try:
                self.counters["async_moved_due"] += await self._queue.move_due()
                if now - last_namespaces >= namespaces_interval_s:
                    last_namespaces = now
                    self._namespaces = await self._queue.namespaces()
                if now - last_renew >= renew_every_s:
                    last_renew = now
                    await self._queue.renew(self.name, list(self._entries.values()))
                    taken = await self._queue.reclaim(self.name, self._namespaces, timeout_s)
                    if taken:
                        self.counters["async_reclaimed"] += len(taken)
                        log.warning(
                            "took %d asynchronous events from a replica silent for %g s; "
                            "they run again once their attempt's deadline has passed",
                            len(taken), timeout_s,
                        )  # fmt: skip
                if now - last_epoch >= epoch_interval_s:
                    last_epoch = now
                    await self._check_epoch()
            except REDIS_ERRORS as exc:
                log.warning("async housekeeping: Redis unreachable (%s)", exc)
                await asyncio.sleep(redis_retry_s)

    async def _check_epoch(self, *, startup: bool = False) -> None:
        """Notice a Redis that came back without the queue: its accepted events are lost."""
        if not startup:
            current = await self._queue.epoch()
            if current is not None and current == self._epoch:
                return
        self._namespaces = await self._queue.namespaces()
        created = await self._queue.ensure_groups(self._namespaces)
        current = await self._queue.epoch(new_epoch())
        if not startup and current != self._epoch:
            self.counters["async_redis_data_lost"] += 1
            log.error(
                "Redis came back without the asynchronous queue (no persistence, or a failover "
                "to a replica that had not synced): events accepted before now are lost and "
                "their status is unknown; see the README's durability section"
            )
        elif created and startup:
            log.info("created %d asynchronous event streams and their consumer group", created)
        self._epoch = current

    async def _run(self, entry: Entry) -> None:
        try:
            try:
                fv: FunctionVersion | None = await self._functions.get(entry.function)
            except NotFound:
                fv = None  # deleted since: the attempt ends the event as failed
            await self._attempt(entry, fv)
        except (HotpoolError, *REDIS_ERRORS) as exc:
            # the entry stays pending here, unrenewed once this task ends: the reclaim path
            # hands it to a replica again after async_consumer_timeout_s
            self.counters["async_interrupted"] += 1
            log.warning("async event %s interrupted: %s", entry.request_id, exc)

    async def _attempt(self, entry: Entry, fv: FunctionVersion | None) -> None:
        settings = self._settings
        share = settings.async_share
        max_concurrency = fv.config.max_concurrency if fv is not None else 1
        begun = await self._queue.begin(
            entry,
            self.name,
            fn_share=max(1, math.floor(share * max_concurrency)),
            ns_share=max(1, math.floor(share * settings.namespace_max_concurrency)),
            defer_s=busy_defer_s,
            timeout_s=fv.config.timeout_s if fv is not None else 0.0,
            # the attempt may first wait for a cold start: a rerun after this replica died
            # must not begin while the call could still be sent and running
            grace_s=settings.cold_start_timeout_s + settings.lease_grace_s,
        )
        if not isinstance(begun, Attempt):
            self.counters[f"async_{begun}"] += 1
            return
        outcome = await self._invoke(begun, fv)
        decision = decide(begun, fv, outcome, settings, now=time.time())
        await self._finish(begun, fv, decision)

    async def _invoke(self, attempt: Attempt, fv: FunctionVersion | None) -> Outcome:
        if fv is None:
            return Outcome.from_error(NotFound(f"function {attempt.entry.function} was deleted"))
        age_s = time.time() - float(attempt.state.get("accepted_at", "0"))
        if age_s > fv.config.max_event_age_s:
            return Outcome.expired(age_s)
        admission = Admission(
            key_id="",
            rate_per_s=0.0,  # metered when it was accepted
            burst=1,
            namespace=attempt.entry.namespace,
            namespace_limit=self._settings.namespace_max_concurrency,
            hold_s=fv.config.timeout_s + self._settings.lease_grace_s,
        )
        self.counters["async_started"] += 1
        try:
            async with self._invoker.invocation(
                fv,
                attempt.event,
                attempt.entry.request_id,
                admission,
                trigger=attempt.state.get("trigger", "async"),
                attempt=attempt.number,
            ) as result:
                if result.stream is None:
                    return Outcome.from_invocation(result)
                # a streamed result is kept as one, within the bound of a kept result
                body = await collect(result.stream, self._settings.async_max_result_bytes)
                if result.stream.error is not None:
                    return Outcome.from_error(result.stream.error)
                return Outcome("success", body)
        except HotpoolError as exc:
            return Outcome.from_error(exc)

    async def _finish(
        self, attempt: Attempt, fv: FunctionVersion | None, decision: Decision
    ) -> None:
        destination = None
        if decision.destination and fv is not None:
            destination = await self._destination(attempt, fv, decision)
        # the attempt ran: a short Redis outage (a restart from its AOF) must not make it run
        # again, so its end is written once Redis is back. Meanwhile its entry stays pending
        # here and is renewed, and were it taken all the same, FINISH drops a stale attempt
        give_up_at = time.monotonic() + finish_retry_max_s
        while True:
            try:
                changed = await self._queue.finish(
                    attempt,
                    decision.status,
                    decision.fields,
                    due=decision.due,
                    result_ttl_s=self._settings.async_result_ttl_s,
                    dead_letter=decision.dead_letter,
                    dead_letter_ttl_s=self._settings.async_dead_letter_ttl_s,
                    destination=destination,
                )
                break
            except REDIS_ERRORS:
                if self._stopping or time.monotonic() >= give_up_at:
                    raise
                self.counters["async_finish_retried"] += 1
                await asyncio.sleep(redis_retry_s)
        if not changed:
            self.counters["async_stale_attempts"] += 1
            log.warning(
                "async event %s attempt %d ended after it was taken from this replica; "
                "its outcome is dropped", attempt.entry.request_id, attempt.number,
            )  # fmt: skip
            return
        self.counters[f"async_{decision.status}"] += 1
        if decision.dead_letter is not None:
            self.counters["async_dead_lettered"] += 1
        if destination is not None:
            self.counters["async_destinations"] += 1

    async def _destination(
        self, attempt: Attempt, fv: FunctionVersion, decision: Decision
    ) -> dict[str, str] | None:
        """The state of the event Lambda's destination record becomes, or None (logged)."""
        target = decision.destination
        try:
            target_fv = await self._functions.get(target)
        except HotpoolError as exc:
            self.counters["async_destination_missing"] += 1
            log.warning("destination %s of %s not delivered: %s", target, fv.name, exc)
            return None
        return destination_event(attempt, fv, target_fv, decision, self._settings)


async def _stop_task(task: asyncio.Task[None]) -> None:
    """Cancel a loop and wait for it. A cancellation can be lost inside a Redis client call
    (it surfaces as a connection error, which the loops survive), so it is sent again until
    the task ends; the loops also check ``_stopping`` on each turn."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task

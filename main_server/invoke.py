"""The invoke path (ADR-000): lease a warm container from the pool or cold-start one, call it
directly over a kept-alive connection, give it back, and queue the execution record.

The retry policy: a call that was never delivered (the connect failed) evicts its container
and goes to another, up to ``max_delivery_attempts`` times; a call that broke after it was
sent is never sent again, and becomes the function error its container's exit status names
(an OOM kill, a crash) or else ContainerFailed; a timeout discards the container. The outside
world is reached through the Protocols of ``main_server.ports``.

A handler that returns a generator streams (``main_server.stream``): the invocation hands the
caller its ``stream``, and writes the record once the stream has ended, when the caller's
block exits (a stream left unread is aborted first). ``timeout_s`` bounds the whole stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from hotpool.main_server.acquire import Acquirer
from hotpool.main_server.ports import (
    AnswerTooLarge,
    CallFailed,
    ColdStart,
    ContainerTransport,
    FunctionVersions,
    InvocationMetrics,
    ManagerApi,
    RecordSink,
    ResultStream,
)
from hotpool.main_server.reply import fill_record, function_error
from hotpool.main_server.stream import RelayedStream, open_stream
from hotpool.shared.errors import (
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvocationTimeout,
    NotDelivered,
    ResponseTooLarge,
)
from hotpool.shared.models import CONTAINER_SECRET_HEADER, FunctionVersion, PoolEntry
from hotpool.shared.pool import Admission, Pool
from hotpool.shared.redis_conn import REDIS_ERRORS
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

# time allowed on top of the function's timeout for the HTTP round trip itself
transport_margin_s = 0.25
# a request is sent again only when it provably never reached a container (connect failed)
max_delivery_attempts = 3
remove_timeout_s = 10.0
# what a container's answer holds besides the result: its captured stdout and stderr (each up
# to log_limit_bytes, JSON-escaped up to 6 bytes a byte) and a few figures
answer_envelope_bytes = 64 * 1024


def answer_limit_bytes(settings: Settings) -> int:
    """The longest container answer Main reads: the response limit plus the envelope."""
    return settings.max_response_bytes + 12 * settings.log_limit_bytes + answer_envelope_bytes


@dataclass
class Invocation:
    """The outcome of one invocation, for the HTTP response."""

    request_id: str
    status: int
    body: bytes
    cold_start: bool
    duration_ms: float
    function_error: str | None = None
    result: Any = None  # the handler's return value, as decoded (the web trigger reads it)
    # set instead of body/result when the handler streams (returned a generator); read it
    # inside the invocation's block, which records the stream once it has ended
    stream: ResultStream | None = None


@dataclass
class _Slot:
    """The request's place among its namespace's calls in flight, held under its token."""

    namespace: str  # "" when the request was not admitted (no slot)
    token: str
    held: bool = False


@dataclass
class _Attempt:
    entry: PoolEntry
    cold: ColdStart | None = None
    reply: dict[str, Any] = field(default_factory=dict)
    # the function's fault found once its container answered (a result over the limit): the
    # container is sound and goes back to the pool, the client gets this error
    error: HotpoolError | None = None
    result: bytes = b""
    stream: RelayedStream | None = None


class Invoker:
    """Runs invocations through the warm pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: Pool,
        managers: ManagerApi,
        containers: ContainerTransport,
        records: RecordSink,
        versions: FunctionVersions,
        metrics: InvocationMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._acquirer = Acquirer(settings, pool=pool, managers=managers, versions=versions)
        self._counters: Counter[str] = Counter()
        self._pool = pool
        self._managers = managers
        self._containers = containers
        self._records = records
        self.in_flight = 0

    @property
    def counters(self) -> Counter[str]:
        """What happened to invocations on this replica: outcomes and recoveries."""
        return self._counters + self._acquirer.counters

    @asynccontextmanager
    async def invocation(
        self,
        fv: FunctionVersion,
        event: bytes,
        request_id: str,
        admission: Admission | None = None,
        *,
        trigger: str = "sync",
        attempt: int | None = None,
    ) -> AsyncIterator[Invocation]:
        """Run one invocation; the container goes back to the pool when the block ends.

        The caller answers its client inside the block, so the release's Redis round trip is
        not part of the answer's latency; it still happens before the handler returns, so the
        client's next request on the connection never finds its own container missing. With
        ``admission`` the request is metered and admitted to its namespace in the pool's
        first script, and the namespace slot is given back with the container. ``trigger``
        names the way in, in the record ("sync" for /invoke, "web" for /fn/, "async");
        ``attempt`` is an asynchronous event's attempt number, told to the handler and recorded.
        """
        self.in_flight += 1
        started_at = time.time()
        begun = time.perf_counter()
        record: dict[str, Any] = {
            "request_id": request_id,
            "function": fv.name,
            "version": fv.version,
            "started_at": started_at,
            "trigger": trigger,
        }
        if attempt is not None:
            record["attempt"] = attempt
            if attempt > 1:  # records are unique by request id; every attempt has its own
                record["request_id"] = f"{request_id}:{attempt}"
        slot = _Slot(admission.namespace if admission else "", request_id)
        call: _Attempt | None = None
        try:
            try:
                call = await self._run(fv, event, slot, admission, record)
            except HotpoolError as exc:
                if "status" in record:  # it reached a container: it gets a record
                    record["duration_ms"] = _ms_since(begun)
                    record.setdefault("error", {"type": exc.code, "message": exc.message})
                    self._submit(record)
                elif exc.status == 429 and self._metrics is not None:
                    self._metrics.refused(record)  # refused at admission: counted, no record
                raise
            record["duration_ms"] = _ms_since(begun)
            if call.stream is None:
                self._submit(record)  # journaled before the client hears of the call
                yield _outcome(call, request_id, record["duration_ms"])
            else:
                cold = call.cold is not None
                try:
                    yield Invocation(
                        request_id, 200, b"", cold, record["duration_ms"], stream=call.stream
                    )
                finally:
                    if not await self._settle(call, call.stream, record, begun):
                        call = None  # discarded, not released
        finally:
            if call is not None:
                await self._release(call.entry, slot)
            if slot.held:
                await self._exit(slot)
            self.in_flight -= 1

    async def _run(
        self,
        fv: FunctionVersion,
        event: bytes,
        slot: _Slot,
        admission: Admission | None,
        record: dict[str, Any],
    ) -> _Attempt:
        request_id = slot.token
        for _ in range(max_delivery_attempts):
            # from here on the slot may be held, whatever acquire raises
            slot.held = slot.held or admission is not None
            acquired = await self._acquirer.acquire(
                fv, record, token=request_id, admission=admission
            )
            admission = None  # admitted once: a retry takes no second slot
            fv = acquired.fv  # the current version, if the request's was retired meanwhile
            attempt = _Attempt(acquired.entry, acquired.cold)
            record.update(
                version=fv.version,
                cold_start=attempt.cold is not None,
                init_ms=attempt.cold.total_ms if attempt.cold else None,
                cold_start_breakdown=attempt.cold.breakdown() if attempt.cold else None,
                container_id=attempt.entry.container_id,
                manager_id=attempt.entry.manager_id,
            )
            try:
                answer = await self._call(
                    attempt.entry, fv, event, request_id, record.get("attempt")
                )
            except AnswerTooLarge:
                attempt.error = self._too_large(fv, record)
                return attempt
            except NotDelivered as exc:
                # a container that died before the pool knew: nothing reached it, so the
                # request goes to another container (never run twice)
                self._counters["sent_to_dead"] += 1
                log.warning("container %s unreachable (%s); retrying", attempt.entry, exc)
                await self._discard(attempt.entry)
                continue
            except InvocationTimeout:
                self._counters["timeouts"] += 1
                record.update(status="timeout")
                await self._discard(attempt.entry)
                raise
            except ContainerFailed as exc:
                self._counters["container_failed"] += 1
                ended = await self._discard(attempt.entry, failed=True)
                if ended is None:
                    record.update(status="failed", error={"type": exc.code, "message": exc.message})
                    raise
                # the container died under the call: an OOM kill or a crash of the runtime is
                # the function's doing, reported as a function error
                error = FunctionError(ended["message"], error_type=ended["error_type"])
                record.update(
                    status="error", error={"type": error.error_type, "message": error.message}
                )
                raise error from exc
            if isinstance(answer, RelayedStream):
                self._counters["streams"] += 1
                record["streamed"] = True
                attempt.stream = answer
                return attempt
            attempt.reply = answer
            fill_record(record, attempt.reply, attempt.cold)
            if attempt.reply["status"] == "success":
                attempt.result = orjson.dumps(attempt.reply.get("result"))
                if len(attempt.result) > self._settings.max_response_bytes:
                    attempt.error = self._too_large(fv, record)
            return attempt
        raise ContainerFailed(f"no container could be reached in {max_delivery_attempts} tries")

    async def _call(
        self,
        entry: PoolEntry,
        fv: FunctionVersion,
        event: bytes,
        request_id: str,
        attempt: int | None = None,
    ) -> dict[str, Any] | RelayedStream:
        headers = {
            "Content-Type": "application/json",
            "X-Hotpool-Request-Id": request_id,
            "X-Hotpool-Deadline-Ms": str(int(fv.config.timeout_s * 1000)),
            CONTAINER_SECRET_HEADER: entry.secret,
        }
        if attempt is not None:
            headers["X-Hotpool-Attempt"] = str(attempt)
        timeout_s = fv.config.timeout_s
        try:
            status, raw = await self._containers.call(
                entry.address, "/invoke", event, headers, timeout_s + transport_margin_s
            )
            if not isinstance(raw, bytes):
                limit = self._settings.max_stream_bytes
                return await open_stream(
                    raw, status, name=fv.name, timeout_s=timeout_s, max_bytes=limit
                )
        except TimeoutError:
            raise InvocationTimeout(
                f"{fv.name} ran past its timeout of {fv.config.timeout_s:g} s; "
                "its container was stopped"
            ) from None
        except AnswerTooLarge:
            raise  # the function's doing, not the container's: see _run
        except CallFailed as exc:
            raise ContainerFailed(f"the container failed during the invocation: {exc}") from exc
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            reply = None
        if status != 200 or not isinstance(reply, dict) or "status" not in reply:
            raise ContainerFailed(f"the container answered {status}: {raw[:200]!r}")
        return reply

    def _too_large(self, fv: FunctionVersion, record: dict[str, Any]) -> ResponseTooLarge:
        """The error for a result over the limit, noted in the execution record."""
        self._counters["responses_too_large"] += 1
        limit = self._settings.max_response_bytes
        error = ResponseTooLarge(
            f"{fv.name} returned more than the response limit of {limit} bytes "
            "(HOTPOOL_MAX_RESPONSE_BYTES)",
            error_type="ResponseTooLarge",
        )
        record.update(status="error", error={"type": error.error_type, "message": error.message})
        return error

    async def _settle(
        self, call: _Attempt, stream: RelayedStream, record: dict[str, Any], begun: float
    ) -> bool:
        """Record a stream once it has ended (aborting it if the caller left it early);
        whether its container is sound, else it was discarded."""
        await stream.settle()
        self._counters["streams_aborted"] += stream.aborted
        self._counters["responses_too_large"] += isinstance(stream.error, ResponseTooLarge)
        if stream.summary is not None:
            fill_record(record, stream.summary, call.cold)
        stream.describe(record, begun)
        record["duration_ms"] = _ms_since(begun)
        sound = stream.fate == "ok"
        if not sound:
            self._counters["timeouts" if stream.fate == "timeout" else "container_failed"] += 1
            ended = await self._discard(call.entry, failed=stream.fate == "failed")
            if ended is not None:  # it died under the stream: an OOM kill or a crash
                error = {"type": ended["error_type"], "message": ended["message"]}
                record.update(status="error", error=error)
        self._submit(record)
        return sound

    def _submit(self, record: dict[str, Any]) -> None:
        self._records.submit(record)
        if self._metrics is not None:
            self._metrics.observe(record)

    async def _release(self, entry: PoolEntry, slot: _Slot) -> None:
        try:
            outcome = await self._pool.release(entry, namespace=slot.namespace, token=slot.token)
            slot.held = False
        except REDIS_ERRORS:
            # the lease stays behind and expires; the reaper reclaims the container
            log.warning("could not release %s: Redis unreachable", entry)
            return
        if outcome == 0:  # its version was retired while it ran: it serves nothing else
            await self._remove(entry)

    async def _exit(self, slot: _Slot) -> None:
        try:
            await self._pool.exit(slot.namespace, slot.token)
        except REDIS_ERRORS:
            pass  # the slot's deadline frees it
        slot.held = False

    async def _discard(self, entry: PoolEntry, *, failed: bool = False) -> dict[str, Any] | None:
        """A container that timed out or failed: never hand it out again, and remove it.

        With ``failed``, returns how it ended if it died on its own."""
        self._containers.forget(entry.address)
        try:
            await self._pool.evict(entry)
        except REDIS_ERRORS:
            log.warning("could not evict %s: Redis unreachable", entry)
        return await self._remove(entry, failed=failed)

    async def _remove(self, entry: PoolEntry, *, failed: bool = False) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(remove_timeout_s):
                return await self._managers.remove(entry, failed=failed)
        except TimeoutError:
            log.warning("removing container %s timed out", entry.container_id)
            return None


def _outcome(attempt: _Attempt, request_id: str, duration_ms: float) -> Invocation:
    """The HTTP answer to a call that reached its container: the result or a function error
    (raised when it has its own status, as ResponseTooLarge does)."""
    if attempt.error is not None:
        raise attempt.error
    reply, cold = attempt.reply, attempt.cold is not None
    if reply["status"] == "success":
        return Invocation(
            request_id, 200, attempt.result, cold, duration_ms, result=reply.get("result")
        )
    error, stack_trace = function_error(reply)
    body = error.invoke_body(request_id, stack_trace)
    # Lambda's Node runtime names the frames "trace": a runtime that sends it has it passed on
    trace = (reply.get("error") or {}).get("trace")
    if isinstance(trace, list) and all(isinstance(line, str) for line in trace):
        body["trace"] = trace
    return Invocation(request_id, 500, orjson.dumps(body), cold, duration_ms, error.error_type)


def _ms_since(begun: float) -> float:
    return round((time.perf_counter() - begun) * 1000, 3)

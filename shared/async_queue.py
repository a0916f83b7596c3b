"""The asynchronous invocation queue in Redis: accept, begin, end, defer, reclaim, redrive.

Every state change is one script of ``shared.async_keys``; this module runs them and turns
their answers into data. Time comes from the injected clock.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from hotpool.shared import async_keys as k
from hotpool.shared.redis_conn import text


class Accepted(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # an earlier request had the same Idempotency-Key
    FULL = "full"  # the namespace has its limit of events queued


@dataclass(frozen=True)
class Entry:
    """One stream entry read by a consumer."""

    entry_id: str
    request_id: str
    function: str
    namespace: str


@dataclass
class Attempt:
    """An attempt that began: the event's state as it was when it did."""

    entry: Entry
    number: int
    state: dict[str, str] = field(default_factory=dict)

    @property
    def event(self) -> bytes:
        return self.state.get("event", "null").encode()

    def errors(self) -> list[dict[str, Any]]:
        return orjson.loads(self.state.get("errors") or "[]")


@dataclass(frozen=True)
class Depth:
    """A namespace's events not yet ended, and the age of the oldest."""

    queued: int
    oldest_age_s: float


def idempotency_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AsyncQueue:
    """Accepted asynchronous events, shared by every Main replica through one Redis stream."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        register = redis.register_script
        self._accept = register(k.ACCEPT)
        self._start = register(k.START)
        self._finish = register(k.FINISH)
        self._move_due = register(k.MOVE_DUE)
        self._reclaim = register(k.RECLAIM)
        self._redrive = register(k.REDRIVE)
        self._defer = register(k.DEFER)

    async def namespaces(self) -> list[str]:
        """The namespaces that have a stream (that ever queued an event)."""
        return sorted(text(n) for n in await self._redis.smembers(k.NAMESPACES))

    async def ensure_groups(self, namespaces: list[str]) -> int:
        """Create the streams and consumer groups that are missing; how many it created."""
        created = 0
        for namespace in namespaces:
            try:
                await self._redis.xgroup_create(k.stream(namespace), k.GROUP, id="0", mkstream=True)
                created += 1
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return created

    async def epoch(self, mine: str | None = None) -> str | None:
        """The queue's epoch marker; with ``mine``, set it to that first if it is missing."""
        if mine is not None:
            await self._redis.set(k.EPOCH, mine, nx=True)
        raw = await self._redis.get(k.EPOCH)
        return text(raw) if raw is not None else None

    async def accept(
        self,
        request_id: str,
        fields: Mapping[str, Any],
        *,
        limit: int,
        idempotency_key: str | None = None,
        idempotency_ttl_s: float = 86400.0,
    ) -> tuple[Accepted, str]:
        """Queue an event (``fields`` are its state: function, namespace, event, ...)."""
        function, namespace = fields["function"], fields["namespace"]
        idem_key = k.idem(function, idempotency_digest(idempotency_key or ""))
        outcome, rid = await self._accept(
            keys=[
                k.inv(request_id), k.queued(namespace), k.stream(namespace), k.NAMESPACES,
                idem_key,
            ],
            args=[
                request_id, self._clock(), limit, "1" if idempotency_key else "0",
                max(1, int(idempotency_ttl_s)), namespace, function, _encode(fields),
            ],
        )  # fmt: skip
        return Accepted(text(outcome)), text(rid)

    async def read(
        self, consumer: str, namespaces: list[str], count: int, block_ms: int | None
    ) -> list[Entry]:
        """New entries of these namespaces for ``consumer``, up to ``count`` from each;
        blocking up to ``block_ms`` when there are none (None: not at all)."""
        answer = await self._redis.xreadgroup(
            k.GROUP, consumer, {k.stream(ns): ">" for ns in namespaces}, count=count,
            block=block_ms,
        )  # fmt: skip
        entries = []
        for _stream, items in answer or []:
            for entry_id, data in items:
                values = {text(a): text(b) for a, b in data.items()}
                request_id, function = values.get("id", ""), values.get("fn", "")
                entries.append(Entry(text(entry_id), request_id, function, values.get("ns", "")))
        return entries

    async def defer(self, entry: Entry) -> None:
        """Hand an entry back, due at once: another read (here or elsewhere) takes it."""
        await self._defer(
            keys=[k.stream(entry.namespace), k.DELAYED],
            args=[entry.entry_id, entry.request_id, self._clock()],
        )

    async def begin(
        self,
        entry: Entry,
        consumer: str,
        *,
        fn_share: int,
        ns_share: int,
        defer_s: float,
        timeout_s: float,
        grace_s: float,
    ) -> Attempt | str:
        """Begin an attempt, or say why not: "gone", "busy" (deferred) or "later"."""
        answer = await self._start(
            keys=[
                k.inv(entry.request_id), k.stream(entry.namespace), k.running(entry.function),
                k.running_ns(entry.namespace), k.DELAYED,
            ],
            args=[
                entry.entry_id, entry.request_id, self._clock(), consumer, fn_share, ns_share,
                defer_s, grace_s, timeout_s,
            ],
        )  # fmt: skip
        verdict = text(answer[0])
        if verdict != "run":
            return verdict
        flat = [text(x) for x in answer[2:]]
        return Attempt(entry, int(answer[1]), dict(zip(flat[::2], flat[1::2], strict=True)))

    async def finish(
        self,
        attempt: Attempt,
        outcome: str,
        fields: Mapping[str, Any],
        *,
        due: float = 0.0,
        result_ttl_s: float = 3600.0,
        dead_letter: Mapping[str, Any] | None = None,
        dead_letter_ttl_s: float = 14 * 86400.0,
        destination: Mapping[str, Any] | None = None,
    ) -> bool:
        """End an attempt: ``retry`` at ``due``, or end the event as ``succeeded``, ``failed``
        or ``expired`` (with its dead letter, and its destination's event, if any).

        False when the attempt was stale: the event was taken from this replica meanwhile."""
        entry = attempt.entry
        dest_id = str(destination["request_id"]) if destination else ""
        changed = await self._finish(
            keys=[
                k.inv(entry.request_id), k.stream(entry.namespace), k.running(entry.function),
                k.running_ns(entry.namespace), k.queued(entry.namespace), k.DELAYED,
                k.dead(entry.function), k.dead_items(entry.function),
                k.inv(dest_id or entry.request_id),
            ],
            args=[
                entry.entry_id, entry.request_id, attempt.number, outcome, self._clock(), due,
                max(1, int(result_ttl_s)), _encode(fields),
                orjson.dumps(dead_letter).decode() if dead_letter else "",
                dead_letter_ttl_s, _encode(destination) if destination else "", dest_id,
            ],
        )  # fmt: skip
        return bool(changed)

    async def renew(self, consumer: str, entries: list[Entry]) -> None:
        """Reset the idle time of the entries ``consumer`` is running: it is alive."""
        by_namespace: dict[str, list[str]] = {}
        for entry in entries:
            by_namespace.setdefault(entry.namespace, []).append(entry.entry_id)
        for namespace, ids in by_namespace.items():
            await self._redis.xclaim(
                k.stream(namespace), k.GROUP, consumer, min_idle_time=0, message_ids=ids,
                justid=True,
            )  # fmt: skip

    async def reclaim(
        self, consumer: str, namespaces: list[str], idle_s: float, count: int = 100
    ) -> list[str]:
        """Take the entries of consumers silent for ``idle_s``; each is deferred to its deadline."""
        taken: list[str] = []
        for namespace in namespaces:
            ids = await self._reclaim(
                keys=[k.stream(namespace), k.DELAYED],
                args=[consumer, int(idle_s * 1000), self._clock(), count],
            )
            taken += [text(i) for i in ids]
        return taken

    async def move_due(self, count: int = 500) -> int:
        """Put the events whose delay has passed back into their streams."""
        return int(await self._move_due(keys=[k.DELAYED], args=[self._clock(), count]))

    async def state(self, request_id: str) -> dict[str, str] | None:
        raw = await self._redis.hgetall(k.inv(request_id))
        if not raw:
            return None
        return {text(a): text(b) for a, b in raw.items()}

    async def dead_letters(self, function: str, limit: int) -> list[dict[str, Any]]:
        """The function's dead letters, oldest first."""
        ids = await self._redis.zrange(k.dead(function), 0, limit - 1)
        if not ids:
            return []
        items = await self._redis.hmget(k.dead_items(function), ids)
        return [orjson.loads(item) for item in items if item is not None]

    async def dead_letter_ids(self, function: str) -> list[str]:
        return [text(i) for i in await self._redis.zrange(k.dead(function), 0, -1)]

    async def dead_letter(self, function: str, request_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(k.dead_items(function), request_id)
        return orjson.loads(raw) if raw is not None else None

    async def delete_dead_letter(self, function: str, request_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(k.dead(function), request_id)
            pipe.hdel(k.dead_items(function), request_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def redrive(self, function: str, request_id: str, fields: Mapping[str, Any]) -> bool:
        """Queue a dead letter again (``fields``: its fresh state); False if it is not one."""
        keys_ = [
            k.dead(function), k.dead_items(function), k.inv(request_id),
            k.queued(fields["namespace"]), k.stream(fields["namespace"]),
        ]  # fmt: skip
        args = [request_id, self._clock(), _encode(fields)]
        return bool(await self._redrive(keys=keys_, args=args))

    async def forget_function(self, function: str) -> None:
        """A deleted function's dead letters go with it."""
        await self._redis.unlink(k.dead(function), k.dead_items(function))

    async def depths(self) -> dict[str, Depth]:
        """Each namespace's events not yet ended, and the age of the oldest."""
        namespaces = await self.namespaces()
        now = self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                pipe.zcard(k.queued(namespace))
                pipe.zrange(k.queued(namespace), 0, 0, withscores=True)
            answers = await pipe.execute()
        depths = {}
        for i, namespace in enumerate(namespaces):
            count, oldest = answers[2 * i], answers[2 * i + 1]
            age = round(max(0.0, now - oldest[0][1]), 3) if oldest else 0.0
            depths[namespace] = Depth(int(count), age)
        return depths

    async def backlog(self) -> dict[str, int]:
        """The streams' entries, those pending on a replica, and the delayed events."""
        namespaces = await self.namespaces()
        async with self._redis.pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                pipe.xlen(k.stream(namespace))
                pipe.xpending(k.stream(namespace), k.GROUP)
            pipe.zcard(k.DELAYED)
            answers = await pipe.execute(raise_on_error=False)
        length = sum(n for n in answers[0:-1:2] if isinstance(n, int))
        # a stream without its group (not made yet) answers an error: nothing pending there
        pending = sum(p["pending"] for p in answers[1:-1:2] if isinstance(p, dict))
        return {"stream": length, "pending": pending, "delayed": int(answers[-1])}


def new_epoch() -> str:
    return secrets.token_hex(8)


def _encode(fields: Mapping[str, Any]) -> str:
    """Hash fields as the scripts take them: a JSON object of strings."""
    return orjson.dumps(
        {name: v if isinstance(v, str) else orjson.dumps(v).decode() for name, v in fields.items()}
    ).decode()

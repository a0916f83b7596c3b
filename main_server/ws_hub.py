"""The WebSocket connections of every Main replica as one set: ``ConnectionHub``.

Each replica holds its own sockets (``LocalConnection``, made by the ``/ws/{function}`` route)
and registers each in Redis (``shared.ws_keys``): which replica holds it, whose it is, its
identity. A send or close for a connection held here goes into its outbox (``ws_outbox``); one
held elsewhere is PUBLISHed on that replica's channel, where its listener puts it into the
connection's outbox, in the order published. A PUBLISH that reaches nobody means the replica
is gone: the connection is too (410), and its entry is removed.

Who may reach a connection is a ``Scope``: a key with ``invoke`` on the connection's namespace,
or a function's connections token (a principal limited to that one function). Another tenant's
connection and an unknown id get the same 404; the caller's own ended connection gets 410.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from hotpool.main_server.ws_outbox import Delivery, Outbox, gone
from hotpool.shared import ws_keys
from hotpool.shared.auth import Principal
from hotpool.shared.errors import NotFound
from hotpool.shared.loops import every, follow_channel
from hotpool.shared.models import split_qualified
from hotpool.shared.redis_conn import REDIS_ERRORS, redis_errors
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

# who may reach which connections: a key's principal, or a connections token's (one function)
Scope = Principal
# how long stopping waits for the closed connections' loops to deliver $disconnect and end
stop_timeout_s = 10.0
GOING_AWAY = (1001, "going away")
# a connection whose outbound queue overflows is closed: policy violation
OVERFLOW_CLOSE = (1008, "outbound queue full: the client reads too slowly")


class LocalConnection(Protocol):
    """A socket held by this replica (the ``/ws/{function}`` route implements it).

    Closing it always makes its loop deliver ``$disconnect`` and call ``ConnectionHub.remove``.
    """

    connection_id: str
    namespace: str
    function: str  # qualified name
    connected_at: float  # epoch seconds
    last_active_at: float  # epoch seconds, updated on every message in or out
    source_ip: str
    user_agent: str

    async def send(self, data: bytes | str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


def not_found() -> NotFound:
    """The one answer for an unknown id and another tenant's: nothing tells them apart."""
    return NotFound("no such connection: check the connectionId")


def as_message(data: bytes) -> bytes | str:
    """A text frame when the body is UTF-8, else a binary one (API Gateway does the same)."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def iso8601(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class ConnectionHub:
    """This replica's WebSocket connections, and the way to any replica's through Redis."""

    def __init__(self, settings: Settings, redis: Redis, replica_id: str) -> None:
        self._settings = settings
        self._redis = redis
        self.replica_id = replica_id
        self.channel = ws_keys.replica_channel(replica_id)
        self.counters: Counter[str] = Counter()
        self._local: dict[str, LocalConnection] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._synced: dict[str, float] = {}  # last_active_at last written, by connection
        self._tasks: list[asyncio.Task[None]] = []
        self._emptied = asyncio.Event()
        self._burying = 0  # removals still writing to Redis
        self.stopping = False

    async def start(self) -> None:
        """Listen on this replica's channel, and keep the registry's activity times fresh."""
        listen = follow_channel(
            self._redis, self.channel, self._on_message, self._on_gap, "WebSocket channel"
        )
        sync = every(ws_keys.registry_sync_interval_s, "WebSocket registry sync", self._sync)
        self._tasks = [
            asyncio.create_task(listen, name="ws-listen"),
            asyncio.create_task(sync, name="ws-registry-sync"),
        ]

    async def stop(self) -> None:
        """Close every socket here with 1001 and wait (bounded) until their loops removed
        them; then stop listening. Entries left (a loop that did not end) are removed here."""
        self.stopping = True
        # what was queued before goes out first; a socket still stuck after half the time is
        # cut short
        for conn in list(self._local.values()):
            self._outbox(conn).push(Delivery(None, *GOING_AWAY))
        if not await self._all_ended(stop_timeout_s / 2):
            for conn in list(self._local.values()):
                self._outbox(conn).cut(*GOING_AWAY)
            await self._all_ended(stop_timeout_s / 2)
        for connection_id in list(self._local):
            log.warning("connection %s did not end within %g s", connection_id, stop_timeout_s)
            with contextlib.suppress(*REDIS_ERRORS):
                await self.remove(connection_id)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _all_ended(self, timeout_s: float) -> bool:
        if self._local or self._burying:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        return not self._local

    async def add(self, conn: LocalConnection) -> None:
        """Hold ``conn`` here and register it for every replica."""
        self._local[conn.connection_id] = conn
        self._synced[conn.connection_id] = conn.last_active_at
        key = ws_keys.connection(conn.connection_id)
        with redis_errors("the WebSocket registry"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=self._entry(conn))
                pipe.expire(key, ws_keys.registry_ttl_s(self._settings))
                await pipe.execute()
        self.counters["ws_registered"] += 1

    async def remove(self, connection_id: str) -> None:
        """Forget a connection whose socket ended: here, in the registry, and leave its
        tombstone (its tenant hears 410 Gone for ``gone_ttl_s``)."""
        conn = self._local.pop(connection_id, None)
        self._synced.pop(connection_id, None)
        if conn is None:
            return
        self._burying += 1
        try:
            await self._bury(connection_id, conn.namespace, conn.function)
        finally:
            self._burying -= 1
            if not self._local and not self._burying:  # stopping waits for a clean registry
                self._emptied.set()

    def local(self) -> list[LocalConnection]:
        return list(self._local.values())

    async def send(self, caller: Scope, connection_id: str, data: bytes) -> None:
        """Send one message (text when UTF-8) to a connection on any replica."""
        await self._deliver(caller, connection_id, Delivery(as_message(data)))
        self.counters["ws_posted"] += 1

    async def close(self, caller: Scope, connection_id: str) -> None:
        """Close a connection on any replica (1000); its function then gets ``$disconnect``."""
        await self._deliver(caller, connection_id, Delivery(None, 1000, ""))
        self.counters["ws_deleted"] += 1

    async def describe(self, caller: Scope, connection_id: str) -> dict[str, Any]:
        """API Gateway's GetConnection answer for a connection on any replica, in its wire
        names (the SDKs show them as ConnectedAt, LastActiveAt, Identity)."""
        conn = self._local.get(connection_id)
        if conn is not None:
            _check(caller, connection_id, conn.namespace, conn.function)
            fields = self._entry(conn)
        else:
            fields = await self._lookup(caller, connection_id)
        return {
            "connectedAt": iso8601(float(fields["connected_at"])),
            "lastActiveAt": iso8601(float(fields["last_active_at"])),
            "identity": {"sourceIp": fields["source_ip"], "userAgent": fields["user_agent"]},
        }

    async def _deliver(self, caller: Scope, connection_id: str, delivery: Delivery) -> None:
        conn = self._local.get(connection_id)
        if conn is not None:
            _check(caller, connection_id, conn.namespace, conn.function)
            delivery.done = asyncio.get_running_loop().create_future()
            self._push(conn, delivery)
            await delivery.done
            return
        fields = await self._lookup(caller, connection_id)
        if fields["replica"] == self.replica_id:  # ended here a moment ago
            raise gone(connection_id)
        with redis_errors("the WebSocket channel"):
            heard = await self._redis.publish(
                ws_keys.replica_channel(fields["replica"]), _encode(connection_id, delivery)
            )
        if not heard:  # nobody listens on that channel: its replica died with the connection
            self.counters["ws_replica_gone"] += 1
            await self._bury(connection_id, fields["namespace"], fields["function"])
            raise gone(connection_id)
        self.counters["ws_forwarded"] += 1

    async def _lookup(self, caller: Scope, connection_id: str) -> dict[str, str]:
        """A connection's registry entry if ``caller`` may reach it; 404 or 410 otherwise."""
        with redis_errors("the WebSocket registry"):
            raw = await self._redis.hgetall(ws_keys.connection(connection_id))
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            if not fields.get("replica"):
                tombstone = await self._redis.get(ws_keys.gone(connection_id))
        if fields.get("replica"):
            _check(caller, connection_id, fields["namespace"], fields["function"])
            return fields
        if tombstone is not None:
            owner = orjson.loads(tombstone)
            _check(caller, connection_id, owner["namespace"], owner["function"])
            raise gone(connection_id)
        raise not_found()

    async def _bury(self, connection_id: str, namespace: str, function: str) -> None:
        owner = orjson.dumps({"namespace": namespace, "function": function})
        with redis_errors("the WebSocket registry"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(ws_keys.connection(connection_id))
                pipe.set(ws_keys.gone(connection_id), owner, ex=ws_keys.gone_ttl_s)
                await pipe.execute()

    def _push(self, conn: LocalConnection, delivery: Delivery) -> None:
        outbox = self._outbox(conn)
        if not outbox.push(delivery):
            self.counters["ws_outbox_overflows"] += 1
            log.warning("connection %s reads too slowly; closing it", conn.connection_id)
            outbox.cut(*OVERFLOW_CLOSE)
            if delivery.done is not None:
                delivery.done.set_exception(gone(conn.connection_id))

    def _outbox(self, conn: LocalConnection) -> Outbox:
        outbox = self._outboxes.get(conn.connection_id)
        if outbox is None:
            outbox = Outbox(
                conn.connection_id,
                conn,
                lambda cid=conn.connection_id: self._outboxes.pop(cid, None),
            )
            self._outboxes[conn.connection_id] = outbox
        return outbox

    def _on_message(self, message: str) -> None:
        """A send or close another replica forwarded: into the connection's outbox."""
        try:
            connection_id, delivery = _decode(message)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        conn = self._local.get(connection_id)
        if conn is None:  # it ended here meanwhile; the sender already answered
            self.counters["ws_forwarded_lost"] += 1
            return
        self._push(conn, delivery)

    def _on_gap(self) -> None:
        log.debug("listening on %s", self.channel)

    async def _sync(self) -> None:
        """Write the activity times that changed since the last turn, in one round trip."""
        changed = [
            c for c in self._local.values() if self._synced.get(c.connection_id) != c.last_active_at
        ]
        if not changed:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for conn in changed:
                key = ws_keys.connection(conn.connection_id)
                pipe.hset(key, "last_active_at", repr(conn.last_active_at))
            await pipe.execute()
        for conn in changed:
            self._synced[conn.connection_id] = conn.last_active_at

    def _entry(self, conn: LocalConnection) -> dict[str, str]:
        return {
            "replica": self.replica_id,
            "namespace": conn.namespace,
            "function": conn.function,
            "connected_at": repr(conn.connected_at),
            "last_active_at": repr(conn.last_active_at),
            "source_ip": conn.source_ip,
            "user_agent": conn.user_agent,
        }

    def status(self) -> dict[str, Any]:
        """This replica's figures for ``/system/status``."""
        return {
            "replica": self.replica_id,
            "connections_here": len(self._local),
            "outboxes_busy": len(self._outboxes),
            **dict(self.counters),
        }


def _check(caller: Scope, connection_id: str, namespace: str, function: str) -> None:
    """Raise unless ``caller`` may use ``invoke`` on the connection's function: 404 (the same
    as an unknown id) outside what it sees, 403 inside its namespace without the scope."""
    try:
        caller.namespace(namespace)
        caller.check("invoke", namespace, split_qualified(function)[1])
    except NotFound:
        raise not_found() from None


def _encode(connection_id: str, delivery: Delivery) -> bytes:
    message: dict[str, Any] = {"id": connection_id}
    if delivery.data is None:
        message |= {"close": delivery.code, "reason": delivery.reason}
    elif isinstance(delivery.data, str):
        message["text"] = delivery.data
    else:
        message["b64"] = base64.b64encode(delivery.data).decode()
    return orjson.dumps(message)


def _decode(message: str) -> tuple[str, Delivery]:
    fields = orjson.loads(message)
    connection_id = str(fields["id"])
    if "close" in fields:
        return connection_id, Delivery(None, int(fields["close"]), str(fields["reason"]))
    if "text" in fields:
        return connection_id, Delivery(str(fields["text"]))
    return connection_id, Delivery(base64.b64decode(fields["b64"]))

"""One client WebSocket after ``$connect`` let it in: the ``LocalConnection`` that
``main_server.ws_hub`` reaches it through, and the loop that turns its messages into
invocations, one at a time, in order.

A reader task takes messages off the socket into a small queue (when it is full the reader
stops reading, so the client's sends block: back-pressure), drops those over the message
rate with API Gateway's ``Too Many Requests`` message, and closes the socket when it has
been idle or open too long. The worker runs each message through the one invoke path and
sends the result's body back. However the socket ends (the client, a limit, the hub closing
it), the messages already read are still handled, then the hub forgets the connection and
the function gets ``$disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import WSMsgType, web

from hotpool.main_server import ws_events
from hotpool.main_server.invoke import Invocation, Invoker
from hotpool.main_server.ports import ResultStream
from hotpool.main_server.ws_events import NoReply, reply_of
from hotpool.main_server.ws_limits import GOING_AWAY, GOING_AWAY_REASON, Deadlines, TokenBucket
from hotpool.shared.errors import HotpoolError, TooManyRequests
from hotpool.shared.models import FunctionVersion
from hotpool.shared.pool import Admission
from hotpool.shared.settings import Settings

log = logging.getLogger(__name__)

# messages read ahead of the one the function is handling
inbox_messages = 8
ABNORMAL = 1006  # the socket ended without a close frame
THROTTLED = "Too Many Requests"  # API Gateway's messages to the client, word for word
FAILED = "Internal server error"
_END = object()


class Hub(Protocol):
    """What this module needs of ``main_server.ws_hub.ConnectionHub``."""

    async def add(self, conn: WsConnection) -> None: ...

    async def remove(self, connection_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """The function a connection's events run, and how each one is admitted."""

    fv: FunctionVersion
    admission: Admission  # per message: the key's rate, or the function's public rate
    route_path: tuple[str, ...]


class WsConnection:
    """One client WebSocket (``LocalConnection`` of DESIGN §C)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        origin: ws_events.Origin,
        target: Target,
        *,
        invoker: Invoker,
        settings: Settings,
        counters: Counter[str],
    ) -> None:
        self.connection_id = origin.connection_id
        self.namespace = target.fv.namespace
        self.function = target.fv.name
        self.connected_at = origin.connected_at_ms / 1000
        self.last_active_at = time.time()
        self.source_ip = origin.source_ip
        self.user_agent = origin.user_agent
        self.ended = asyncio.Event()  # set once $disconnect was delivered (or given up)
        self._ws = ws
        self._origin = origin
        self._target = target
        self._invoker = invoker
        self._settings = settings
        self._counters = counters
        now = time.monotonic()
        self._active = now
        self._deadlines = Deadlines(now, settings.ws_idle_timeout_s, settings.ws_max_lifetime_s)
        self._bucket = TokenBucket.full(settings.ws_messages_per_s, now)
        self._inbox: asyncio.Queue[object] = asyncio.Queue(inbox_messages)
        self._send_lock = asyncio.Lock()
        self._closed_with: tuple[int, str] | None = None  # when this side closed
        self._streaming: ResultStream | None = None  # the result being relayed

    def _touch(self) -> None:
        self._active = time.monotonic()
        self.last_active_at = time.time()

    async def send(self, data: bytes | str) -> None:
        """Send one message (str: a text frame, bytes: binary), after the ones before it;
        returns once the socket took it. ConnectionResetError when the socket is closed."""
        async with self._send_lock:
            if self._ws.closed:
                raise ConnectionResetError(f"connection {self.connection_id} is closed")
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)
            self._touch()
            self._counters["ws_messages_out"] += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket; the connection's loop then delivers ``$disconnect``."""
        if self._closed_with is None and not self._ws.closed:
            self._closed_with = (code, reason)
        await self._ws.close(code=code, message=reason.encode()[:123])

    async def serve(self, hub: Hub | None) -> None:
        """Run the connection until its socket ends, then ``$disconnect``."""
        worker = asyncio.create_task(self._work(), name=f"ws-{self.connection_id}")
        try:
            code, reason = await self._read()
            if self._streaming is not None:
                self._streaming.abort()  # no one to send it to: close the handler's generator
            await self._inbox.put(_END)
            await worker  # the messages already read are handled first
        finally:
            worker.cancel()
            if hub is not None:
                with contextlib.suppress(HotpoolError):
                    await hub.remove(self.connection_id)
        try:
            await self._disconnect(code, reason)
        finally:
            self.ended.set()

    async def _read(self) -> tuple[int, str]:
        """Read messages into the inbox until the socket ends; its close code and reason."""
        ws = self._ws
        while True:
            now = time.monotonic()
            expired = self._deadlines.expired(now, self._active)
            if expired is not None:
                self._counters[f"ws_{expired}_closes"] += 1
                await self.close(GOING_AWAY, GOING_AWAY_REASON)
                break
            try:
                msg = await ws.receive(
                    timeout=max(0.001, self._deadlines.wait_s(now, self._active))
                )
            except TimeoutError:
                continue
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await self._accept(msg.data)
                continue
            if msg.type is WSMsgType.CLOSE:  # the client's close frame
                return int(msg.data or 0), str(msg.extra or "")
            if msg.type is WSMsgType.ERROR:  # over the size limit (1009), or a bad frame
                # the status this side closed with (a WebSocketError's), not the peer's reply
                code = getattr(msg.data, "code", None) or ABNORMAL
                self._counters["ws_messages_too_big" if code == 1009 else "ws_errors"] += 1
                return code, "Message too big" if code == 1009 else str(msg.data)[:120]
            break  # CLOSING (this side closed) or CLOSED (the peer vanished)
        if self._closed_with is not None:
            return self._closed_with
        return ws.close_code or ABNORMAL, "Connection lost"

    async def _accept(self, data: str | bytes) -> None:
        self._touch()
        self._counters["ws_messages_in"] += 1
        if not self._bucket.take(time.monotonic()):
            self._counters["ws_messages_throttled"] += 1
            await self._tell(THROTTLED, str(uuid.uuid4()))
            return
        try:
            # back-pressure: while the function is busy with earlier messages, stop reading;
            # the lifetime still ends a connection stuck here
            async with asyncio.timeout_at(self._lifetime_loop_time()):
                await self._inbox.put(data)
        except TimeoutError:
            self._counters["ws_lifetime_closes"] += 1
            await self.close(GOING_AWAY, GOING_AWAY_REASON)

    def _lifetime_loop_time(self) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (self._deadlines.lifetime_end() - time.monotonic())

    async def _work(self) -> None:
        while (data := await self._inbox.get()) is not _END:
            assert isinstance(data, str | bytes)
            await self._message(data)

    async def _message(self, data: str | bytes) -> None:
        """One message through the invoke path, its result sent back."""
        target = self._target
        request_id = str(uuid.uuid4())
        route = ws_events.route_key(target.route_path, data)
        event = ws_events.message_event(self._origin, request_id, data, route)
        try:
            invocation = self._invoker.invocation(
                target.fv, event, request_id, target.admission, trigger="websocket"
            )
            async with invocation as result:
                await self._reply(result)
        except TooManyRequests:
            self._counters["ws_messages_throttled"] += 1
            await self._tell(THROTTLED, request_id)
        except HotpoolError as exc:
            self._counters["ws_message_errors"] += 1
            log.info("message %s on %s: %s", request_id, self.connection_id, exc.message)
            await self._tell(FAILED, request_id)

    async def _reply(self, result: Invocation) -> None:
        if result.stream is not None:
            self._streaming = result.stream
            try:
                await self._relay(result.stream, result.request_id)
            finally:
                self._streaming = None
            return
        if result.function_error is not None:
            self._counters["ws_message_errors"] += 1
            await self._tell(FAILED, result.request_id)
            return
        try:
            out = reply_of(result.result, result.body, self._settings.ws_max_message_bytes)
        except NoReply as exc:
            self._counters["ws_replies_refused"] += 1  # bad base64, or over the size limit
            log.info("message %s of %s: %s", result.request_id, self.function, exc)
            await self._tell(FAILED, result.request_id)
            return
        if out is not None:
            with contextlib.suppress(ConnectionResetError):
                await self.send(out)

    async def _relay(self, stream: ResultStream, request_id: str) -> None:
        """One message per streamed item, sent as the function produces it."""
        limit = self._settings.ws_max_message_bytes
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk, ends_item in stream:
                size += len(chunk)
                if size > limit:
                    stream.abort()
                    self._counters["ws_message_errors"] += 1
                    log.info(
                        "message %s of %s: an item over %d bytes", request_id, self.function, limit
                    )
                    break
                parts.append(chunk)
                if ends_item:
                    item = b"".join(parts)
                    parts, size = [], 0
                    await self.send(_frame(item))
        except ConnectionResetError:
            stream.abort()  # the client went away: the handler's generator is closed
            return
        if size > limit or stream.error is not None:
            await self._tell(FAILED, request_id)

    async def _tell(self, message: str, request_id: str) -> None:
        """API Gateway's error message to the client (``{"message", "connectionId",
        "requestId"}``); nothing if the socket is gone."""
        body = {"message": message, "connectionId": self.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionResetError):
            await self.send(orjson.dumps(body).decode())

    async def _disconnect(self, code: int, reason: str) -> None:
        """``$disconnect``, best effort (the namespace's concurrency limit still applies): its
        result goes nowhere, its failure only to the log."""
        self._counters["ws_disconnects"] += 1
        request_id = str(uuid.uuid4())
        event = ws_events.disconnect_event(self._origin, request_id, code, reason)
        target = self._target
        # not metered: a rate spent by the messages must not cost the function its cleanup
        admission = dataclasses.replace(target.admission, rate_per_s=0.0)
        try:
            async with self._invoker.invocation(
                target.fv, event, request_id, admission, trigger="websocket"
            ) as result:
                if result.stream is not None:
                    async for _ in result.stream:
                        pass  # no one to send it to; the record still counts its bytes
        except HotpoolError as exc:
            log.info("$disconnect of %s (%s): %s", self.connection_id, self.function, exc.message)


class SocketTable:
    """This replica's WebSocket connections, within ``ws_max_connections``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: dict[str, WsConnection] = {}
        self.pending = 0  # upgrades whose $connect runs
        self.counters: Counter[str] = Counter()
        self._lives: set[asyncio.Task[None]] = set()

    def reserve(self) -> None:
        """Hold a place for a new connection; TooManyRequests when there is none."""
        if len(self.live) + self.pending >= self.limit:
            self.counters["ws_over_capacity"] += 1
            raise TooManyRequests(
                f"this replica holds {self.limit} WebSocket connections, its limit "
                "(HOTPOOL_WS_MAX_CONNECTIONS); retry later",
                retry_after_s=1.0,
            )
        self.pending += 1

    def start(self, conn: WsConnection, hub: Hub | None) -> asyncio.Task[None]:
        """Run ``conn`` in a task of its own: a request handler cancelled when its client
        vanishes (aiohttp's handler_cancellation) must not cancel the ``$disconnect``."""
        self.live[conn.connection_id] = conn
        life = asyncio.create_task(self._life(conn, hub), name=f"ws-{conn.connection_id}")
        self._lives.add(life)
        life.add_done_callback(self._lives.discard)
        return life

    async def _life(self, conn: WsConnection, hub: Hub | None) -> None:
        try:
            if hub is not None:
                try:
                    await hub.add(conn)
                except HotpoolError as exc:
                    log.warning("connection %s not registered: %s", conn.connection_id, exc)
                    await conn.close(1011, "Internal server error")
            await conn.serve(hub)
        finally:
            del self.live[conn.connection_id]

    async def close_all(self, timeout_s: float) -> None:
        """Close every socket (1001) and wait up to ``timeout_s`` for their ``$disconnect``."""
        connections = list(self.live.values())
        if not connections:
            return
        for conn in connections:
            asyncio.create_task(conn.close(GOING_AWAY, GOING_AWAY_REASON))  # noqa: RUF006
        ended = asyncio.gather(*(conn.ended.wait() for conn in connections))
        try:
            await asyncio.wait_for(ended, timeout_s)
        except TimeoutError:
            log.warning("%d WebSocket connections did not end in %g s", len(self._lives), timeout_s)
            for life in list(self._lives):
                life.cancel()


def _frame(item: bytes) -> str | bytes:
    """A streamed item as a message: text when it is UTF-8, else binary."""
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item

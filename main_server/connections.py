"""The connection guard in front of a service's HTTP server: a cap on open connections and a
deadline for the first request head.

aiohttp's server accepts every connection and keeps one waiting for its first request until
the keep-alive timer (75 s) fires: ~21,000 idle connections (no key needed to open one) took
every file descriptor of Main and /healthz stopped answering, and a slowloris client sending a
byte a second was held the whole time. aiohttp has neither limit, so ``ConnectionGuard``
wraps the server's protocol factory:

- at most ``max_connections`` are open; at the cap, a new connection closes the oldest one that
  has not yet sent a request head (an attacker's idle connection goes before a client's), and
  is itself refused when every open connection is serving requests;
- a connection whose first request head has not fully arrived ``header_timeout_s`` after it
  opened is closed. Later requests on a kept-alive connection are aiohttp's: its keep-alive
  timer closes a connection idle (or stuck mid-head) that long between requests.

Bodies are bounded in time where they are read (``main_server.routes``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"


class ConnectionGuard:
    """A protocol factory wrapping ``factory``'s with the cap and the header deadline."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        max_connections: int,
        header_timeout_s: float,
    ) -> None:
        self._factory = factory
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._open: dict[_GuardedConnection, None] = {}  # oldest first
        self._before_head: dict[_GuardedConnection, None] = {}  # no request head yet, oldest first
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0

    def __call__(self) -> asyncio.Protocol:
        return _GuardedConnection(self, self._factory())

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _admit(self, conn: _GuardedConnection) -> bool:
        if len(self._open) >= self.max_connections:
            oldest = next(iter(self._before_head), None)
            if oldest is None:
                self.refused += 1
                return False
            self.evicted += 1
            oldest.drop()
        self._open[conn] = None
        self._before_head[conn] = None
        return True

    def _head_arrived(self, conn: _GuardedConnection) -> None:
        self._before_head.pop(conn, None)

    def _forget(self, conn: _GuardedConnection) -> None:
        self._open.pop(conn, None)
        self._before_head.pop(conn, None)


class _GuardedConnection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol, behind the guard's checks."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes before the head's end was seen, which may start it
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._guard._admit(self):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.header_timeout_s, self._head_too_slow)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            # the end may be split across reads: the last bytes of the previous ones count
            if HEAD_END in data or HEAD_END in self._tail + data[:3]:
                self._timer.cancel()
                self._timer = None
                self._guard._head_arrived(self)
            else:
                self._tail = (self._tail + data[-3:])[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)

    def drop(self) -> None:
        """Close now (made room for a newer connection, or too slow)."""
        self._guard._forget(self)
        if self._transport is not None:
            self._transport.abort()

    def _head_too_slow(self) -> None:
        self._timer = None
        self._guard.timed_out += 1
        self.drop()


class GuardedSite(web.BaseSite):
    """A site like aiohttp's ``TCPSite``/``SockSite`` whose connections pass the guard."""

    __slots__ = ("_guard", "_listen")

    def __init__(
        self,
        runner: web.BaseRunner,
        *,
        max_connections: int,
        header_timeout_s: float,
        **listen: Any,
    ) -> None:
        super().__init__(runner)
        assert runner.server is not None
        self._guard = ConnectionGuard(
            runner.server, max_connections=max_connections, header_timeout_s=header_timeout_s
        )
        self._listen = listen  # host and port, or sock

    @property
    def name(self) -> str:
        return f"guarded {self._listen}"

    @property
    def guard(self) -> ConnectionGuard:
        return self._guard

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard, backlog=self._backlog, **self._listen)


def connection_cap(wanted: int) -> int:
    """``wanted``, or less when the process may not open that many files: at most half its
    descriptor limit, leaving the rest to Redis, the databases and the containers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and soft != resource.RLIM_INFINITY and soft < 2 * wanted:
        # the soft limit is ours to raise (the Go runtime does the same at start-up)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= 2 * wanted:
        return wanted
    capped = max(1, soft // 2)
    log.warning(
        "HOTPOOL_HTTP_MAX_CONNECTIONS=%d is over half the open-files limit (%d): using %d",
        wanted, soft, capped,
    )  # fmt: skip
    return capped

"""One WebSocket connection's outbound queue: what the ``@connections`` API sends or closes on
it, delivered in order by one task, bounded in bytes.

Every send and close for a connection held here goes through its outbox, whether it came from
a route of this replica or from another replica over pub/sub; so a slow socket holds up its own
queue and nobody else's (the pub/sub listener only appends). The task exists only while the
queue is not empty: an idle connection costs nothing here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hotpool.shared.errors import Gone

log = logging.getLogger(__name__)

# what a connection may have queued and not yet written; past it the client is too slow
outbox_max_bytes = 1024 * 1024


class Sink(Protocol):
    """What an outbox writes to (``ws_hub.LocalConnection`` is one)."""

    async def send(self, data: bytes | str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass
class Delivery:
    """One message to send, or (``data`` None) the close of the connection."""

    data: bytes | str | None
    code: int = 1000
    reason: str = ""
    # set when the caller waits for the outcome (a route of this replica); None from pub/sub
    done: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


def gone(connection_id: str) -> Gone:
    return Gone(f"connection {connection_id} is gone")


class Outbox:
    """The ordered, bounded queue of one connection, drained by one task while not empty."""

    def __init__(self, connection_id: str, sink: Sink, on_empty: Callable[[], None]) -> None:
        self._id = connection_id
        self._sink = sink
        self._on_empty = on_empty
        self._queue: collections.deque[Delivery] = collections.deque()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._cut: tuple[int, str] | None = None

    def push(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; False (nothing queued) when the queue is over its bound."""
        if self._cut is not None:
            _settle(delivery, gone(self._id))
            return True
        if self._queue and self._bytes + delivery.size > outbox_max_bytes:
            return False
        self._queue.append(delivery)
        self._bytes += delivery.size
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"ws-outbox-{self._id}")
        return True

    def cut(self, code: int, reason: str) -> None:
        """Drop what is queued (its waiters hear Gone), interrupt the send under way (the
        frame is already in the socket's buffer when it waits) and close the connection."""
        self.fail_pending()
        self._cut = (code, reason)
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"ws-outbox-{self._id}")
        else:
            self._task.cancel()

    def fail_pending(self) -> None:
        while self._queue:
            _settle(self._queue.popleft(), gone(self._id))
        self._bytes = 0

    async def _drain(self) -> None:
        try:
            while self._queue and self._cut is None:
                await self._deliver(self._queue.popleft())
            if self._cut is not None:
                await self._sink.close(*self._cut)
        except Exception as exc:
            log.info("connection %s: closing it failed (%s)", self._id, exc)
        finally:
            self._task = None
            self.fail_pending()
            self._on_empty()

    async def _deliver(self, delivery: Delivery) -> None:
        self._bytes -= delivery.size
        try:
            if delivery.data is None:
                await self._sink.close(delivery.code, delivery.reason)
            else:
                await self._sink.send(delivery.data)
        except asyncio.CancelledError:
            if self._cut is None:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            _settle(delivery, gone(self._id))
        except Exception as exc:  # the socket is broken: nothing more gets through
            log.info("connection %s: delivery failed (%s)", self._id, exc)
            _settle(delivery, gone(self._id))
            self.fail_pending()
        else:
            _settle(delivery, None)


def _settle(delivery: Delivery, error: Exception | None) -> None:
    done = delivery.done
    if done is None or done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)

"""Stand-ins for the ``/ws/{function}`` route's side of ``ConnectionHub``: sockets that record
what they were sent, and whose close ends them as the route's loop does (``hub.remove``)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from hotpool.main_server.ws_hub import ConnectionHub
from hotpool.shared.auth import Principal

_ids = itertools.count(1)


@dataclass(eq=False)
class StandInConnection:
    """A LocalConnection that records its messages and closes; ``gate`` holds up sends."""

    hub: ConnectionHub
    namespace: str = "default"
    function: str = "chat"
    connection_id: str = field(default_factory=lambda: f"conn{next(_ids):06d}=")
    connected_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    source_ip: str = "203.0.113.7"
    user_agent: str = "stand-in/1.0"
    gate: asyncio.Event | None = None
    received: list[bytes | str] = field(default_factory=list)
    closed: list[tuple[int, str]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, data: bytes | str) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        if self.gate is not None:
            await self.gate.wait()
        self.received.append(data)
        self.last_active_at = time.time()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.append((code, reason))
        # the route's loop: $disconnect, then the hub forgets the connection
        await self.hub.remove(self.connection_id)
        self.ended.set()


def key(namespaces: tuple[str, ...] = ("default",), scopes: str = "invoke") -> Principal:
    return Principal(key_id="k" * 16, namespaces=namespaces, scopes=frozenset(scopes.split(",")))

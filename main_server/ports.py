"""What the invoke path needs from the outside, as Protocols: a transport to containers, the
Manager API, a function's current version, and somewhere to send execution records.

``ContainerClient``, ``ManagerClient``, ``FunctionService`` and ``shared.execlog.RecordWriter``
are the real adapters; ``tests/fakes.py`` holds in-memory ones that script each call's outcome.

A port's failures, most specific first:

- ``shared.errors.NotDelivered``: no byte reached the container or Manager, so the caller may
  send the request elsewhere (it cannot run twice).
- ``CallFailed``: the call to a container broke after the request was (perhaps) delivered; it
  must never be sent again. Its ``AnswerTooLarge`` names an answer over the caller's limit,
  left unread: the container is fine, only its connection is dropped.
- ``TimeoutError``: the container did not answer in the time allowed (its connection is dropped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from hotpool.shared.errors import HotpoolError
from hotpool.shared.models import FunctionVersion, PoolEntry


class CallFailed(Exception):
    """The connection broke or the answer was not HTTP; the request may have run."""


class AnswerTooLarge(CallFailed):
    """The container's answer is longer than the caller's limit: it was not read (its
    connection is dropped), but the container itself is sound."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"the container's answer is {length} bytes; the limit is {limit}")
        self.length = length
        self.limit = limit


@dataclass(frozen=True)
class ColdStart:
    """A container a Manager started and specialised for one request."""

    entry: PoolEntry
    start_ms: float
    init_ms: float
    total_ms: float
    fetch_ms: float = 0.0
    prewarmed: bool = False
    placement_ms: float = 0.0
    # what the function's module printed and logged at import (Lambda's INIT output)
    init_stdout: str = ""
    init_stderr: str = ""

    def breakdown(self) -> dict[str, float | bool]:
        """Where the cold start's time went, for the execution record."""
        return {
            "placement_ms": self.placement_ms,
            "code_fetch_ms": self.fetch_ms,
            "container_start_ms": self.start_ms,
            "init_ms": self.init_ms,
            "manager_total_ms": self.total_ms,
            "prewarmed": self.prewarmed,
        }


class ResultStream(Protocol):
    """A handler's streamed result (it returned a generator), read inside the block of
    ``Invoker.invocation`` as the container produces it (see main_server.stream).

    Iterating gives ``(chunk, ends_item)``: the bytes of one item arrive in one or more chunks,
    the last with ``ends_item`` true. When iteration ends, ``error`` says how the stream ended
    if not well (a function error after the first byte, a timeout, over the byte limit).
    """

    # the web response head ({statusCode, headers, cookies, ...}) when the handler returned a
    # response whose body is a generator; None for a plain streamed result
    head: dict[str, Any] | None
    error: HotpoolError | None

    def __aiter__(self) -> AsyncIterator[tuple[bytes, bool]]: ...

    def abort(self) -> None:
        """The client went away: the handler's generator is closed (GeneratorExit), and
        iterating ends."""
        ...


class ContainerStream(Protocol):
    """A container's streamed answer, frame by frame (main_server.frames: a kind byte and its
    payload), as the container sends it; every read is bounded by the call's deadline."""

    async def frame(self) -> bytes | None:
        """The next frame, None once the stream has ended (its connection is then free);
        raises CallFailed (broken or hostile framing) or TimeoutError (past the deadline)."""
        ...

    def half_close(self) -> None:
        """Send EOF to the container (SHUT_WR): its cue to close the handler's generator and
        end the stream with an aborted summary."""
        ...

    def close(self) -> None:
        """Drop the connection unless the stream was read to its end."""
        ...


class ContainerTransport(Protocol):
    """Calls containers directly, one request per connection at a time."""

    async def call(
        self, address: str, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, bytes | ContainerStream]:
        """(status, body) of one request, the body a ``ContainerStream`` when the container
        streams its answer (read within the same ``timeout_s``); raises NotDelivered,
        CallFailed (AnswerTooLarge for an answer over the transport's limit) or TimeoutError."""
        ...

    def forget(self, address: str) -> None:
        """Drop whatever is kept for a container that is gone (its idle connections)."""
        ...


class ManagerApi(Protocol):
    """Cold starts and removals, through the Manager that runs the container."""

    async def cold_start(self, fv: FunctionVersion) -> ColdStart:
        """A container of ``fv`` started and specialised on some Manager; raises NoCapacity
        (``details["full"]`` when every Manager is full), FunctionError (the code failed to
        load), RuntimeImageMissing or ContainerFailed."""
        ...

    async def remove(self, entry: PoolEntry, *, failed: bool = False) -> dict[str, Any] | None:
        """Remove a container; with ``failed``, how it ended if it ended on its own
        (``{"error_type": ..., "message": ...}``: an OOM kill or a crash), else None."""
        ...

    async def resolve_image(self, reference: str) -> dict[str, Any]:
        """The image a reference names on the Managers' Docker daemons: ``image_id`` (the
        pin) and its ImageConfig (``entrypoint``, ``command``, ``workdir``); NotFound if no
        Manager has it, InvalidRequest if they do not run the Docker backend."""
        ...


class FunctionVersions(Protocol):
    """Where a request waiting on a retired version finds its function's current one
    (``FunctionService``)."""

    async def current(self, name: str) -> FunctionVersion:
        """The function's latest version, read fresh (not from a cache); raises
        NotFound when it was deleted."""
        ...


class RecordSink(Protocol):
    """Takes execution records without waiting (``RecordWriter``)."""

    def submit(self, record: dict[str, Any]) -> None: ...


class InvocationMetrics(Protocol):
    """Counts invocations for Prometheus (``main_server.metrics.MainMetrics``): each from its
    execution record, and those refused at admission (429) from what their record would hold."""

    def observe(self, record: dict[str, Any]) -> None: ...

    def refused(self, record: dict[str, Any]) -> None: ...

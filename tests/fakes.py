"""In-memory fakes of the invoke path's ports (``hotpool.main_server.ports``).

Like httpx's ``MockTransport``, each fake is told what the outside world does, call by call,
and records what it was asked: a test scripts the outcomes, runs the real code, and asserts
on the calls the fakes saw.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hotpool.main_server.ports import ColdStart
from hotpool.shared.errors import NotFound
from hotpool.shared.models import FunctionConfig, FunctionVersion, PoolEntry


class FakeStream:
    """A ``ContainerStream`` answering the scripted ``frames`` in order (an exception among
    them is raised when reached). ``half_close`` does what the bootstrap does: the frames not
    yet read are dropped and an aborted summary ``E`` follows, unless ``deaf`` (a container
    that ignores the EOF and goes on)."""

    def __init__(self, *frames: bytes | BaseException, deaf: bool = False) -> None:
        self.frames: deque[bytes | BaseException] = deque(frames)
        self.deaf = deaf
        self.read: list[bytes] = []
        self.half_closed = False
        self.closed = False
        self.ended = False  # read to its terminator: its connection was given back

    async def frame(self) -> bytes | None:
        assert not self.closed, "a frame read from a closed stream"
        if not self.frames:
            self.ended = True
            return None
        frame = self.frames.popleft()
        if isinstance(frame, BaseException):
            raise frame
        self.read.append(frame)
        return frame

    def half_close(self) -> None:
        self.half_closed = True
        if not self.deaf:
            summary = {"status": "success", "duration_ms": 1.0, "aborted": True}
            self.frames = deque([b"E" + orjson.dumps(summary)])

    def close(self) -> None:
        if not self.ended:
            self.closed = True


def streamed(*items: bytes, head: dict[str, Any] | None = None, **summary: Any) -> FakeStream:
    """The bootstrap's streamed answer: a head (the web form), one ``D`` frame per item, and a
    summary ``E`` (``status`` success unless given)."""
    frames = [] if head is None else [b"H" + orjson.dumps(head)]
    frames += [b"D" + item for item in items]
    end = {"status": "success", "duration_ms": 2.0, "bytes": sum(map(len, items)), **summary}
    return FakeStream(*frames, b"E" + orjson.dumps(end))


# what a container does with one POST: answer (status, body), stream, or raise (NotDelivered,
# CallFailed, TimeoutError)
Outcome = tuple[int, bytes] | FakeStream | BaseException


# a deployed function version as the invoke path and the Manager client see it
ECHO_V1 = FunctionVersion(
    "echo",
    1,
    "a" * 64,
    "code/a.zip",
    FunctionConfig(timeout_s=5.0),
    datetime(2026, 1, 1, tzinfo=UTC),
)


def success(result: Any = None, **summary: Any) -> tuple[int, bytes]:
    """The bootstrap's answer to an /invoke whose handler returned ``result``."""
    return 200, orjson.dumps({"status": "success", "result": result, **summary})


def raised(error_type: str, message: str = "", traceback: str = "") -> tuple[int, bytes]:
    """The bootstrap's answer to an /invoke whose handler raised."""
    error = {"type": error_type, "message": message, "traceback": traceback}
    return 200, orjson.dumps({"status": "error", "error": error})


@dataclass(frozen=True)
class Post:
    """One request a ``FakeTransport`` was asked to send."""

    address: str
    path: str
    body: bytes
    headers: dict[str, str]
    timeout_s: float


class FakeTransport:
    """A ``ContainerTransport``: each POST gets the next scripted outcome, whatever its address
    (a ``FakeStream`` is a streamed answer).

    A POST with nothing left to answer fails the test with an AssertionError.
    """

    def __init__(self, *outcomes: Outcome) -> None:
        self._outcomes: deque[Outcome] = deque(outcomes)
        self.posts: list[Post] = []
        self.forgotten: list[str] = []

    def script(self, *outcomes: Outcome) -> None:
        self._outcomes.extend(outcomes)

    async def call(
        self, address: str, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, bytes | FakeStream]:
        self.posts.append(Post(address, path, body, dict(headers), timeout_s))
        if not self._outcomes:
            raise AssertionError(f"unscripted POST {path} to {address}")
        outcome = self._outcomes.popleft()
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, FakeStream):
            return 200, outcome
        return outcome

    def forget(self, address: str) -> None:
        self.forgotten.append(address)


@dataclass
class FakeManagers:
    """A ``ManagerApi`` with one Manager, ``manager_id``.

    A cold start raises the next scripted error in ``refusals``, or (none left) starts a fresh
    container ``cold-1``, ``cold-2``...; ``remove`` records (container id, failed) and, with
    ``failed``, answers the container's scripted entry in ``exits`` (how it ended).
    """

    manager_id: str = "m1"
    refusals: deque[BaseException] = field(default_factory=deque)
    exits: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: list[ColdStart] = field(default_factory=list)
    removed: list[tuple[str, bool]] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def refuse(self, *errors: BaseException) -> None:
        self.refusals.extend(errors)

    async def cold_start(self, fv: FunctionVersion) -> ColdStart:
        if self.refusals:
            raise self.refusals.popleft()
        n = next(self._numbers)
        entry = PoolEntry(fv.name, fv.version, self.manager_id, f"cold-{n}", f"10.1.0.{n}:9000")
        cold = ColdStart(entry, start_ms=20.0, init_ms=5.0, total_ms=30.0, fetch_ms=1.0)
        self.started.append(cold)
        return cold

    async def remove(self, entry: PoolEntry, *, failed: bool = False) -> dict[str, Any] | None:
        self.removed.append((entry.container_id, failed))
        return self.exits.get(entry.container_id) if failed else None


class FakeVersions:
    """A ``FunctionVersions``: the current version of each function, set by the test."""

    def __init__(self, *current: FunctionVersion) -> None:
        self.latest = {fv.name: fv for fv in current}
        self.asked: list[str] = []

    def deploy(self, fv: FunctionVersion) -> FunctionVersion:
        """Make the next version of ``fv``'s function current."""
        self.latest[fv.name] = dataclasses.replace(fv, version=fv.version + 1)
        return self.latest[fv.name]

    async def current(self, name: str) -> FunctionVersion:
        self.asked.append(name)
        if name not in self.latest:
            raise NotFound(f"function {name} not found")
        return self.latest[name]


class FakeRecords:
    """A ``RecordSink`` that keeps every record submitted, in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def submit(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

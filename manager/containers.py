"""Every container of one node in one table, each record in one state of its life cycle.

A record exists from the moment its start begins until its removal has finished. Its state
changes only through ``Record.move``, which refuses any step ``TRANSITIONS`` does not allow, and
every number the Manager reports (running, serving, the pre-warm pool, its listing) is a query
over the table, so no count can drift from the containers it counts (OpenWhisk's ContainerPool
keeps its decisions over such a snapshot for the same reason).

    STARTING ──started──> GENERIC ──take / specialise──> INITIALISING ──> READY
        └──────────────────────┴────────────────────────────┴──────────────┴──> REMOVING ─> dropped
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hotpool.manager.backend import Container, ContainerState, ExitStatus, can_transition
from hotpool.shared.models import PoolEntry

S = ContainerState

max_remembered_exits = 1000

# a container holding (or receiving) one function version's code
LOADED = frozenset({S.INITIALISING, S.READY})
# the states of a pre-warmed container still in the pre-warm pool
SPARE = frozenset({S.STARTING, S.GENERIC})


class IllegalTransition(RuntimeError):
    """A container was asked to take a step its life cycle does not allow: a bug, never an
    answer to a caller."""


@dataclass(eq=False)
class Record:
    """One container of the node and what its state carries.

    ``key`` is the container's id once the backend has started it; before that it is a ticket
    number (an int), which no container id (a str) can ever equal.
    """

    key: str | int
    runtime: str
    memory_mb: int
    prewarmed: bool = False  # started by the pre-warm pool, not by a cold start
    container: Container | None = None  # once started
    entry: PoolEntry | None = None  # once specialised
    _state: ContainerState = dataclasses.field(default=S.STARTING, init=False)

    @property
    def state(self) -> ContainerState:
        return self._state

    @property
    def id(self) -> str:
        """The container's id; only started records are ever asked for it."""
        if self.container is None:
            raise IllegalTransition(f"start #{self.key} has no container yet")
        return self.container.id

    @property
    def live(self) -> bool:
        return self.state is not S.REMOVING

    @property
    def spare(self) -> bool:
        """In the pre-warm pool: pre-warmed and not (yet) taken for a function."""
        return self.prewarmed and self.state in SPARE

    def move(self, to: ContainerState) -> None:
        """Take one step of the life cycle; raise IllegalTransition for a step it forbids."""
        if not can_transition(self.state, to):
            raise IllegalTransition(
                f"container {self.key}: {self.state.value} -> {to.value} is not a transition"
            )
        self._state = to

    def resize(self, memory_mb: int) -> None:
        """Record the memory limit the backend has just given the container."""
        self.memory_mb = memory_mb
        if self.container is not None:
            self.container = dataclasses.replace(self.container, memory_mb=memory_mb)

    def describe(self) -> dict[str, Any]:
        container = self.container
        return {
            "container_id": container.id if container else None,
            "address": container.address if container else None,
            "state": self.state.value,
            "runtime": self.runtime,
            "memory_mb": self.memory_mb,
            "entry": self.entry.encode() if self.entry else None,
            "started_at": container.started_at if container else None,
            "prewarmed": self.prewarmed,
        }


class ContainerTable:
    """Every container of this node, by id (by ticket while starting)."""

    def __init__(self) -> None:
        self._records: dict[str | int, Record] = {}
        self._tickets = itertools.count(1)
        # how the containers that died on their own ended, for a caller that asks afterwards
        self._exits: dict[str, ExitStatus] = {}

    def __iter__(self) -> Iterator[Record]:
        return iter(list(self._records.values()))

    # -- the life cycle ------------------------------------------------------------------------

    def begin(self, runtime: str, memory_mb: int, *, prewarmed: bool = False) -> Record:
        """A start begins: a STARTING record, counted from now on, keyed by a ticket."""
        record = Record(next(self._tickets), runtime, memory_mb, prewarmed)
        self._records[record.key] = record
        return record

    def started(self, record: Record, container: Container) -> None:
        """The backend started ``record``'s container: re-key it by the container's id."""
        record.move(S.GENERIC)
        del self._records[record.key]
        record.key = container.id
        record.container = container
        record.memory_mb = container.memory_mb
        self._records[container.id] = record

    def take_spare(self, runtime: str) -> Record | None:
        """The oldest pre-warmed generic container of ``runtime``, now INITIALISING; or None."""
        for record in self._records.values():
            if record.spare and record.state is S.GENERIC and record.runtime == runtime:
                record.move(S.INITIALISING)
                return record
        return None

    def drop(self, record: Record) -> None:
        """Forget a record whose removal has finished; only a REMOVING one may go."""
        if record.state is not S.REMOVING:
            raise IllegalTransition(f"container {record.key} is {record.state.value}, not removing")
        if self._records.get(record.key) is record:
            del self._records[record.key]

    @contextlib.contextmanager
    def removing(self, record: Record) -> Iterator[Record]:
        """Move ``record`` to REMOVING for the block that removes it, and drop it after."""
        record.move(S.REMOVING)
        try:
            yield record
        finally:
            self.drop(record)

    def discard(self, record: Record) -> None:
        """Move a record to REMOVING and drop it at once: a start that produced no container,
        or a pre-warmed one that died, has nothing left to remove."""
        record.move(S.REMOVING)
        self.drop(record)

    def remember_exit(self, container_id: str, status: ExitStatus) -> None:
        self._exits[container_id] = status
        if len(self._exits) > max_remembered_exits:
            self._exits.pop(next(iter(self._exits)))

    def exit_of(self, container_id: str) -> ExitStatus | None:
        """How ``container_id`` ended, if it died on its own not long ago."""
        return self._exits.get(container_id)

    # -- queries -------------------------------------------------------------------------------

    def get(self, container_id: str) -> Record | None:
        """The live started record of ``container_id``, or None."""
        record = self._records.get(container_id)
        return record if record is not None and record.live else None

    def loaded(self, container_id: str) -> Record | None:
        """The record of ``container_id`` if it holds a function (INITIALISING or READY)."""
        record = self._records.get(container_id)
        return record if record is not None and record.state in LOADED else None

    def in_state(self, *states: ContainerState) -> list[Record]:
        return [r for r in self._records.values() if r.state in states]

    def spares(self, *states: ContainerState, runtime: str | None = None) -> list[Record]:
        """The pre-warm pool's records (in ``states``, of ``runtime``, if given)."""
        return [
            r
            for r in self._records.values()
            if r.spare and (not states or r.state in states) and runtime in (None, r.runtime)
        ]

    @property
    def running(self) -> int:
        """Live containers: starting, generic, initialising and ready."""
        return sum(1 for r in self._records.values() if r.live)

    @property
    def serving(self) -> int:
        """Live containers counted against capacity for cold starts: all but the pre-warm
        pool's, which are spare."""
        return sum(1 for r in self._records.values() if r.live and not r.spare)

    @property
    def memory_mb(self) -> int:
        """MB the live containers hold (their memory limits), pre-warmed ones included."""
        return sum(r.memory_mb for r in self._records.values() if r.live)

    def room(self, capacity: int, *, memory_mb: int | None = None, each_mb: int = 0) -> int:
        """How many more containers fit on the node: of ``capacity`` containers and, when
        ``memory_mb`` is given, within that many MB at ``each_mb`` each."""
        room = capacity - self.running
        if memory_mb is not None and each_mb > 0:
            room = min(room, (memory_mb - self.memory_mb) // each_mb)
        return room

    def loaded_ids(self) -> set[str]:
        return {r.id for r in self.in_state(*LOADED)}

    def known_ids(self) -> set[str]:
        """Ids of every live started container: the ones a reconcile must not remove."""
        return {r.id for r in self._records.values() if r.live and r.container is not None}

    def ready_entries(self) -> list[PoolEntry]:
        """The pool entry of every READY container."""
        return [r.entry for r in self.in_state(S.READY) if r.entry is not None]

    def describe(self) -> list[dict[str, Any]]:
        """The containers holding a function, as the Manager's API lists them."""
        return [r.describe() for r in self.in_state(*LOADED)]

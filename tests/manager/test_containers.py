"""The node's container table: every state change through ``move``, every count a query over it."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hotpool.manager.backend import Container, ContainerState, ExitStatus, can_transition
from hotpool.manager.containers import ContainerTable, IllegalTransition, Record
from hotpool.manager.prewarm import PrewarmPool, missing
from hotpool.shared.models import PoolEntry

pytestmark = pytest.mark.unit

S = ContainerState
ALL_PAIRS = list(itertools.product(ContainerState, repeat=2))
_ids = itertools.count(1)


def container(runtime: str = "python", memory_mb: int = 128) -> Container:
    n = next(_ids)
    return Container(f"c{n}", f"127.0.0.1:{10000 + n}", runtime, memory_mb, started_at=float(n))


def record_in(table: ContainerTable, state: ContainerState) -> Record:
    """A record brought to ``state`` along the life cycle's own path."""
    record = table.begin("python", 128)
    path = {
        S.STARTING: [],
        S.GENERIC: [S.GENERIC],
        S.INITIALISING: [S.GENERIC, S.INITIALISING],
        S.READY: [S.GENERIC, S.INITIALISING, S.READY],
        S.REMOVING: [S.REMOVING],
    }[state]
    for step in path:
        if step is S.GENERIC:
            table.started(record, container())
        else:
            record.move(step)
    return record


# -- move ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_move_takes_exactly_the_legal_steps(pair):
    current, to = pair
    record = record_in(ContainerTable(), current)

    if can_transition(current, to):
        record.move(to)
        assert record.state is to
    else:
        with pytest.raises(IllegalTransition):
            record.move(to)
        assert record.state is current


def test_illegal_transition_is_a_bug_not_an_http_answer():
    assert issubclass(IllegalTransition, RuntimeError)


# -- provisional keys ------------------------------------------------------------------------


def test_a_starting_record_is_counted_under_a_ticket_until_its_container_has_an_id():
    table = ContainerTable()
    record = table.begin("python", 128)

    assert record.state is S.STARTING and record.container is None
    assert table.running == 1 and table.serving == 1
    assert table.known_ids() == set()  # nothing a reconcile could confuse with a container

    c = container()
    table.started(record, c)

    assert record.key == c.id and record.state is S.GENERIC
    assert table.get(c.id) is record and list(table) == [record]
    assert table.running == 1


def test_a_container_id_that_looks_like_a_ticket_does_not_collide():
    table = ContainerTable()
    first = table.begin("python", 128)
    second = table.begin("python", 128)
    named_like_a_ticket = Container(str(second.key), "h:1", "python", 128, 0.0)

    table.started(first, named_like_a_ticket)

    assert set(map(id, table)) == {id(first), id(second)}
    assert second.state is S.STARTING and table.get(str(second.key)) is first


def test_started_refuses_a_record_that_is_not_starting_and_changes_nothing():
    table = ContainerTable()
    record = record_in(table, S.GENERIC)
    before = record.key

    with pytest.raises(IllegalTransition):
        table.started(record, container())

    assert record.key == before and list(table) == [record]


def test_started_takes_the_memory_the_backend_gave():
    table = ContainerTable()
    record = table.begin("python", 128)

    table.started(record, container(memory_mb=256))

    assert record.memory_mb == 256


# -- removal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in S if s is not S.REMOVING], ids=lambda s: s.value)
def test_only_a_removing_record_can_be_dropped(state):
    table = ContainerTable()
    record = record_in(table, state)

    with pytest.raises(IllegalTransition):
        table.drop(record)

    assert list(table) == [record]


def test_removing_holds_the_record_out_of_every_count_and_drops_it_even_on_error():
    table = ContainerTable()
    record = record_in(table, S.READY)

    with pytest.raises(OSError), table.removing(record):
        assert record.state is S.REMOVING
        assert table.running == 0 and table.loaded(record.id) is None and table.describe() == []
        raise OSError("the backend failed")

    assert list(table) == []


def test_a_discarded_start_leaves_nothing():
    table = ContainerTable()
    record = table.begin("python", 128, prewarmed=True)

    table.discard(record)

    assert list(table) == [] and table.running == 0 and record.state is S.REMOVING


def test_exits_are_remembered_up_to_a_bound(monkeypatch):
    monkeypatch.setattr("hotpool.manager.containers.max_remembered_exits", 2)
    table = ContainerTable()
    for n in range(3):
        table.remember_exit(f"c{n}", ExitStatus(n))

    assert table.exit_of("c0") is None
    assert table.exit_of("c2") == ExitStatus(2)


# -- queries ---------------------------------------------------------------------------------


def test_take_spare_takes_the_oldest_generic_prewarmed_container_of_the_runtime():
    table = ContainerTable()
    pending = table.begin("python", 128, prewarmed=True)  # not started yet: cannot be taken
    cold = record_in(table, S.GENERIC)  # a cold start's own container, not a spare
    other = table.begin("node", 128, prewarmed=True)
    table.started(other, container("node"))
    first, second = (table.begin("python", 128, prewarmed=True) for _ in range(2))
    table.started(first, container())
    table.started(second, container())

    taken = table.take_spare("python")

    assert taken is first and taken.state is S.INITIALISING
    assert table.take_spare("python") is second
    assert table.take_spare("python") is None
    assert pending.state is S.STARTING and cold.state is S.GENERIC and other.state is S.GENERIC


def test_describe_lists_containers_holding_a_function_in_the_api_shape():
    table = ContainerTable()
    record_in(table, S.GENERIC)
    table.begin("python", 128)
    initialising = record_in(table, S.INITIALISING)
    ready = record_in(table, S.READY)
    ready.entry = PoolEntry("fn", 1, "m1", ready.id, ready.container.address)

    listed = table.describe()

    assert [c["container_id"] for c in listed] == [initialising.id, ready.id]
    assert listed[1] == {
        "container_id": ready.id,
        "address": ready.container.address,
        "state": "ready",
        "runtime": "python",
        "memory_mb": 128,
        "entry": ready.entry.encode(),
        "started_at": ready.container.started_at,
        "prewarmed": False,
    }
    assert table.ready_entries() == [ready.entry]


# -- random life cycles against a model ------------------------------------------------------


@dataclass
class Model:
    """What the table should hold for one record, kept without the table's help."""

    state: ContainerState
    prewarmed: bool
    runtime: str
    generic_at: int | None = None  # when it became generic: spares are taken oldest first


RUNTIMES = ("python", "node")


class TableMachine(RuleBasedStateMachine):
    """Random sequences of starts, pre-warms, takes, readies, removals and deaths."""

    @initialize()
    def setup(self):
        self.table = ContainerTable()
        self.model: dict[int, Model] = {}  # by serial number of the record
        self.records: dict[int, Record] = {}
        self.serial: dict[int, int] = {}  # id() of a record -> its serial number
        self.clock = itertools.count()

    def _pick(self, data, *states):
        keys = sorted(k for k, m in self.model.items() if m.state in states)
        if not keys:
            return None
        return data.draw(st.sampled_from(keys))

    @rule(runtime=st.sampled_from(RUNTIMES), prewarmed=st.booleans())
    def start_begins(self, runtime, prewarmed):
        record = self.table.begin(runtime, 128, prewarmed=prewarmed)
        n = next(self.clock)
        self.records[n], self.serial[id(record)] = record, n
        self.model[n] = Model(S.STARTING, prewarmed, runtime)

    @rule(data=st.data())
    def start_ends(self, data):
        key = self._pick(data, S.STARTING)
        if key is None:
            return
        record, model = self.records[key], self.model[key]
        self.table.started(record, container(model.runtime))
        model.state, model.generic_at = S.GENERIC, next(self.clock)
        if not model.prewarmed:  # a cold start specialises its own container at once
            record.move(S.INITIALISING)
            model.state = S.INITIALISING

    @rule(data=st.data())
    def start_fails(self, data):
        key = self._pick(data, S.STARTING)
        if key is None:
            return
        self.table.discard(self.records[key])
        del self.model[key]

    @rule(runtime=st.sampled_from(RUNTIMES))
    def take_for_specialisation(self, runtime):
        spares = [
            (m.generic_at, k)
            for k, m in self.model.items()
            if m.prewarmed and m.state is S.GENERIC and m.runtime == runtime
        ]
        taken = self.table.take_spare(runtime)
        if not spares:
            assert taken is None
            return
        _, key = min(spares)
        assert taken is self.records[key]
        self.model[key].state = S.INITIALISING

    @rule(data=st.data())
    def ready(self, data):
        key = self._pick(data, S.INITIALISING)
        if key is None:
            return
        self.records[key].move(S.READY)
        self.model[key].state = S.READY

    @rule(data=st.data())
    def removing(self, data):
        key = self._pick(data, S.GENERIC, S.INITIALISING, S.READY)
        if key is None:
            return
        self.records[key].move(S.REMOVING)
        self.model[key].state = S.REMOVING

    @rule(data=st.data())
    def removed(self, data):
        key = self._pick(data, S.REMOVING)
        if key is None:
            return
        self.table.drop(self.records[key])
        del self.model[key]

    @rule(data=st.data())
    def died(self, data):
        key = self._pick(data, S.GENERIC, S.INITIALISING, S.READY)
        if key is None:
            return
        with self.table.removing(self.records[key]):
            pass
        del self.model[key]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), to=st.sampled_from(list(ContainerState)))
    def an_illegal_step_is_refused(self, data, to):
        key = data.draw(st.sampled_from(sorted(self.model)))
        record = self.records[key]
        if can_transition(record.state, to):
            return
        before = record.state
        with pytest.raises(IllegalTransition):
            record.move(to)
        assert record.state is before

    @invariant()
    def counts_match_the_model(self):
        live = [m for m in self.model.values() if m.state is not S.REMOVING]
        spare = [m for m in live if m.prewarmed and m.state in (S.STARTING, S.GENERIC)]
        assert self.table.running == len(live)
        assert self.table.serving == len(live) - len(spare)
        assert len(self.table.spares()) == len(spare)
        for runtime in RUNTIMES:
            generic = [m for m in spare if m.state is S.GENERIC and m.runtime == runtime]
            assert len(self.table.spares(S.GENERIC, runtime=runtime)) == len(generic)
        assert self.table.room(10) == 10 - len(live)

    @invariant()
    def every_record_is_in_exactly_one_state(self):
        records = list(self.table)
        assert {self.serial[id(r)] for r in records} == set(self.model)
        by_state = [self.table.in_state(s) for s in ContainerState]
        assert sum(len(rs) for rs in by_state) == len(records)
        for state, rs in zip(ContainerState, by_state, strict=True):
            assert all(self.model[self.serial[id(r)]].state is state for r in rs)

    @invariant()
    def listings_match_the_model(self):
        loaded = {
            self.records[k].id
            for k, m in self.model.items()
            if m.state in (S.INITIALISING, S.READY)
        }
        assert self.table.loaded_ids() == loaded
        assert {c["container_id"] for c in self.table.describe()} == loaded
        started_live = {
            self.records[k].id
            for k, m in self.model.items()
            if m.state not in (S.STARTING, S.REMOVING)
        }
        assert self.table.known_ids() == started_live

    @invariant()
    def removing_is_terminal(self):
        for k, m in self.model.items():
            if m.state is S.REMOVING:
                for to in ContainerState:
                    with pytest.raises(IllegalTransition):
                        self.records[k].move(to)


TableMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_table_against_a_model = TableMachine.TestCase


# -- the pre-warm pool over the table --------------------------------------------------------


class GatedBackend:
    """An in-memory backend whose starts wait for ``gate``, or fail while ``failing``."""

    name = "fake"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.failing = False
        self.removed: list[str] = []

    async def start(self, spec) -> Container:
        await self.gate.wait()
        if self.failing:
            raise OSError("no room on the node")
        return container(spec.runtime, spec.memory_mb)

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)


async def settle() -> None:
    """Let every task runnable now run until it waits."""
    for _ in range(10):
        await asyncio.sleep(0)


def prewarm_pool(table: ContainerTable, backend: GatedBackend, **kw) -> PrewarmPool:
    values = {"runtimes": ("python",), "count": 2, "memory_mb": 128, "labels": {}}
    return PrewarmPool(backend, table, **(values | {"capacity": 10} | kw))


async def test_prewarm_starts_are_records_from_the_moment_they_begin():
    table, backend = ContainerTable(), GatedBackend()
    pool = prewarm_pool(table, backend)

    fill = asyncio.create_task(pool.fill())
    await settle()

    assert pool.size == 2 and pool.ready("python") == 0
    assert table.running == 2 and table.serving == 0  # spare, not counted for cold starts
    backend.gate.set()
    await fill
    assert pool.ready("python") == 2 and pool.ids() == table.known_ids()
    await pool.fill()  # full: nothing more starts
    assert table.running == 2


async def test_prewarm_never_starts_past_the_room_on_the_node():
    table, backend = ContainerTable(), GatedBackend()
    backend.gate.set()
    record_in(table, S.READY)
    pool = prewarm_pool(table, backend, capacity=2)

    await pool.fill()

    assert pool.ready("python") == 1 and table.running == 2


async def test_prewarm_never_starts_past_the_memory_of_the_node():
    table, backend = ContainerTable(), GatedBackend()
    backend.gate.set()
    record_in(table, S.READY)  # 128 MB
    pool = prewarm_pool(table, backend, capacity=10, capacity_memory_mb=300)

    await pool.fill()

    assert pool.ready("python") == 1 and table.memory_mb == 256


def test_memory_counts_every_live_container_and_room_both_limits():
    table = ContainerTable()
    for state in (S.STARTING, S.GENERIC, S.READY, S.REMOVING):
        record_in(table, state)

    assert table.memory_mb == 3 * 128  # the removing one no longer counts
    assert table.room(10) == 7
    assert table.room(10, memory_mb=640, each_mb=128) == 2


async def test_a_failed_or_cancelled_prewarm_start_leaves_no_record():
    table, backend = ContainerTable(), GatedBackend()
    pool = prewarm_pool(table, backend)
    backend.failing = True
    backend.gate.set()
    await pool.fill()
    assert list(table) == []

    backend.gate.clear()
    fill = asyncio.create_task(pool.fill())
    await settle()
    assert table.running == 2
    fill.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fill
    assert list(table) == []


async def test_take_forget_and_close_move_the_pools_records():
    table, backend = ContainerTable(), GatedBackend()
    backend.gate.set()
    pool = prewarm_pool(table, backend, count=3)
    await pool.fill()
    first, died, kept = (r.id for r in table)

    taken = pool.take("python")
    assert taken.id == first and taken.prewarmed and table.serving == 1
    assert pool.forget(died) and not pool.forget(died) and not pool.forget(first)
    assert pool.ids() == {kept}

    await pool.close()

    assert backend.removed == [kept] and pool.size == 0
    assert [r.id for r in table] == [first]  # the specialised one is the Manager's to remove


@given(ready=st.integers(0, 5), starting=st.integers(0, 5), target=st.integers(0, 5),
       room=st.integers(-3, 8))  # fmt: skip
def test_missing_fills_to_the_target_within_the_room(ready, starting, target, room):
    n = missing(ready, starting, target, room)

    assert n >= 0 and n <= max(room, 0)
    assert ready + starting + n <= max(target, ready + starting)
    if room >= target - ready - starting:
        assert ready + starting + n >= target

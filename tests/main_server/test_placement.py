"""Tests of main_server.placement: choosing a Manager for a cold start."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server.placement import choose_manager
from hotpool.shared.registry import ManagerInfo

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


def mgr(
    id: str,
    *,
    capacity: int = 10,
    running: int = 0,
    accepting: bool = True,
    alive: bool = True,
    idle: int = 0,
    memory_mb: int = 0,
    capacity_memory_mb: int = 0,
) -> ManagerInfo:
    return ManagerInfo(
        id=id,
        url=f"http://{id}:8081",
        capacity=capacity,
        running=running,
        accepting=accepting,
        heartbeat_at=1000.0,
        alive=alive,
        idle=idle,
        memory_mb=memory_mb,
        capacity_memory_mb=capacity_memory_mb,
    )


@pytest.mark.parametrize(
    ("managers", "pending", "expected"),
    [
        pytest.param([], {}, None, id="empty"),
        pytest.param([mgr("a")], {}, "a", id="one"),
        pytest.param([mgr("a", alive=False), mgr("b", running=9)], {}, "b", id="dead-skipped"),
        pytest.param([mgr("a", alive=False)], {}, None, id="only-dead"),
        pytest.param(
            [mgr("a", accepting=False), mgr("b", running=9)], {}, "b", id="not-accepting-skipped"
        ),
        pytest.param([mgr("a", accepting=False)], {}, None, id="only-draining"),
        pytest.param([mgr("a", running=10), mgr("b", running=9)], {}, "b", id="full-skipped"),
        pytest.param([mgr("a", running=11)], {}, None, id="over-full"),
        pytest.param([mgr("a", capacity=0)], {}, None, id="zero-capacity"),
        pytest.param(
            [mgr("a", running=5), mgr("b", running=2), mgr("c", running=7)],
            {},
            "b",
            id="least-loaded",
        ),
        pytest.param(
            # by ratio, not by count: 3/4 is fuller than 10/100
            [mgr("small", capacity=4, running=3), mgr("big", capacity=100, running=10)],
            {},
            "big",
            id="ratio-not-count",
        ),
        pytest.param(
            [mgr("a", running=1), mgr("b", running=3)], {"a": 4}, "b", id="pending-counted"
        ),
        pytest.param(
            [mgr("a", running=6), mgr("b", running=9)], {"b": 1}, "a", id="pending-fills-up"
        ),
        pytest.param([mgr("a", running=9)], {"a": 1}, None, id="pending-makes-full"),
        pytest.param([mgr("a", running=0)], {"unknown": 50}, "a", id="pending-of-unknown-ignored"),
        pytest.param(
            [mgr("c", running=2), mgr("a", running=2), mgr("b", running=2)], {}, "a", id="tie-by-id"
        ),
        pytest.param(
            [mgr("b", capacity=4, running=2), mgr("a", capacity=10, running=5)],
            {},
            "a",
            id="equal-ratio-tie-by-id",
        ),
    ],
)
def test_choose_manager(managers, pending, expected):
    chosen = choose_manager(managers, pending)

    assert (chosen.id if chosen else None) == expected


def test_choose_manager_does_not_change_its_inputs():
    managers = [mgr("a", running=1), mgr("b")]
    pending = {"b": 2}

    choose_manager(managers, pending)

    assert managers == [mgr("a", running=1), mgr("b")]
    assert pending == {"b": 2}


manager_infos = st.builds(
    mgr,
    id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    capacity=st.integers(min_value=0, max_value=200),
    running=st.integers(min_value=0, max_value=250),
    accepting=st.booleans(),
    alive=st.booleans(),
)


def eligible(m: ManagerInfo, pending: dict[str, int]) -> bool:
    return m.alive and m.accepting and m.running + pending.get(m.id, 0) < m.capacity


def load(m: ManagerInfo, pending: dict[str, int]) -> Fraction:
    return Fraction(m.running + pending.get(m.id, 0), m.capacity)


@given(
    managers=st.lists(manager_infos, max_size=8, unique_by=lambda m: m.id),
    pending=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e", "f", "x"]), st.integers(0, 50), max_size=7
    ),
)
def test_choose_manager_picks_an_eligible_least_loaded_manager(managers, pending):
    chosen = choose_manager(managers, pending)

    candidates = [m for m in managers if eligible(m, pending)]
    if chosen is None:
        assert candidates == []
        return
    assert chosen in managers
    assert chosen.alive and chosen.accepting
    assert chosen.running + pending.get(chosen.id, 0) < chosen.capacity
    best = load(chosen, pending)
    assert all(load(m, pending) >= best for m in candidates)
    # ties go to the smallest id, so every Main picks the same Manager from one snapshot
    assert chosen.id == min(m.id for m in candidates if load(m, pending) == best)


# --- a Manager full of idle containers still takes cold starts (issue 12 item 3) ----------------


@pytest.mark.parametrize(
    ("managers", "pending", "memory_mb", "expected"),
    [
        pytest.param([mgr("a", running=10, idle=3)], {}, 128, "a", id="full-of-idle-chosen"),
        pytest.param([mgr("a", running=10, idle=0)], {}, 128, None, id="full-of-busy-skipped"),
        pytest.param(
            [mgr("a", running=10, idle=5), mgr("b", running=9)], {}, 128, "b", id="room-first"
        ),
        pytest.param(
            [mgr("a", running=10, idle=2), mgr("b", running=10, idle=6)],
            {},
            128,
            "b",
            id="most-idle",
        ),
        pytest.param([mgr("a", running=10, idle=2)], {"a": 2}, 128, None, id="idle-all-pending"),
        pytest.param([mgr("a", running=10, idle=2)], {"a": 1}, 128, "a", id="idle-left-over"),
        pytest.param(
            [mgr("a", running=10, idle=4, accepting=False)], {}, 128, None, id="draining-idle"
        ),
        pytest.param([mgr("a", running=10, idle=4, alive=False)], {}, 128, None, id="dead-idle"),
        pytest.param(
            [mgr("a", memory_mb=900, capacity_memory_mb=1024), mgr("b", running=5)],
            {},
            256,
            "b",
            id="memory-full-skipped-for-room",
        ),
        pytest.param(
            [mgr("a", memory_mb=900, capacity_memory_mb=1024, idle=1)],
            {},
            256,
            "a",
            id="memory-full-of-idle-chosen",
        ),
        pytest.param(
            [mgr("a", memory_mb=768, capacity_memory_mb=1024)], {}, 256, "a", id="memory-just-fits"
        ),
        pytest.param(
            [mgr("a", capacity_memory_mb=512, idle=5), mgr("b", capacity_memory_mb=2048)],
            {},
            1024,
            "b",
            id="too-small-node-skipped",
        ),
        pytest.param(
            [mgr("a", capacity_memory_mb=512, idle=5)], {}, 1024, None, id="no-node-large-enough"
        ),
        pytest.param([mgr("a", memory_mb=10**6)], {}, 256, "a", id="memory-not-reported"),
    ],
)
def test_choose_manager_with_idle_and_memory(managers, pending, memory_mb, expected):
    chosen = choose_manager(managers, pending, memory_mb)

    assert (chosen.id if chosen else None) == expected


@given(
    managers=st.lists(
        st.builds(
            mgr,
            id=st.sampled_from(["a", "b", "c", "d"]),
            capacity=st.integers(1, 20),
            running=st.integers(0, 25),
            idle=st.integers(0, 25),
            memory_mb=st.integers(0, 4096),
            capacity_memory_mb=st.sampled_from([0, 512, 1024, 4096]),
        ),
        max_size=6,
        unique_by=lambda m: m.id,
    ),
    pending=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 5)),
    memory_mb=st.sampled_from([128, 256, 1024, 2048]),
)
def test_choose_manager_prefers_real_room_over_eviction(managers, pending, memory_mb):
    chosen = choose_manager(managers, pending, memory_mb)

    def fits(m: ManagerInfo) -> bool:
        return m.running + pending.get(m.id, 0) < m.capacity and (
            not m.capacity_memory_mb or m.memory_mb + memory_mb <= m.capacity_memory_mb
        )

    def evictable(m: ManagerInfo) -> bool:
        return m.idle > pending.get(m.id, 0)

    usable = [
        m
        for m in managers
        if m.alive
        and m.accepting
        and (not m.capacity_memory_mb or memory_mb <= m.capacity_memory_mb)
        and (fits(m) or evictable(m))
    ]
    if chosen is None:
        assert usable == []
        return
    assert chosen in usable
    if any(fits(m) for m in usable):
        assert fits(chosen)

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
) -> ManagerInfo:
    return ManagerInfo(
        id=id,
        url=f"http://{id}:8081",
        capacity=capacity,
        running=running,
        accepting=accepting,
        heartbeat_at=1000.0,
        alive=alive,
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

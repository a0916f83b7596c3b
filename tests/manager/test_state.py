"""Tests of the container life cycle (manager.backend.ContainerState transitions)."""

from __future__ import annotations

import itertools

import pytest

from hotpool.manager.backend import TRANSITIONS, ContainerState, can_transition

pytestmark = pytest.mark.unit

S = ContainerState

# the life cycle, written out independently of the table under test
ALLOWED = {
    (S.STARTING, S.GENERIC),
    (S.STARTING, S.REMOVING),
    (S.GENERIC, S.INITIALISING),
    (S.GENERIC, S.REMOVING),
    (S.INITIALISING, S.READY),
    (S.INITIALISING, S.REMOVING),
    (S.READY, S.REMOVING),
}
ALL_PAIRS = list(itertools.product(ContainerState, repeat=2))


def pair_id(pair: tuple[ContainerState, ContainerState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[pair_id(p) for p in ALL_PAIRS])
def test_transition_is_allowed_exactly_when_the_life_cycle_says_so(pair):
    current, new = pair

    assert can_transition(current, new) is (pair in ALLOWED)


def test_every_state_has_a_row_in_the_table():
    assert set(TRANSITIONS) == set(ContainerState)


@pytest.mark.parametrize("new", list(ContainerState), ids=lambda s: s.value)
def test_removing_is_terminal(new):
    assert not can_transition(S.REMOVING, new)


@pytest.mark.parametrize("current", list(ContainerState), ids=lambda s: s.value)
def test_nothing_goes_back_to_starting(current):
    assert not can_transition(current, S.STARTING)


@pytest.mark.parametrize(
    "current", [s for s in ContainerState if s is not S.REMOVING], ids=lambda s: s.value
)
def test_every_live_state_can_be_removed(current):
    assert can_transition(current, S.REMOVING)


def test_a_container_must_be_initialised_before_it_is_ready():
    assert not can_transition(S.STARTING, S.READY)
    assert not can_transition(S.GENERIC, S.READY)
    # a container loaded with one version never takes another's code (BRIEF.md §3.4)
    assert not can_transition(S.READY, S.INITIALISING)
    assert not can_transition(S.READY, S.GENERIC)

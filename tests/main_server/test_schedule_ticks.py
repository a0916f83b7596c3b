"""Which ticks are due (main_server.schedule_ticks): pure functions of the expression, the
schedule's state and a fake ``now``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server.schedule_ticks import Due, due_ticks, lateness_s, start_of

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Every:
    """A stand-in expression: every ``period_s`` from ``anchor``."""

    period_s: float
    anchor: float = 0.0

    def ticks(self, after, until):
        n = math.floor((after - self.anchor) / self.period_s) + 1
        while (tick := self.anchor + n * self.period_s) <= until:
            yield tick
            n += 1

    def next_after(self, t):
        return next(self.ticks(t, math.inf))


def test_the_ticks_since_the_last_one_up_to_now_are_due_in_order():
    assert due_ticks(Every(10), since=100, now=135, catch_up_s=300) == Due([110, 120, 130])
    # the one at now is due; none is due twice (since is exclusive)
    assert due_ticks(Every(10), since=130, now=140, catch_up_s=300) == Due([140])
    assert due_ticks(Every(10), since=140, now=140, catch_up_s=300) == Due()
    assert due_ticks(Every(10), since=140, now=139, catch_up_s=300) == Due()


def test_ticks_older_than_the_catch_up_window_are_counted_missed_not_dropped():
    due = due_ticks(Every(10), since=0, now=1000, catch_up_s=45)
    assert due.fire == [960, 970, 980, 990, 1000]
    assert (due.missed, due.last_missed) == (95, 950)


def test_a_schedule_far_behind_catches_up_over_several_turns():
    expr = Every(1)
    since, turns, fired, missed = 0.0, 0, [], 0
    while True:
        due = due_ticks(expr, since, now=2500, catch_up_s=600, limit=1000)
        if not due.fire and not due.missed:
            break
        turns += 1
        fired += due.fire
        missed += due.missed
        since = due.fire[-1] if due.fire else due.last_missed
    assert turns == 3
    assert missed == 1899 and fired == [float(t) for t in range(1900, 2501)]


def test_fire_times_come_from_the_expression_not_from_when_the_loop_wakes():
    expr = Every(60, anchor=7)
    # however late or often the leader wakes, it finds the same ticks
    wakes = [67.9, 68.0, 200.3, 200.31, 301.0, 1000.0]
    since, fired = 7.0, []
    for now in wakes:
        due = due_ticks(expr, since, now, catch_up_s=3600)
        fired += due.fire
        since = fired[-1] if fired else since
    assert fired == [67.0 + 60 * i for i in range(16)]


@given(
    period=st.integers(1, 100),
    wakes=st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=30),
)
def test_any_order_of_wakes_fires_each_tick_once_and_none_out_of_order(period, wakes):
    # a clock that jumps back (another replica's, skewed) never fires a tick again
    expr = Every(period)
    since, fired = 0.0, []
    for now in wakes:
        due = due_ticks(expr, since, now, catch_up_s=20_000, limit=100_000)
        fired += due.fire
        since = max(since, *due.fire) if due.fire else since
    assert fired == sorted(set(fired))
    assert fired == [t for t in expr.ticks(0, max(wakes))]


def test_where_the_ticks_begin():
    base = {"created_at": 100.0, "updated_at": 100.0, "epoch": 50.0}
    assert start_of(last_tick=None, paused_at=None, **base) == 100.0
    # a Redis that came back empty at 500: nothing before it fires again
    assert start_of(last_tick=None, paused_at=None, **(base | {"epoch": 500.0})) == 500.0
    assert start_of(last_tick=300.0, paused_at=None, **base) == 300.0
    # disabled at 400, enabled again at 900: the ticks in between are not due
    again = base | {"updated_at": 900.0}
    assert start_of(last_tick=300.0, paused_at=400.0, **again) == 900.0
    assert start_of(last_tick=None, paused_at=400.0, **again) == 900.0


def test_a_fire_is_never_early_by_its_own_account():
    assert lateness_s(100.0, 102.5) == 2.5
    assert lateness_s(100.0, 99.9) == 0.0

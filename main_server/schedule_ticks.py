"""Which ticks of a schedule are due: pure functions of the expression, the schedule's state
and ``now``, for the scheduler (``main_server.scheduler``) to act on.

Fire times come from the expression (``ScheduleExpression.ticks``), never from the loop's
timing; ``now`` only decides which of them are due. So a leader that wakes late fires the same
ticks, just later, and one whose clock is off fires early or late, never different ticks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

# the most ticks one schedule fires or counts in one turn of the leader: a schedule far behind
# (a long outage, a per-second rate) catches up over several turns instead of blocking the loop
max_ticks_per_turn = 1000


class Ticking(Protocol):
    """What the scheduler needs of an expression (``shared.schedule_expr.ScheduleExpression``)."""

    def ticks(self, after: float, until: float) -> Iterator[float]: ...

    def next_after(self, t: float) -> float | None: ...


@dataclass(frozen=True)
class Due:
    """A schedule's ticks in (since, now]: the ones to fire in order, and how many are too old
    (before ``now - catch_up_s``) and are counted as missed, up to ``last_missed``."""

    fire: list[float] = field(default_factory=list)
    missed: int = 0
    last_missed: float | None = None


def start_of(
    *,
    last_tick: float | None,
    paused_at: float | None,
    created_at: float,
    updated_at: float,
    epoch: float,
) -> float:
    """Where a schedule's due ticks begin (exclusive).

    - the last tick it fired or counted;
    - a schedule never fired here (no state: new, or its Redis lost its data): its creation, or
      when the scheduler's state in this Redis began if that is later, so an emptied Redis fires
      no tick that may have fired before;
    - one seen disabled (``paused_at``): no earlier than the change that enabled it again, as
      EventBridge resumes a re-enabled schedule from its next tick.
    """
    since = last_tick if last_tick is not None else max(created_at, epoch)
    if paused_at is not None:
        since = max(since, updated_at)
    return since


def due_ticks(
    expr: Ticking, since: float, now: float, catch_up_s: float, limit: int = max_ticks_per_turn
) -> Due:
    """The ticks in (since, now], split into missed (older than ``now - catch_up_s``) and to
    fire; at most ``limit`` of them in all (the rest are due next turn)."""
    if now <= since:
        return Due()
    horizon = now - catch_up_s
    fire: list[float] = []
    missed = 0
    last_missed = None
    for tick in expr.ticks(since, now):
        if missed + len(fire) >= limit:
            break
        if tick < horizon:
            missed += 1
            last_missed = tick
        else:
            fire.append(tick)
    return Due(fire, missed, last_missed)


def lateness_s(tick: float, now: float) -> float:
    """How late a fire is: never negative (a clock ahead fires a tick a little early)."""
    return max(0.0, now - tick)

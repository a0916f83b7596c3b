"""The chaos run (benchmarks/chaos/): its pure checks on tables, and one quick run end to end.

The quick run is a real cluster (its own redis-server, three Managers, two Mains) under
faults; it passes only when every invariant of BRIEF.md §3 held.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hotpool.benchmarks.chaos import (
    MAJOR_FAULTS,
    PoolState,
    analyse_pool,
    find_duplicates,
    find_overlaps,
    plan_faults,
)
from tests.services import missing_service

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {
    "sent", "succeeded", "failed_by_cause", "containers_started", "leaked", "duplicates",
    "sent_to_dead", "records_missing", "overlaps", "stale_entries", "duration_s", "seed",
    "faults",
}  # fmt: skip


def _run(token: str, container: str, pid: int, start: float, end: float) -> dict:
    return {"token": token, "container": container, "pid": pid, "start": start, "end": end}


def _entry(container: str, function: str = "f") -> str:
    return f"{function}|1|m1|{container}|127.0.0.1:1"


@pytest.mark.unit
def test_fault_plan_is_a_function_of_the_seed_and_spaces_major_faults():
    plan = plan_faults(7, 28.0, 6)
    assert plan == plan_faults(7, 28.0, 6)
    assert plan != plan_faults(8, 28.0, 6)
    majors = [f for f in plan if f.kind != "kill_container"]
    assert sorted(f.kind for f in majors) == sorted(MAJOR_FAULTS)
    assert sum(f.kind == "kill_container" for f in plan) == 6
    assert all(1.0 <= f.at_s <= 27.0 for f in plan)
    # each major fault, its downtime and a restart fit before the next one is due
    for a, b in itertools.pairwise(majors):
        assert a.at_s + a.down_s < b.at_s


@pytest.mark.unit
def test_a_long_plan_repeats_every_major_fault():
    kinds = [f.kind for f in plan_faults(1, 300.0, 60) if f.kind != "kill_container"]
    assert len(kinds) >= 18
    counts = [kinds.count(k) for k in MAJOR_FAULTS]
    assert max(counts) - min(counts) <= 1


@pytest.mark.unit
@pytest.mark.parametrize(
    ("runs", "duplicated"),
    [
        ([], set()),
        ([_run("a", "c", 1, 0, 1), _run("b", "c", 1, 1, 2)], set()),
        ([_run("a", "c", 1, 0, 1), _run("a", "d", 2, 0, 1)], {"a"}),
    ],
)
def test_duplicates_are_tokens_that_ran_twice(runs, duplicated):
    assert set(find_duplicates(runs)) == duplicated


@pytest.mark.unit
@pytest.mark.parametrize(
    ("runs", "overlapping"),
    [
        # back to back in one container: fine
        ([_run("a", "c", 1, 0.0, 1.0), _run("b", "c", 1, 1.0, 2.0)], []),
        # at once in two containers: fine
        ([_run("a", "c", 1, 0.0, 1.0), _run("b", "d", 2, 0.5, 1.5)], []),
        # at once in one container: invariant 1 broken
        ([_run("a", "c", 1, 0.0, 1.0), _run("b", "c", 1, 0.5, 1.5)], [("a", "b")]),
        # a long call overlapping a later, short one that starts after a third ended
        (
            [_run("a", "c", 1, 0.0, 5.0), _run("b", "c", 1, 1.0, 2.0), _run("x", "c", 1, 3, 4)],
            [("a", "b"), ("a", "x")],
        ),
    ],
)
def test_overlaps_are_calls_one_container_ran_at_once(runs, overlapping):
    assert [(a["token"], b["token"]) for a, b in find_overlaps(runs)] == overlapping


@pytest.mark.unit
def test_pool_analysis_finds_leaked_stale_and_double_placed_containers():
    described = {
        cid: {"state": state, "manager": "m1"}
        for cid, state in [("idle", "ready"), ("busy", "ready"), ("lost", "ready"),
                           ("twice", "ready"), ("new", "initialising")]
    }  # fmt: skip
    state = PoolState(
        described=described,
        lists={"hp:pool:f:1": [_entry("idle"), _entry("twice"), _entry("gone")]},
        leases={_entry("busy"): 1.0, _entry("twice"): 2.0},
        registered={"m1": {"idle", "busy", "twice"}},
        unreachable=[],
    )
    assert analyse_pool(state) == {
        "leaked": ["lost"],
        "stale_entries": [_entry("gone")],
        "double_placed": ["twice"],
        "unregistered": ["lost"],
    }


@pytest.mark.integration
def test_quick_chaos_run_keeps_every_invariant():
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotpool.benchmarks.chaos", "--quick", "--seed", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # SIGINT lets the run stop every process it started before we give up on it
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"the quick chaos run did not finish in 120 s:\n{out[-3000:]}\n{err[-3000:]}")
    lines = out.strip().splitlines()
    assert lines, err[-3000:]
    summary = json.loads(lines[-1])
    assert REQUIRED_KEYS <= set(summary), summary
    assert summary["sent"] > 0 and summary["succeeded"] > 0, summary
    assert proc.returncode == 0, (
        f"invariants broken: {summary.get('invariant_breaks')}\n" + "\n".join(lines[-60:])
    )

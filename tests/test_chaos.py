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
    classify_events,
    explain_rerun,
    extra_executions,
    fault_windows,
    find_duplicates,
    find_overlaps,
    plan_faults,
    runs_by_token,
    success_records,
    wrong_success_records,
)
from tests.services import missing_service

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {
    "sent", "succeeded", "failed_by_cause", "containers_started", "leaked", "duplicates",
    "sent_to_dead", "records_missing", "overlaps", "stale_entries", "duration_s", "seed",
    "faults", "async_accepted", "async_succeeded", "async_dead_lettered", "async_lost",
    "async_extra_executions", "async_unexplained",
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


# ---------------------------------------------------------------------------------------------
# asynchronous events


def _ran(start: float, end: float | None, *, failed: bool = False, container: str = "c") -> dict:
    return {"start": start, "end": end, "failed": failed, "container": container}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "letter", "verdict"),
    [
        ({"status": "succeeded"}, None, "succeeded"),
        ({"status": "failed"}, {"reason": "RetriesExhausted"}, "dead_lettered"),
        ({"status": "expired"}, {"reason": "EventAgeExceeded"}, "dead_lettered"),
        # every way to lose an event
        (None, None, "lost: 404"),
        ({"status": "queued"}, None, "lost: queued"),
        ({"status": "running"}, None, "lost: running"),
        ({"status": "failed"}, None, "lost: ended without a dead letter"),
        ({"status": "failed"}, {"reason": ""}, "lost: ended without a dead letter"),
        (
            {"status": "succeeded"},
            {"reason": "RetriesExhausted"},
            "lost: succeeded and dead-lettered",
        ),
    ],
)
def test_every_accepted_event_ends_succeeded_or_dead_lettered(status, letter, verdict):
    letters = {"r1": letter} if letter is not None else {}
    assert classify_events(["r1"], {"r1": status}, letters) == {"r1": verdict}


@pytest.mark.unit
def test_an_event_whose_status_was_never_read_is_not_counted_as_ended():
    assert classify_events(["r1"], {}, {}) == {"r1": "lost: unknown"}


@pytest.mark.unit
def test_success_records_count_the_successful_async_attempts_of_each_event():
    records = [
        {"request_id": "a", "trigger": "async", "status": "success"},
        {"request_id": "b", "trigger": "async", "status": "error"},
        {"request_id": "b:2", "trigger": "async", "status": "success"},
        {"request_id": "c", "trigger": "async", "status": "success"},
        {"request_id": "c:2", "trigger": "async", "status": "success"},
        {"request_id": "d", "trigger": "sync", "status": "success"},
    ]
    assert success_records(records) == {"a": 1, "b": 1, "c": 2}


@pytest.mark.unit
def test_runs_join_each_start_with_its_end_oldest_first():
    line = {"token": "t", "pid": 1, "container": "c"}
    ledger = [
        {**line, "phase": "start", "attempt": 2, "start": 5.0},
        {**line, "phase": "start", "attempt": 1, "start": 1.0},
        {**line, "phase": "end", "attempt": 1, "start": 1.0, "end": 1.5, "failed": True},
    ]
    runs = runs_by_token(ledger)["t"]
    assert [(r["attempt"], r["end"], r["failed"]) for r in runs] == [
        (1, 1.5, True),
        (2, None, False),
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("before", "faults", "why"),
    [
        # the run before raised: a retry
        (_ran(1.0, 1.1, failed=True), [], "retry"),
        # its container was killed under it
        (_ran(1.0, None), [{"kind": "container", "from": 1.5, "until": 1.5, "containers": ["c"]}],
         "container"),
        # its container's Manager was killed (and the container with it)
        (_ran(1.0, None), [{"kind": "manager", "from": 1.5, "until": 1.5,
                            "containers": ["b", "c"]}], "manager"),
        # a Main was killed before the run's end was written
        (_ran(1.0, 1.1), [{"kind": "main", "from": 1.6, "until": 1.6}], "consumer"),
        # nothing explains it: ran to its end, no fault near
        (_ran(1.0, 1.1), [], None),
        # another container's death or Manager's, a Main killed long after the run ended
        (_ran(1.0, 1.1), [{"kind": "container", "from": 1.05, "until": 1.05, "containers": ["x"]},
                          {"kind": "manager", "from": 1.05, "until": 1.05, "containers": ["x"]},
                          {"kind": "main", "from": 3.0, "until": 3.0}], None),
        # a Main killed before the run began
        (_ran(1.0, 1.1), [{"kind": "main", "from": 0.5, "until": 0.5}], None),
    ],
)  # fmt: skip
def test_a_rerun_is_explained_only_by_a_retry_or_a_kill_while_the_run_before_ended(
    before, faults, why
):
    assert explain_rerun(before, _ran(5.0, 5.1), faults) == why


@pytest.mark.unit
def test_extra_executions_are_every_run_after_the_first():
    runs = {
        "once": [_ran(0.0, 0.1)],
        "failing": [_ran(0.0, 0.1, failed=True), _ran(1.0, 1.1, failed=True),
                    _ran(2.0, 2.1, failed=True)],
        "twice": [_ran(0.0, 0.1), _ran(4.0, 4.1)],
    }  # fmt: skip
    explained, unexplained = extra_executions(runs, [])
    assert explained == {"failing": ["retry", "retry"]}
    assert unexplained == [runs["twice"][1]]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("count", "reruns", "wrong"),
    [
        (1, [], False),
        (1, ["container"], False),
        # no success record for a success: the record was lost
        (0, [], True),
        # two: one attempt's end was never written; only a killed consumer does that
        (2, ["consumer"], False),
        (2, ["container"], True),
        (2, [], True),
    ],
)
def test_a_succeeded_event_has_one_success_record_unless_its_consumer_was_killed(
    count, reruns, wrong
):
    counts = {"r1": count} if count else {}
    found = wrong_success_records({"r1": "t1"}, counts, {"t1": reruns} if reruns else {})
    assert found == ({"r1": count} if wrong else {})


@pytest.mark.unit
def test_fault_windows_are_the_kills_with_the_containers_each_took_down():
    events = [
        {"t": 1.0, "kind": "kill_container", "container": "c"},
        {"t": 1.5, "kind": "kill_container", "container": None},
        {"t": 2.0, "kind": "stop_redis"},
        {"t": 2.5, "kind": "kill_manager", "manager": "m1"},
        {"t": 3.0, "kind": "restarted", "service": "mgr1"},
        {"t": 4.0, "kind": "restarted", "service": "redis"},
        {"t": 5.0, "kind": "kill_main", "main": 0},
    ]
    owners = {"c": "m0", "d": "m1", "e": "m1"}
    assert fault_windows(events, 100.0, owners) == [
        {"kind": "container", "from": 101.0, "until": 101.0, "containers": ["c"]},
        {"kind": "manager", "from": 102.5, "until": 102.5, "containers": ["d", "e"]},
        {"kind": "main", "from": 105.0, "until": 105.0},
    ]


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
    assert summary["async_accepted"] > 0 and summary["async_succeeded"] > 0, summary
    assert summary["async_dead_lettered"] > 0, summary  # the events that asked to fail
    assert proc.returncode == 0, (
        f"invariants broken: {summary.get('invariant_breaks')}\n" + "\n".join(lines[-60:])
    )

"""The chaos run (benchmarks/chaos/): its pure checks on tables, and one quick run end to end.

The quick run is a real cluster (its own redis-server, three Managers, two Mains) under
faults; it passes only when every invariant of BRIEF.md §3 held, and every tick of its
schedules fired exactly once.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotpool.benchmarks.chaos import (
    MAJOR_FAULTS,
    PoolState,
    StreamSent,
    WsMessage,
    WsSocket,
    after_kill,
    analyse_pool,
    classify_events,
    expected_ticks,
    explain_rerun,
    extra_executions,
    fault_windows,
    find_duplicates,
    find_overlaps,
    findings,
    judge_body,
    judge_reply,
    late_fires,
    missing_records,
    plan_faults,
    redis_outages,
    runs_by_token,
    schedule_runs,
    stream_faults,
    success_records,
    unfired,
    unnoticed_kills,
    wrong_success_records,
)
from tests.services import missing_service

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {
    "sent", "succeeded", "failed_by_cause", "containers_started", "leaked", "duplicates",
    "sent_to_dead", "records_missing", "overlaps", "stale_entries", "duration_s", "seed",
    "faults", "async_accepted", "async_succeeded", "async_dead_lettered", "async_lost",
    "async_extra_executions", "async_unexplained", "streams_sent", "streams_completed",
    "streams_aborted_by_client", "ws_messages_sent", "ws_messages_answered", "sched_ticks",
    "sched_fired", "sched_missing", "sched_duplicates", "sched_redeliveries",
    "sched_fire_delay_max_s", "sched_leader_terms", "by_runtime", "killed_calls",
    "killed_calls_wrong", "wrong_runtime", "status_pool_wrong",
}  # fmt: skip
# the streams' and the WebSocket traffic's invariants: each must be zero
TRIGGER_BREAKS = (
    "stream_duplicates", "stream_records_wrong", "stream_bodies_wrong", "stream_aborts_ignored",
    "stream_handed_busy", "ws_duplicates", "ws_records_missing", "ws_wrong_replies",
    "ws_kills_unnoticed", "ws_drops_unexplained", "sched_missing", "sched_duplicates",
    "sched_unexplained", "sched_attempt_twice", "sched_late", "sched_fires_unseen",
    "sched_records_wrong",
)  # fmt: skip


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
    assert [(r["attempt"], r["end"], r["failed"], r["aborted"]) for r in runs] == [
        (1, 1.5, True, None),
        (2, None, False, None),
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


# ---------------------------------------------------------------------------------------------
# streamed calls


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"t:0\nt:1\nt:2\n", "ok"),
        # cut short, or an item too many, without saying so
        (b"t:0\nt:1\n", "wrong_body"),
        (b"t:0\nt:1\nt:2\nt:3\n", "wrong_body"),
        (b"t:0\nu:1\nt:2\n", "wrong_body"),
        # the items so far, then the error line of a stream that failed mid-way
        (b't:0\n\n{"hotpoolStreamError":{"errorType":"ContainerFailed","errorMessage":"x"}}\n',
         "stream_error ContainerFailed"),
        (b't:0\nX\n{"hotpoolStreamError":{"errorType":"ContainerFailed"}}\n', "wrong_body"),
        (b't:0\n\n{"hotpoolStreamError": garbage\n', "wrong_body"),
    ],
)  # fmt: skip
def test_a_streamed_body_is_its_items_or_says_why_it_stopped(body, cause):
    assert judge_body(body, "t", 3)[0] == cause


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"data: t:0\n\ndata: t:1\n\ndata: t:2\n\n", "ok"),
        (b"data: t:0\n\ndata: t:1\n\n", "wrong_body"),
        # cut inside an event, an event in the raw form, an item in two data lines
        (b"data: t:0\n\ndata: t:1\n\ndata: t:2\n", "wrong_body"),
        (b"data: t:0\n\ndata: t:1\n\nt:2\n\n", "wrong_body"),
        (b"data: t:0\n\ndata: t:1\n\ndata: t:\ndata: 2\n\n", "wrong_body"),
        (b'data: t:0\n\nevent: error\ndata: {"errorType":"Sandbox.Timedout"}\n\n',
         "stream_error Sandbox.Timedout"),
    ],
)  # fmt: skip
def test_a_streamed_sse_body_is_one_event_per_item_or_an_error_event(body, cause):
    assert judge_body(body, "t", 3, sse=True)[0] == cause


def _stream(cause: str, received: int = 12) -> StreamSent:
    status = int(cause.split()[0]) if cause[0].isdigit() else 200
    sent = StreamSent(0, "t", 0, 3, cause == "left", False, 0.0, 1.0, status, "r1")
    sent.cause, sent.received = cause, received
    return sent


_FINISHED = {"request_id": "r1", "end": 1.0, "aborted": False}
_CLOSED = {"request_id": "r1", "end": 1.2, "aborted": True}
_KILLED = {"request_id": "r1", "end": None, "aborted": None}
_GOOD = {"streamed": True, "status": "success", "aborted": False, "bytes_streamed": 12}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("cause", "runs", "record", "killed", "wrong"),
    [
        ("ok", [_FINISHED], _GOOD, False, []),
        ("ok", [_FINISHED, _FINISHED], _GOOD, False, ["ran 2 times"]),
        ("ok", [_FINISHED], None, False, ["ran without a record"]),
        # the record went down with its Main; never a wrong record
        ("ok", [_FINISHED], None, True, []),
        ("ok", [_FINISHED], {**_GOOD, "bytes_streamed": 8}, True, ["record bytes 8 != read 12"]),
        ("ok", [_FINISHED], {**_GOOD, "streamed": False}, False, ["record not streamed"]),
        ("ok", [_CLOSED], _GOOD, False, ["generator ended aborted=True"]),
        ("left", [_CLOSED], {**_GOOD, "aborted": True}, False, []),
        ("left", [_CLOSED], _GOOD, False,
         ["its client left, the record is not aborted (success)"]),
        # its container died before Main saw the client go
        ("left", [_KILLED], {**_GOOD, "status": "failed"}, False, []),
        ("left", [_KILLED], {**_GOOD, "status": "error"}, False, []),
        ("left", [_KILLED], _GOOD, False,
         ["its client left, the record is not aborted (success)"]),
        ("left", [_CLOSED], {**_GOOD, "status": "failed"}, False,
         ["its client left, the record is not aborted (failed)"]),
        ("left", [_CLOSED], _GOOD, True, []),
        # refused before any container: nothing ran, nothing to record
        ("503 StoreUnavailable", [], None, False, []),
        # refused by its container before it ran: a record, not a streamed one
        ("502 ContainerFailed", [], {"status": "failed"}, False, []),
        ("client_error ServerDisconnectedError", [_KILLED], None, True, []),
    ],
)  # fmt: skip
def test_a_stream_that_ran_has_the_record_its_client_saw(cause, runs, record, killed, wrong):
    assert stream_faults(_stream(cause), runs, record, killed) == wrong


# ---------------------------------------------------------------------------------------------
# WebSocket traffic


@pytest.mark.unit
@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ("t", "ok"),
        ('{"message": "Internal server error", "connectionId": "c"}',
         "ws_error Internal server error"),
        ("u", "wrong_reply"),
        ('"t"', "wrong_reply"),
        ('{"token": "t"}', "wrong_reply"),
    ],
)  # fmt: skip
def test_a_message_is_answered_by_its_token_or_an_error_message(reply, cause):
    assert judge_reply(reply, "t") == cause


def _message(token: str, cause: str = "ok", main: int = 0) -> WsMessage:
    return WsMessage(0, token, 0, main, 0.0, 1.0, cause)


def _ws_run(request_id: str, start: float = 1.0, end: float | None = 1.1, domain: str = "") -> dict:
    return {"request_id": request_id, "start": start, "end": end, "domain": domain}


_WS = {"trigger": "websocket"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("runs", "records", "messages", "killed", "missing"),
    [
        ({"m": [_ws_run("r")]}, {"r": _WS}, [_message("m")], False, {}),
        ({"m": [_ws_run("r")]}, {}, [_message("m")], False, {"m": "no record"}),
        # an answered message's record was journaled before the reply: no excuse
        ({"m": [_ws_run("r")]}, {}, [_message("m")], True, {"m": "no record"}),
        ({"m": [_ws_run("r")]}, {"r": {"trigger": "sync"}}, [_message("m")], False,
         {"m": "trigger sync"}),
        ({"m": [_ws_run("r"), _ws_run("s")]}, {"r": _WS, "s": _WS}, [_message("m")], False,
         {"m": "answered, ran 2 times"}),
        ({}, {}, [_message("m")], False, {"m": "answered, never ran"}),
        # its socket dropped with its Main: excused; dropped for nothing: not
        ({"m": [_ws_run("r", end=None)]}, {}, [_message("m", "dropped")], True, {}),
        ({"m": [_ws_run("r", end=None)]}, {}, [_message("m", "dropped")], False,
         {"m": "no record"}),
        # $connect and $disconnect: their Main comes from the ledger's domain
        ({"ws-connect-c": [_ws_run("r", domain="h:1")]}, {}, [], True, {}),
        ({"ws-connect-c": [_ws_run("r", domain="h:1")]}, {}, [], False,
         {"ws-connect-c": "no record"}),
        ({"ws-connect-c": [_ws_run("r", domain="h:9")]}, {}, [], True,
         {"ws-connect-c": "no record"}),
    ],
)  # fmt: skip
def test_every_websocket_execution_has_its_record(runs, records, messages, killed, missing):
    seen = []

    def killed_at(main: int, since: float, until: float) -> bool:
        seen.append((main, since, until))
        return killed

    found = missing_records(runs, records, {m.token: m for m in messages}, {"h:1": 1}, killed_at)
    assert found == missing
    assert all(since < 1.0 < until for _, since, until in seen)


@pytest.mark.unit
def test_a_killed_main_must_drop_the_sockets_open_on_it():
    sockets = [
        WsSocket(0, 0, 1.0, 10.2, dropped=True),  # dropped at once: fine
        WsSocket(1, 0, 1.0, 20.0),  # stayed open long after: unnoticed
        WsSocket(2, 1, 1.0, 20.0),  # on the other Main
        WsSocket(3, 0, 11.0, 20.0),  # opened after the kill
        WsSocket(4, 0, 1.0, 5.0),  # closed before it
    ]
    late = unnoticed_kills(sockets, [(0, 10.0)])
    assert [s["client"] for s in late] == [1]
    assert [after_kill(s, [(0, 10.0)]) for s in sockets] == [True, False, False, False, False]


def _fire(schedule: str, second: int, *, event: str = "", attempt: int = 1, start: float = 0.0):
    """A Scheduled Event's start line in the ledger (tick at unix ``second``)."""
    event = event or f"{schedule}-{second}"
    return {
        "phase": "start", "kind": "schedule", "token": event, "event_id": event,
        "request_id": f"r-{event}", "attempt": attempt, "schedule": schedule,
        "time": datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start": start or second + 0.05,
    }  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize(
    ("created_at", "interval_s", "until", "ticks"),
    [
        (100.4, 1.0, 103.0, [101.0, 102.0, 103.0]),  # anchored at the whole second, after it
        (100.0, 1.0, 102.5, [101.0, 102.0]),  # made on a tick: that one is not due
        (100.7, 3.0, 110.0, [103.0, 106.0, 109.0]),
        (100.2, 3.0, 102.9, []),
    ],
)
def test_expected_ticks_follow_the_rate_from_the_creation(created_at, interval_s, until, ticks):
    assert expected_ticks("s", created_at, interval_s, until) == [("s", t) for t in ticks]


@pytest.mark.unit
def test_schedule_findings_tell_a_second_fire_from_a_redelivery():
    runs = [
        _fire("a", 101), _fire("a", 102), _fire("a", 102, attempt=2),  # re-delivered
        _fire("a", 103), _fire("a", 103, event="other"),  # fired twice
        _fire("a", 104), _fire("a", 104),  # one attempt twice
        _fire("a", 107),  # outside the window
        {"phase": "start", "token": "t", "kind": "ws"},
    ]  # fmt: skip
    runs = schedule_runs([*runs, {**runs[0], "phase": "end"}])
    expected = [("a", float(t)) for t in (101, 102, 103, 104, 105)]
    states = {
        "r-a-101": {"accepted_at": "101.5", "reclaimed": "1"},
        "r-a-102": {"accepted_at": 104},
    }
    found = findings(runs, expected, states)
    assert found.missing == [("a", 105.0)]
    assert sorted(found.fired_twice) == [("a", 103.0)]
    assert sorted(found.redelivered) == [("a", 102.0), ("a", 103.0), ("a", 104.0)]
    assert found.attempt_twice == [("a", 104.0)]
    assert found.fire_late == {("a", 101.0): 0.5, ("a", 102.0): 2.0}
    assert found.arrival_late[("a", 101.0)] == pytest.approx(0.05)
    assert found.reclaimed == {("a", 101.0)}


@pytest.mark.unit
def test_a_fire_may_be_late_by_the_lease_plus_the_time_redis_was_away():
    events = [
        {"kind": "stop_redis", "t": 10.0}, {"kind": "restarted", "service": "mgr1", "t": 11.0},
        {"kind": "restarted", "service": "redis", "t": 12.0}, {"kind": "stop_redis", "t": 30.0},
    ]  # fmt: skip
    outages = redis_outages(events, t0=1000.0)
    assert outages == [(1010.0, 1012.0), (1030.0, math.inf)]
    fire_late = {
        ("a", 1001.0): 4.9,  # within the lease (3) + slack (2)
        ("a", 1002.0): 5.5,  # late: no outage near it
        ("a", 1009.0): 6.5,  # Redis away 2 s meanwhile: allowed 7
        ("a", 1016.0): 5.5,  # the outage ended more than a lease before the tick
    }
    assert late_fires(fire_late, outages[:1], lease_s=3.0, slack_s=2.0) == {
        ("a", 1002.0): {"late_s": 5.5, "allowed_s": 5.0},
        ("a", 1016.0): {"late_s": 5.5, "allowed_s": 5.0},
    }


@pytest.mark.unit
def test_a_tick_without_a_run_is_missing_unless_its_event_was_dead_lettered():
    ticks = {("a", 1.0): "r1", ("a", 2.0): "r2", ("a", 3.0): "r3"}
    statuses = {"r1": None, "r2": {"status": "failed"}, "r3": {"status": "queued"}}
    letters = {"r2": {"reason": "RetriesExhausted"}}
    dead, lost = unfired(ticks, ticks, statuses, letters)
    assert dead == {("a", 2.0): "RetriesExhausted"}
    assert lost == {("a", 1.0): "never accepted", ("a", 3.0): "event queued"}


@pytest.mark.unit
def test_success_records_count_the_fires_of_schedules_apart():
    records = [
        {"request_id": "e", "trigger": "schedule", "status": "success"},
        {"request_id": "e:2", "trigger": "schedule", "status": "success"},
        {"request_id": "f", "trigger": "async", "status": "success"},
    ]
    assert success_records(records, trigger="schedule") == {"e": 2}
    assert success_records(records) == {"f": 1}


@pytest.mark.integration
def test_quick_chaos_run_keeps_every_invariant():
    if shutil.which("redis-server") is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    if shutil.which("node") is None and shutil.which("nodejs") is None:
        missing_service(
            "node is not installed (apt-get install nodejs): the run has a Node function"
        )
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
    assert summary["streams_completed"] > 0 and summary["streams_aborted_by_client"] > 0, summary
    assert summary["ws_messages_answered"] > 0, summary
    assert summary["sched_ticks"] > 0 and summary["sched_fired"] == summary["sched_ticks"], summary
    assert {k: summary[k] for k in TRIGGER_BREAKS} == dict.fromkeys(TRIGGER_BREAKS, 0), summary
    # the Node.js and the custom runtime's functions took calls and had containers killed, and
    # every call a kill cut short was recorded as the failure the kill means
    for runtime in ("nodejs", "provided"):
        figures = summary["by_runtime"][runtime]
        assert figures["succeeded"] > 0 and sum(figures["kills"].values()) > 0, figures
        assert figures["duplicates"] == figures["records_missing"] == 0, figures
        assert figures["pool"]["pool"] == figures["pool"]["live"], figures
    assert summary["killed_calls_wrong"] == summary["wrong_runtime"] == 0, summary
    assert proc.returncode == 0, (
        f"invariants broken: {summary.get('invariant_breaks')}\n" + "\n".join(lines[-60:])
    )

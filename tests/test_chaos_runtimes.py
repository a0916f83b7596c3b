"""The runtimes in the chaos run (benchmarks/chaos/): how the load and the kills share them
out, how a killed call must be recorded, the pool per runtime, and how the run finds each
runtime's processes. The quick run itself is tests/test_chaos.py's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from hotpool.benchmarks.chaos.cluster import (
    bootstrap_processes,
    orphan_processes,
    runtime_processes,
)
from hotpool.benchmarks.chaos.config import (
    KILL_RUNTIMES,
    RUNTIME_FUNCTIONS,
    RUNTIME_SHARE,
    Fault,
    kill_turns,
    plan_faults,
)
from hotpool.benchmarks.chaos.handler_watch import HandlerWatch, in_handler, service_of, track
from hotpool.benchmarks.chaos.load import PYTHON_FUNCTIONS, Outcome, pick_function
from hotpool.benchmarks.chaos.runtime_audit import (
    killed_calls,
    misrecorded,
    pool_by_runtime,
    wrong_runtime,
)
from hotpool.manager.runtimes import NODEJS_BOOTSTRAP, PYTHON_BOOTSTRAP

T0 = 1000.0


@pytest.mark.unit
def test_container_kills_take_turns_over_the_runtimes_in_time_order():
    kills = [f for f in plan_faults(3, 120.0, 24) if f.kind == "kill_container"]
    assert [f.runtime for f in kills] == [KILL_RUNTIMES[i % 4] for i in range(24)]
    assert Counter(f.runtime for f in kills) == {"python": 12, "nodejs": 6, "provided": 6}
    # the plan's times and targets are the seed's, whatever the turns
    assert [f.at_s for f in kills] == sorted(f.at_s for f in kills)


@pytest.mark.unit
def test_a_short_run_kills_each_kind_of_container_early():
    kills = [Fault(float(i), "kill_container", 2 * i + 1) for i in range(16)]
    turns = [(f.runtime, f.busy, f.part) for f in kill_turns(kills)]
    node = [t for t in turns if t[0] == "nodejs"]
    provided = [t for t in turns if t[0] == "provided"]
    assert node == [("nodejs", True, "container"), ("nodejs", False, "container")] * 2
    assert provided == [
        ("provided", True, "container"), ("provided", True, "runtime"),
        ("provided", False, "container"), ("provided", False, "runtime"),
    ]  # fmt: skip
    # Python's kills: the whole container, busy at random (odd targets here: never)
    assert {t for t in turns if t[0] == "python"} == {("python", False, "container")}


@pytest.mark.unit
def test_the_other_runtimes_each_get_their_share_of_the_quick_calls():
    n = 10_000
    picked = Counter(pick_function((i + 0.5) / n) for i in range(n))
    for function in RUNTIME_FUNCTIONS:
        assert picked[function] == n * RUNTIME_SHARE
    python = [picked[f] for f in PYTHON_FUNCTIONS]
    assert sum(python) == n * (1 - RUNTIME_SHARE * len(RUNTIME_FUNCTIONS))
    assert max(python) - min(python) <= 1
    assert pick_function(0.0) == "chaos-node" and pick_function(0.9999999) == PYTHON_FUNCTIONS[-1]


def _outcome(token: str, sent_t: float, function: str = "chaos-node") -> Outcome:
    return Outcome(0, token, function, 0, T0 + sent_t, request_id=f"r-{token}")


def _kill(t: float, part: str = "container", runtime: str = "nodejs") -> dict:
    return {"t": t, "kind": "kill_container", "container": "c1", "part": part, "runtime": runtime}


def _record(error: str | None, container: str = "c1") -> dict:
    status = "success" if error is None else "error"
    return {"container_id": container, "status": status, "error": error and {"type": error}}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kill", "runs", "record", "sent_t", "row"),
    [
        # died in its handler: the Manager saw the container die by SIGKILL
        (_kill(5.0), [{"end": None}], _record("RuntimeExited"), 4.9, (True, [])),
        # reached the container, died before its handler wrote its start line
        (_kill(5.0), [], _record("RuntimeExited"), 4.9, (False, [])),
        (_kill(5.0), [{"end": None}], _record("Unhandled"), 4.9, (True, ["wrong"])),
        (_kill(5.0), [{"end": None}], _record(None), 4.9, (True, ["wrong"])),
        # a custom runtime killed alone: its relay answers, or had ended before it could
        (_kill(5.0, "runtime", "provided"), [{"end": None}], _record("Runtime.ExitError"), 4.9,
         (True, [])),
        (_kill(5.0, "runtime", "provided"), [], _record("RuntimeExited"), 4.9, (False, [])),
        # not cut short by this kill: it ended, was sent after it, or ran elsewhere
        (_kill(5.0), [{"end": 4.95}], _record(None), 4.9, None),
        (_kill(5.0), [], _record("RuntimeExited"), 5.1, None),
        (_kill(5.0), [{"end": None}], _record("RuntimeExited", "c2"), 4.9, None),
        ({**_kill(5.0), "container": None}, [{"end": None}], _record("RuntimeExited"), 4.9, None),
    ],
)  # fmt: skip
def test_a_call_a_kill_cut_short_is_recorded_as_the_failure_the_kill_means(
    kill, runs, record, sent_t, row
):
    outcome = _outcome("t", sent_t)
    rows = killed_calls([kill], [outcome], {"t": runs} if runs else {}, {"r-t": record}, T0)
    if row is None:
        assert rows == []
        return
    started, wrong = row
    assert [(r["started"], r["runtime"], r["part"]) for r in rows] == [
        (started, kill["runtime"], kill["part"])
    ]
    assert ["wrong" for _ in misrecorded(rows)] == wrong


@pytest.mark.unit
def test_the_pool_per_runtime_is_its_entries_and_leases_against_its_live_containers():
    status = {
        "containers": {
            "by_runtime": {
                "python": {"warm": 3, "busy": 1, "starting": 2},
                "nodejs": {"warm": 1, "busy": 0, "starting": 0},
            }
        }
    }
    described = {
        **{f"p{i}": {"runtime": "python", "state": "ready"} for i in range(4)},
        "p9": {"runtime": "python", "state": "initialising"},
        "n1": {"runtime": "nodejs", "state": "ready"},
        "n2": {"runtime": "nodejs", "state": "ready"},
    }
    assert pool_by_runtime(status, described) == {
        "python": {"pool": 4, "live": 4},
        "nodejs": {"pool": 1, "live": 2},  # a live Node container in no list and no lease
        "provided": {"pool": 0, "live": 0},
    }


@pytest.mark.unit
def test_a_ledger_line_must_come_from_its_functions_runtime():
    lines = [
        {"phase": "start", "function": "chaos-a", "token": "a"},
        {"phase": "start", "function": "chaos-node", "runtime": "nodejs", "token": "b"},
        {"phase": "start", "function": "chaos-provided", "runtime": "provided", "token": "c"},
        {"phase": "start", "function": "chaos-node", "token": "d"},  # the Python code ran it
        {"phase": "end", "function": "chaos-a", "runtime": "nodejs", "token": "a"},
    ]
    assert [e["token"] for e in wrong_runtime(lines)] == ["d"]


def _started(proc: subprocess.Popen, last_arg: str) -> subprocess.Popen:
    """``proc`` once /proc shows its own command line (for a moment after the fork it can
    still show its parent's)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.fsencode(last_arg) in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            return proc
        time.sleep(0.01)
    raise AssertionError(f"{proc.args} did not start")


def _sleeper(argv: list[str]) -> subprocess.Popen:
    """A process that sleeps with ``argv`` after its program, as a container's would be."""
    code = "import time; time.sleep(60)"
    return _started(subprocess.Popen([sys.executable, "-c", code, *argv]), [code, *argv][-1])


@pytest.mark.integration
def test_the_run_finds_every_runtimes_container_processes_and_orphaned_runtimes(tmp_path):
    code = {cid: tmp_path / "mgr0" / "containers" / cid / "code" for cid in ("p-py", "p-js", "p-r")}
    for folder in code.values():
        folder.mkdir(parents=True)
    runtime = code["p-r"] / "bootstrap"
    runtime.write_text("import time\ntime.sleep(60)\n")
    elsewhere = Path("/nonexistent/code")
    procs = [
        _sleeper([str(PYTHON_BOOTSTRAP), "--code-dir", str(code["p-py"])]),
        _sleeper([str(NODEJS_BOOTSTRAP), "--code-dir", str(code["p-js"])]),
        _sleeper([str(PYTHON_BOOTSTRAP), "--runtime", "provided", "--code-dir", str(code["p-r"])]),
        _sleeper([str(PYTHON_BOOTSTRAP), "--code-dir", str(elsewhere)]),  # another run's
        # a custom runtime no relay owns
        _started(subprocess.Popen([sys.executable, str(runtime)]), str(runtime)),
    ]
    try:
        found = {(b.container_id, b.runtime, b.service) for b in bootstrap_processes(tmp_path)}
        assert found == {
            ("p-py", "python", "mgr0"), ("p-js", "nodejs", "mgr0"), ("p-r", "provided", "mgr0"),
        }  # fmt: skip
        runtimes = runtime_processes(tmp_path)
        assert [(r.pid, r.container_id) for r in runtimes] == [(procs[-1].pid, "p-r")]
        # no Manager runs: every container is an orphan, and so is the runtime no relay owns
        orphans = orphan_processes(tmp_path, set())
        assert sorted(b.pid for b in orphans) == sorted(p.pid for p in [*procs[:3], procs[-1]])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _line(phase: str, token: str, start: float, runtime: str | None = "nodejs", **extra) -> dict:
    line = {"phase": phase, "token": token, "pid": 7, "start": start, **extra}
    return line if runtime is None else {**line, "runtime": runtime}


@pytest.mark.unit
def test_a_kill_aims_at_calls_whose_handler_runs_now():
    running: dict = {}
    track(running, [
        _line("start", "a", 99.6), _line("start", "b", 99.8), _line("end", "a", 99.6),
        _line("start", "p", 99.9, runtime="provided"),
        _line("start", "old", 99.0),  # cut short long ago: its end never came
        _line("start", "py", 99.9, runtime=None),  # the Python function's: leases aim at those
        _line("start", "s", 99.9, kind="stream"),
    ])  # fmt: skip
    assert [c["token"] for c in in_handler(running, "nodejs", 100.0)] == ["b"]
    assert [c["token"] for c in in_handler(running, "provided", 100.0)] == ["p"]
    track(running, [_line("end", "b", 99.8)])
    assert in_handler(running, "nodejs", 100.0) == []


@pytest.mark.unit
def test_the_watch_reads_only_complete_lines_as_the_ledger_grows(tmp_path):
    ledger = tmp_path / "executions.log"
    watch = HandlerWatch(ledger)
    assert watch.poll("nodejs") == []  # no ledger yet
    now = time.time()
    start = json.dumps(_line("start", "a", now))
    ledger.write_text(start + "\n" + start[:10])  # a second line is being written
    assert [c["token"] for c in watch.poll("nodejs")] == ["a"]
    with open(ledger, "a") as f:
        f.write(
            start[10:].replace('"a"', '"b"', 1) + "\n" + json.dumps(_line("end", "a", now)) + "\n"
        )
    # "a" ended; the line written in two pieces was read once whole
    assert [c["token"] for c in watch.poll("nodejs")] == ["b"]


@pytest.mark.integration
def test_a_pid_from_the_ledger_is_signalled_only_while_it_is_this_runs(tmp_path):
    proc = _sleeper([str(tmp_path / "mgr2" / "containers" / "p-1" / "code" / "bootstrap")])
    try:
        assert service_of(proc.pid, tmp_path) == "mgr2"
        assert service_of(proc.pid, tmp_path / "other") is None
        assert service_of(os.getpid(), tmp_path) is None
    finally:
        proc.kill()
        proc.wait()
    assert service_of(proc.pid, tmp_path) is None  # gone (or a stranger's now)

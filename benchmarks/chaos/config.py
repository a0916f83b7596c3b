"""Constants, service settings and the fault plan of the chaos run."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUNCTION_DIR = Path(__file__).resolve().parents[1] / "chaos_function"
FUNCTIONS = ("chaos-a", "chaos-b", "chaos-c", "chaos-d")
# three clients make slow calls to one function (which the other clients call quickly too), so
# some calls are still running well after a fault strikes: their leases outlive a Redis restart
# or a Manager's death, and their containers must not be handed to anyone else meanwhile
SLOW_FUNCTION = "chaos-slow"
# the other runtimes' functions: the Python function's synchronous calls in Node.js, and in a
# custom runtime (a stdlib Python ``bootstrap`` polling Lambda's Runtime API through the
# relay); each writes the same ledger lines, with its runtime. Name -> (runtime, package
# folder, handler: None for the runtime's default)
RUNTIME_FUNCTIONS = {
    "chaos-node": ("nodejs", Path(__file__).resolve().parents[1] / "chaos_function_node",
                   "index.handler"),
    "chaos-provided": ("provided", Path(__file__).resolve().parents[1] / "chaos_function_provided",
                       None),
}  # fmt: skip
ALL_FUNCTIONS = (*FUNCTIONS, SLOW_FUNCTION, *RUNTIME_FUNCTIONS)
RUNTIME_OF = {
    **dict.fromkeys((*FUNCTIONS, SLOW_FUNCTION), "python"),
    **{name: runtime for name, (runtime, _, _) in RUNTIME_FUNCTIONS.items()},
}
RUNTIMES = ("python", "nodejs", "provided")
# the share of the quick clients' calls each other runtime's function gets (the Python
# functions share the rest): enough calls and containers to kill, few enough that the Node
# containers' start-ups do not stretch a quick run on a small machine
RUNTIME_SHARE = 0.1
# container kills take turns over the runtimes, Python's every other one; a custom runtime's
# kills alternate between its whole container and its runtime process alone (the relay then
# fails the call with Lambda's Runtime.ExitError and ends the container)
KILL_RUNTIMES = ("python", "nodejs", "python", "provided")
MANAGERS = 3
MAINS = 2
CAPACITY = 12
CONCURRENCY = 16
CLIENT_TIMEOUT_S = 15.0
# a lease lasts the timeout + HOTPOOL_LEASE_GRACE_S
FUNCTION_TIMEOUT_S = {**dict.fromkeys(FUNCTIONS, 2.0), SLOW_FUNCTION: 10.0}
SLEEP_MS = (5, 50)
SLOW_SLEEP_MS = (3000, 8000)
SLOW_CLIENTS = 3
ORPHAN_GRACE_S = 2.0
START_TIMEOUT_S = 30.0
POLL_S = 1.0
# asynchronous traffic beside the synchronous load: each client queues one event every pause,
# to the quick functions (the slow one's 10 s timeout would stretch a reclaim past the drain).
# Events sleep longer than synchronous calls, so a few are always running when a Main is killed
# or Redis stops. Every ASYNC_FAIL_EVERY-th event raises on every attempt: it is retried (the
# functions' default async_retries, 2), then dead-lettered
ASYNC_CLIENTS = 2
ASYNC_PAUSE_S = 0.05
ASYNC_SLEEP_MS = (50, 500)
ASYNC_FAIL_EVERY = 20
# after the load: how long every accepted event may take to end (a consumer killed mid-call is
# noticed after ASYNC_CONSUMER_TIMEOUT_S and its event rerun after the timeout + lease grace)
ASYNC_DRAIN_MAX_S = 30.0
# streamed calls beside the load: each client streams from the slow function (its 10 s timeout
# leaves room for a long stream), alternating between the Mains. A stream is STREAM_ITEMS
# items STREAM_GAP_MS apart; the client of every STREAM_LEAVE_EVERY-th stream leaves after the
# first of STREAM_LEAVE_ITEMS items, so the handler has seconds left to be stopped
# (GeneratorExit)
STREAM_CLIENTS = 2
STREAM_ITEMS = (3, 6)
STREAM_GAP_MS = (10, 60)
STREAM_LEAVE_EVERY = 10
STREAM_LEAVE_ITEMS = 10
STREAM_LEAVE_GAP_MS = 250
# WebSocket clients per Main (each one connection to a quick function deployed with
# websocket=key), sending one message at a time with a token each, SLEEP_MS long, WS_PAUSE_S
# apart; a client whose socket drops reconnects to the other Main, and each client closes its
# socket after WS_SOCKET_S and connects to its own Main again
WS_CLIENTS_PER_MAIN = 1
WS_PAUSE_S = 0.02
WS_SOCKET_S = 6.0
# a socket open on a Main killed this long ago must have seen the drop
WS_DROP_NOTICE_S = 3.0
# schedules made through the API before the load (name, function, expression, seconds between
# ticks), each firing into the function's ledger; the scheduler's lease is short so a killed
# leader is replaced within the run. A fire is late when it comes more than the lease plus
# SCHEDULE_SLACK_S after its tick (beyond the lease: a follower's poll, the new leader's first
# turn, an event loop busy with the load), plus how long Redis was away meanwhile. After the
# load the run waits at most SCHEDULE_CATCH_UP_WAIT_S for the last ticks, then disables them
SCHEDULES = (
    ("tick-a", "chaos-a", "rate(1 second)", 1.0),
    ("tick-b", "chaos-b", "rate(1 second)", 1.0),
    ("tick-c", "chaos-c", "rate(3 seconds)", 3.0),
)
SCHEDULER_LEASE_S = 3.0
SCHEDULE_SLACK_S = 2.0
SCHEDULE_CATCH_UP_WAIT_S = 20.0
# the services' settings; lease and heartbeat timings are short so recovery fits in the run
SERVICE_SETTINGS = {
    "BACKEND": "process",
    # several Mains and Managers on one machine: the default /metrics ports would collide
    "METRICS_PORT": "0",
    "MANAGER_METRICS_PORT": "0",
    "REDIS_SOCKET_TIMEOUT_S": "1",
    "REDIS_CONNECT_TIMEOUT_S": "0.5",
    "HEARTBEAT_INTERVAL_S": "0.5",
    "HEARTBEAT_TTL_S": "3",
    "PREWARM_COUNT": "1",
    "PREWARM_RUNTIMES": ",".join(RUNTIMES),
    "CAPACITY_CONTAINERS": str(CAPACITY),
    "LEASE_GRACE_S": "1",
    "LEASE_REAPER_INTERVAL_S": "0.5",
    "ORPHAN_GRACE_S": str(ORPHAN_GRACE_S),
    "DRAIN_TIMEOUT_S": "2",
    # a request must not wait longer than the client does
    "COLD_START_TIMEOUT_S": "10",
    "QUEUE_TIMEOUT_S": "5",
    # one admin key drives all the load: its rate limit is not what this run tests
    "RATE_PER_S": "100000",
    "RATE_BURST": "100000",
    # asynchronous events: retries, reclaims and throttle backoff short enough to end in the run
    "ASYNC_RETRY_DELAYS_S": "0.2,0.4",
    "ASYNC_CONSUMER_TIMEOUT_S": "2",
    "ASYNC_THROTTLE_DELAY_S": "0.1",
    "ASYNC_THROTTLE_MAX_DELAY_S": "1",
    "SCHEDULER_LEASE_S": str(SCHEDULER_LEASE_S),
}
MAJOR_FAULTS = ("restart_manager", "restart_redis", "restart_main")
# what counts as a broken invariant (exit status 1)
BREAKS = (
    "leaked", "duplicates", "overlaps", "records_missing", "stale_entries", "double_placed",
    "wrong_version", "wrong_result", "executed_unrecorded", "orphan_processes",
    "untracked_processes", "handed_busy", "async_lost", "async_unexplained",
    "async_success_records_wrong", "async_redis_data_lost", "stream_duplicates",
    "stream_records_wrong", "stream_bodies_wrong", "stream_aborts_ignored", "stream_handed_busy",
    "ws_duplicates", "ws_records_missing", "ws_wrong_replies", "ws_kills_unnoticed",
    "ws_drops_unexplained", "sched_missing", "sched_duplicates", "sched_unexplained",
    "sched_attempt_twice", "sched_late", "sched_fires_unseen", "sched_records_wrong",
    "killed_calls_wrong", "wrong_runtime", "status_pool_wrong",
)  # fmt: skip


class HarnessError(Exception):
    """The run itself failed (not hotpool's invariants)."""


@dataclass(frozen=True)
class Profile:
    load_s: float
    settle_max_s: float
    container_kills: int


def profile_for(quick: bool, duration_s: float | None) -> Profile:
    if quick:
        return Profile(load_s=duration_s or 28.0, settle_max_s=9.0, container_kills=8)
    load_s = duration_s or 300.0
    return Profile(load_s=load_s, settle_max_s=15.0, container_kills=max(4, int(load_s / 5)))


# ---------------------------------------------------------------------------------------------
# the fault plan: a pure function of the seed


@dataclass(frozen=True)
class Fault:
    at_s: float  # since the load started
    kind: str  # kill_container | restart_manager | restart_redis | restart_main
    target: int  # Manager or Main index; for kill_container, picks among ready containers
    down_s: float = 0.0
    # kill_container: the runtime whose containers it picks among (any, when none is ready),
    # whether it waits for one running a call, and what it kills: the whole ``container``, or
    # only its custom ``runtime`` process
    runtime: str = ""
    busy: bool = False
    part: str = ""


def plan_faults(seed: int, load_s: float, container_kills: int) -> list[Fault]:
    """Major faults one per slot (never two at once), container kills anywhere."""
    rng = random.Random(seed)
    first, last = 2.0, load_s - 2.0
    slot_s = min(15.0, max(6.0, (last - first) / 3))
    slots = max(3, int((last - first) // slot_s))
    kinds: list[str] = []
    while len(kinds) < slots:  # every kind as often as the others, in a seeded order
        kinds.extend(rng.sample(MAJOR_FAULTS, len(MAJOR_FAULTS)))
    faults = []
    for i, kind in enumerate(kinds[:slots]):
        at_s = first + i * slot_s + rng.uniform(0.0, 1.5)
        if kind == "restart_manager":
            # both sides of the heartbeat TTL (3 s): back in time, or purged as dead first
            faults.append(Fault(at_s, kind, rng.randrange(MANAGERS), rng.uniform(1.5, 4.5)))
        elif kind == "restart_redis":
            # a graceful stop (its AOF flushed) and a start from that AOF
            faults.append(Fault(at_s, kind, 0, rng.uniform(1.0, 2.5)))
        else:
            faults.append(Fault(at_s, kind, rng.randrange(MAINS), rng.uniform(1.5, 3.0)))
    kills = sorted(
        (
            Fault(rng.uniform(1.0, load_s - 1.0), "kill_container", rng.randrange(1 << 30))
            for _ in range(container_kills)
        ),
        key=lambda f: f.at_s,
    )
    return sorted([*faults, *kill_turns(kills)], key=lambda f: f.at_s)


def kill_turns(kills: list[Fault]) -> list[Fault]:
    """The container kills in time order, each given its runtime (``KILL_RUNTIMES`` in turn),
    whether it waits for a busy container and its part. Python's kills want a busy one at
    random; the other runtimes' take turns, so a short run has each kind early: Node.js busy,
    idle; a custom runtime's container busy, its runtime busy, its container idle, its runtime
    idle."""
    turns = []
    seen: dict[str, int] = dict.fromkeys(KILL_RUNTIMES, 0)
    for i, kill in enumerate(kills):
        runtime = KILL_RUNTIMES[i % len(KILL_RUNTIMES)]
        k = seen[runtime]
        seen[runtime] += 1
        if runtime == "python":
            busy, part = kill.target % 2 == 0, "container"
        elif runtime == "provided":
            busy, part = k % 4 < 2, ("container", "runtime")[k % 2]
        else:
            busy, part = k % 2 == 0, "container"
        turns.append(dataclasses.replace(kill, runtime=runtime, busy=busy, part=part))
    return turns

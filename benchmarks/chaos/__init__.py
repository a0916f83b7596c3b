"""A bounded chaos run of a production-shaped hotpool, checked against BRIEF.md §3.

``python -m hotpool.benchmarks.chaos [--quick] [--seed N] [--duration-s S] [--keep]``

Topology, all on 127.0.0.1 with the process backend: the run's own ``redis-server`` (AOF,
``appendfsync everysec``, in ``<run dir>/redis``), three
Managers and two Mains (``python -m hotpool.main_server.cli manager|main``) sharing one
migrated SQLite metadata file. Each service has its own state directory; their ``code``
directories are symlinks to one shared directory, which plays the shared bucket (a
LocalCodeStore per process would otherwise hold only what was deployed through it).

Five functions deploy one package (``benchmarks/chaos_function``): it sleeps as the event says
(5-50 ms; 3-8 s for the calls of three "slow" clients to ``chaos-slow``, which the other clients
call quickly too) and appends one JSON line per call start and one per call end to
``<run dir>/executions.log`` (token, request id, pid, container, start, end). That file is the
ground truth for "delivered exactly once" and for "one call at a time per container". The
functions are deployed with ``websocket=key``; streams go to ``chaos-slow`` (its 10 s timeout
holds a long stream), WebSocket connections to the quick ones. Two more functions run the
quick synchronous calls in the other runtimes, each taking ``RUNTIME_SHARE`` (10 %) of them:
``chaos-node`` (``runtime=nodejs``, ``benchmarks/chaos_function_node/index.js``) and
``chaos-provided`` (``runtime=provided``: ``benchmarks/chaos_function_provided/bootstrap``, a
stdlib Python loop over Lambda's Runtime API behind the relay); they write the same ledger
lines, with their ``runtime``. Every Manager keeps a pre-warmed container of each runtime.

While a load generator (16 concurrent clients, alternating between the Mains, one unique token
per request) runs, two more clients queue asynchronous events (``?async=true``, a token each;
every 20th asks the function to raise, so it is retried and dead-lettered), two clients stream
(``stream_load``: the function returns a generator; the client of every 10th stream leaves
after its first item), one client per Main holds a WebSocket connection (``ws_load``: one
message at a time, reconnecting to the other Main when its socket drops), three schedules made
through the API before the load (``rate(1 second)`` twice, ``rate(3 seconds)``; the Mains'
scheduler lease is 3 s) fire into the ledger, and faults planned from the seed strike: SIGKILL
of random containers, kill -9 and restart of a Manager (same id and port) and of a Main while
it has requests in flight (the one whose scheduler leads), and a restart of Redis (SIGTERM, which
flushes its AOF, then a start from it on the same port: nothing is lost). Container kills take
turns over the runtimes (Python, Node.js, Python, the custom runtime, and again); a kill
waits up to 2 s for a container of its runtime running a call when it wants a busy one,
kills a container's whole process group, and every other custom-runtime kill takes only its
runtime process (its relay then fails the call and ends). Then the run waits
(bounded) until every accepted event has ended, for leases to expire and the lease reaper to
settle, and counts:

- sent, succeeded, failed_by_cause (HTTP status + error code, or ``client_error <exception>``);
- duplicates (synchronous calls run more than once), overlaps (one container running two calls
  at once), wrong_version / wrong_result (a reply or an execution for the wrong function,
  version or token);
- leaked (ready containers in no pool list and no lease), stale_entries (pool entries or leases
  naming containers no Manager has), double_placed (a container in more than one place),
  orphan_processes (container processes no running Manager owns);
- records_missing (a 200 or function-error answer without an execution record on either Main),
  executed_unrecorded (an execution without a record whose Main was not killed under it);
- untracked_processes (container processes a live Manager neither lists nor pre-warms),
  handed_busy (a request given a container still running another call: it answered 409 Busy);
- async_accepted (202s), async_succeeded, async_dead_lettered (failed or expired, in the
  function's dead letters with a reason), async_lost (a 404, an event still queued or running
  after the drain, or one that ended without a dead letter or with the wrong result),
  async_extra_executions (runs of an event after its first in the ledger) by what explains them
  (``retry`` of a run that raised, a killed ``container`` or its ``manager``, a killed Main's
  ``consumer``; a Redis restart explains none), async_unexplained (the rest),
  async_success_records_wrong (a succeeded event without exactly one success record, two being
  allowed only after a killed consumer) and async_redis_data_lost (a Main found the queue gone:
  Redis came back without its AOF);
- streams_sent, streams_completed, streams_aborted_by_client (left after the first item),
  streams_failed_by_cause; stream_duplicates (a stream run twice), stream_records_wrong (a
  stream that reached a container without exactly the record it should have: a completed one
  ``streamed``, success, not aborted, ``bytes_streamed`` equal to what its client read; a left
  one ``aborted``, or its container's death when that came first; a missing record is excused
  only by a Main killed under it or right after),
  stream_bodies_wrong (a 200 body other than the items, with the error line of a stream that
  failed mid-way), stream_aborts_ignored (a generator that ran to its end after its client
  left), stream_handed_busy (a stream given a container still running another call: it
  answered 409), stream_abort_close_max_s (the longest a left stream's generator ran on);
- ws_connections, ws_messages_sent, ws_messages_answered (the reply was the message's token),
  ws_messages_failed_by_cause; ws_duplicates (a message, ``$connect`` or ``$disconnect`` run
  twice), ws_records_missing (an answered message that did not run exactly once with a
  ``websocket`` record, or any WebSocket execution without one whose Main was not killed under
  it), ws_wrong_replies, ws_kills_unnoticed (a socket still open on a Main 3 s after it was
  killed), ws_drops_unexplained (a socket that dropped with no Main killed), ws_drops,
  ws_reconnects_elsewhere and ws_reconnect_max_s;
- sched_ticks (of every schedule, from its creation to the end of the load), sched_fired,
  sched_missing (no run, and not dead-lettered), sched_duplicates (a tick run as two events),
  sched_redeliveries (one event run again, by what explains it), sched_unexplained,
  sched_attempt_twice, sched_late (accepted later than the lease + 2 s after its tick, plus
  any time Redis was away), sched_fires_unseen (a fired event whose queue state is gone),
  sched_records_wrong (a succeeded fire without exactly one ``schedule`` success record), the
  worst fire and arrival delays, leader terms and leaders killed (``schedule_audit``);
- by_runtime (per runtime: sent, succeeded, failed_by_cause, executions, containers,
  duplicates, overlaps, records_missing, kills by part, the calls they cut short by recorded
  error, the pool); killed_calls, killed_calls_wrong (a call a kill cut short, recorded as
  other than ``RuntimeExited``, or for a custom runtime killed alone ``Runtime.ExitError``),
  wrong_runtime (a ledger line from another runtime than its function's), status_pool_wrong
  (a runtime whose warm + busy in ``/system/status`` differ from its ready containers after
  the run settled); orphan_processes counts custom runtimes no relay owns too (``runtime_audit``);
- sent_to_dead and the other Main counters, banked before each Main kill (a restarted Main's
  counters start at zero; what a killed Main counted after the last poll, at most ~1 s, is lost).

Records are read through each Main's API (newest 1000 per function) and, as a long run has more,
straight from each Main's SQLite log in its state directory. A broken run keeps its directory
(logs of every service, executions.log, outcomes.jsonl, streams.jsonl, ws_messages.jsonl,
report.json) and prints its path.

Prints a human summary, then one JSON object as the last line. Exit status: 0 clean, 1 an
invariant broke, 2 the harness itself failed (a service would not start, no request succeeded).
Every process the run starts is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from hotpool.benchmarks.chaos.async_audit import fault_windows
from hotpool.benchmarks.chaos.checks import (
    classify_events,
    explain_rerun,
    extra_executions,
    find_duplicates,
    find_overlaps,
    runs_by_token,
    success_records,
    wrong_success_records,
)
from hotpool.benchmarks.chaos.config import MAJOR_FAULTS, plan_faults
from hotpool.benchmarks.chaos.observe import PoolState, analyse_pool
from hotpool.benchmarks.chaos.schedule_audit import (
    expected_ticks,
    findings,
    late_fires,
    redis_outages,
    schedule_runs,
    unfired,
)
from hotpool.benchmarks.chaos.stream_load import StreamSent, judge_body, stream_faults
from hotpool.benchmarks.chaos.ws_load import (
    WsMessage,
    WsSocket,
    after_kill,
    judge_reply,
    missing_records,
    unnoticed_kills,
)

__all__ = [
    "MAJOR_FAULTS",
    "PoolState",
    "StreamSent",
    "WsMessage",
    "WsSocket",
    "after_kill",
    "analyse_pool",
    "classify_events",
    "expected_ticks",
    "explain_rerun",
    "extra_executions",
    "fault_windows",
    "find_duplicates",
    "find_overlaps",
    "findings",
    "judge_body",
    "judge_reply",
    "late_fires",
    "missing_records",
    "plan_faults",
    "redis_outages",
    "runs_by_token",
    "schedule_runs",
    "stream_faults",
    "success_records",
    "unfired",
    "unnoticed_kills",
    "wrong_success_records",
]

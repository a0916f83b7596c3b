"""Streamed calls in the chaos run: the clients that read them, and the checks of their
ledger lines and execution records.

Each client streams from ``SLOW_FUNCTION`` through ``/invoke``, alternating between the
Mains and between the two forms (raw chunked, and Server-Sent Events); the function yields
``<token>:<i>\\n`` items. Every
``STREAM_LEAVE_EVERY``-th stream's client closes its connection after the first item, with
seconds of items still to come, so Main must stop the handler's generator.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.checks import main_killed
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import (
    CLIENT_TIMEOUT_S,
    MAINS,
    SLOW_FUNCTION,
    STREAM_CLIENTS,
    STREAM_GAP_MS,
    STREAM_ITEMS,
    STREAM_LEAVE_EVERY,
    STREAM_LEAVE_GAP_MS,
    STREAM_LEAVE_ITEMS,
)
from hotpool.benchmarks.chaos.load import client_errors, run_clients

# a stream's record is written once it has ended: a Main killed this long after its client
# was done may have taken the record with it (an aborted stream ends after Main notices the
# client left, up to a quarter second, and the handler reaches its next item)
RECORD_MARGIN_S = 2.0
_ERROR_MARK = b'\n{"hotpoolStreamError":'
SSE_TYPE = "text/event-stream"
RAW_TYPE = "application/octet-stream"


@dataclass
class StreamSent:
    """One streamed call as its client saw it."""

    seq: int
    token: str
    main: int
    items: int
    leave: bool  # the client leaves after the first item
    sse: bool  # asked for text/event-stream
    sent_at: float
    done_at: float = 0.0
    status: int | None = None
    request_id: str | None = None
    streamed_header: bool = False
    received: int = 0  # the items' bytes read (an SSE event's data and its line break)
    cause: str = "pending"  # ok | left | stream_error <type> | wrong_body | <status> <code> | ...
    message: str = ""

    @property
    def completed(self) -> bool:
        return self.cause == "ok"


def expected_body(token: str, items: int) -> bytes:
    return "".join(f"{token}:{i}\n" for i in range(items)).encode()


def sse_payload(body: bytes) -> bytes | None:
    """A Server-Sent Events body of one-line items back in the raw form: each event's data
    and a line break, an ``event: error`` as the raw error line; None if it is not that."""
    *events, rest = body.split(b"\n\n")
    if rest:
        return None  # cut inside an event
    raw = bytearray()
    for event in events:
        lines = event.split(b"\n")
        if lines[0] == b"event: error" and len(lines) == 2 and lines[1].startswith(b"data: "):
            raw += b'\n{"hotpoolStreamError":' + lines[1][6:] + b"}\n"
        elif len(lines) == 1 and lines[0].startswith(b"data: "):
            raw += lines[0][6:] + b"\n"
        else:
            return None
    return bytes(raw)


def judge_body(body: bytes, token: str, items: int, *, sse: bool = False) -> tuple[str, str]:
    """A 200 stream's body: ``ok`` (every item), ``stream_error <type>`` (items, then the
    error line or event of a stream that ended in error) or ``wrong_body`` (anything else: a
    stream cut short without saying so, or foreign bytes)."""
    expected = expected_body(token, items)
    if sse:
        raw = sse_payload(body)
        if raw is None:
            return "wrong_body", repr(body[-160:])
        body = raw
    head, mark, tail = body.partition(_ERROR_MARK)
    if not mark:
        return ("ok", "") if body == expected else ("wrong_body", repr(body[-160:]))
    try:
        error = json.loads(mark[1:] + tail)["hotpoolStreamError"]
    except (ValueError, KeyError, TypeError):
        return "wrong_body", repr(body[-160:])
    if not expected.startswith(head):
        return "wrong_body", repr(head[-160:])
    return f"stream_error {error.get('errorType')}", str(error.get("errorMessage", ""))[:200]


class StreamLoad:
    """``STREAM_CLIENTS`` clients of streamed calls (see the module docstring)."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.rng = random.Random(seed ^ 0x57EA)
        self.sent: list[StreamSent] = []
        self._seq = itertools.count()

    async def one(self, http: aiohttp.ClientSession, main: int) -> StreamSent:
        n = next(self._seq)
        leave = n % STREAM_LEAVE_EVERY == STREAM_LEAVE_EVERY - 1
        items = STREAM_LEAVE_ITEMS if leave else self.rng.randint(*STREAM_ITEMS)
        gap_ms = STREAM_LEAVE_GAP_MS if leave else self.rng.randint(*STREAM_GAP_MS)
        sse = n // STREAM_LEAVE_EVERY % 2 == 1  # the leavers take turns too
        sent = StreamSent(n, f"s{self.seed}-t{n}", main, items, leave, sse, time.time())
        self.sent.append(sent)
        event = {"token": sent.token, "stream": items, "gap_ms": gap_ms}
        with client_errors(sent):
            async with http.post(
                f"{self.cluster.main_url(main)}/v1/functions/{SLOW_FUNCTION}/invoke",
                json=event,
                headers={"Accept": SSE_TYPE} if sse else None,
                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
            ) as resp:
                sent.status = resp.status
                sent.request_id = resp.headers.get("X-Hotpool-Request-Id")
                sent.streamed_header = resp.headers.get("X-Hotpool-Streamed") == "true"
                await self._read(resp, sent)
        return sent

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, sent: StreamSent) -> None:
        if resp.status != 200:
            body = await resp.read()
            try:
                error = json.loads(body)["error"]
                sent.cause = f"{resp.status} {error.get('code', '?')}"
                sent.message = str(error.get("message", ""))[:200]
            except (ValueError, KeyError, TypeError):
                sent.cause, sent.message = f"{resp.status} ?", repr(body[:200])
            return
        if sent.leave:
            first = await (resp.content.readuntil(b"\n\n") if sent.sse else resp.content.readline())
            resp.close()  # the client is gone: the connection closes under Main
            ok = judge_body(first, sent.token, 1, sse=sent.sse)[0] == "ok"
            sent.cause, sent.message = ("left", "") if ok else ("wrong_body", repr(first[:160]))
            return
        body = await resp.read()
        sent.cause, sent.message = judge_body(body, sent.token, sent.items, sse=sent.sse)
        sent.received = len(sse_payload(body) or b"") if sent.sse else len(body)
        if sent.cause == "ok" and not sent.streamed_header:
            sent.cause, sent.message = "wrong_body", "a 200 without X-Hotpool-Streamed: true"
        elif sent.cause == "ok" and resp.content_type != (SSE_TYPE if sent.sse else RAW_TYPE):
            sent.cause, sent.message = "wrong_body", f"Content-Type {resp.content_type}"

    async def run(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        async def client(k: int) -> None:
            # a stream must end with the load, not be cut off by the client
            stop_s = STREAM_LEAVE_ITEMS * STREAM_LEAVE_GAP_MS / 1000
            while time.time() < stop_at - stop_s:
                sent = await self.one(http, (len(self.sent) + k) % MAINS)
                if sent.cause.startswith("client_error") or sent.status in (429, 503):
                    await asyncio.sleep(0.1)  # a Main is down or full: do not spin

        tasks = [asyncio.create_task(client(k)) for k in range(STREAM_CLIENTS)]
        await run_clients(tasks, stop_at)


# ---------------------------------------------------------------------------------------------
# the checks


def stream_faults(
    sent: StreamSent,
    runs: list[dict[str, Any]],
    record: dict[str, Any] | None,
    main_killed: bool,
) -> list[str]:
    """What is wrong with one streamed call, given its ledger ``runs``, its execution
    ``record`` (None if there is none) and whether its Main was killed while it ran or soon
    after (``RECORD_MARGIN_S``): empty when nothing is.

    - a completed stream ran once, and its record says streamed, success, not aborted, and
      the bytes the client read; a stream its client left has a record saying aborted, and
      its generator was closed early (its end line, when it has one, says aborted);
    - any stream that reached a container (a ledger start) has a record;
    - a killed Main excuses a missing record, never a wrong one.
    """
    wrong = []
    if len(runs) > 1:
        wrong.append(f"ran {len(runs)} times")
    if record is None:
        if runs and not main_killed:
            wrong.append("ran without a record")
        return wrong
    if sent.status == 200 and record.get("streamed") is not True:
        wrong.append("record not streamed")
    if sent.completed:
        if record.get("status") != "success" or record.get("aborted"):
            wrong.append(f"record {record.get('status')} aborted={record.get('aborted')}")
        if record.get("bytes_streamed") != sent.received:
            wrong.append(f"record bytes {record.get('bytes_streamed')} != read {sent.received}")
        if runs and runs[0].get("aborted") is not False:
            wrong.append(f"generator ended aborted={runs[0].get('aborted')}")
    elif sent.cause == "left" and not main_killed and record.get("aborted") is not True:
        # its container may have died before Main saw the client go (no end line then): the
        # record tells the container's death (failed, or the RuntimeExited function error)
        died = bool(runs) and runs[0].get("end") is None and record.get("status") != "success"
        if not died:
            wrong.append(f"its client left, the record is not aborted ({record.get('status')})")
    return wrong


def stream_report(
    sent: list[StreamSent],
    runs: dict[str, list[dict[str, Any]]],
    records: dict[str, dict[str, Any]],
    events: list[dict[str, Any]],
    t0: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary's stream_* counts and the details behind them. ``runs``: the ledger's runs
    by token (``checks.runs_by_token``)."""
    wrong: dict[str, list[str]] = {}
    ignored, close_s = [], []
    for s in sent:
        token_runs = runs.get(s.token, [])
        request_id = s.request_id or (token_runs[0]["request_id"] if token_runs else None)
        killed = main_killed(events, t0, s.main, s.sent_at - 0.05, s.done_at + RECORD_MARGIN_S)
        faults = stream_faults(s, token_runs, records.get(request_id or ""), killed)
        if faults:
            wrong[s.token] = faults
        if s.cause == "left" and token_runs and token_runs[0].get("end") is not None:
            if token_runs[0].get("aborted") is False:
                ignored.append(s.token)  # the generator ran to its end: nobody stopped it
            else:
                close_s.append(token_runs[0]["end"] - s.done_at)
    causes = Counter(s.cause for s in sent)
    summary = {
        "streams_sent": len(sent),
        "streams_completed": causes.pop("ok", 0),
        "streams_aborted_by_client": causes.pop("left", 0),
        "streams_failed_by_cause": dict(causes.most_common()),
        "stream_duplicates": sum(1 for s in sent if len(runs.get(s.token, [])) > 1),
        "stream_records_wrong": len(wrong),
        "stream_bodies_wrong": sum(1 for s in sent if s.cause == "wrong_body"),
        "stream_aborts_ignored": len(ignored),
        # given a container still running another call: it answered 409 Busy (invariant 1
        # held only thanks to the container's own guard)
        "stream_handed_busy": sum(1 for s in sent if "answered 409" in s.message),
        # how long after its client left a stream's generator was closed (the worst one)
        "stream_abort_close_max_s": round(max(close_s), 3) if close_s else None,
    }
    details = {
        "stream_records_wrong": dict(list(wrong.items())[:20]),
        "stream_bodies_wrong": [
            {"token": s.token, "main": s.main, "message": s.message}
            for s in sent if s.cause == "wrong_body"
        ][:20],
        "stream_aborts_ignored": ignored[:20],
    }  # fmt: skip
    return summary, details

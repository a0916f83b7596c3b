"""WebSocket traffic in the chaos run: clients holding connections to the Mains, and the
checks of their messages against the ledger and the execution records.

``WS_CLIENTS_PER_MAIN`` clients per Main each hold one connection (``GET /ws/{function}``,
the admin key as Bearer) to a quick function deployed with ``websocket=key``, and send one
message at a time, ``{"token", "sleep_ms"}``; the function answers with the token. A client
whose socket drops (a killed Main) reconnects to the other Main. A client closes its socket
after ``WS_SOCKET_S`` and connects again to its own Main (so both Mains hold sockets when one
is killed, and ``$connect`` and ``$disconnect`` run all along), and at the end of the load.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.checks import main_killed
from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import (
    CLIENT_TIMEOUT_S,
    FUNCTION_TIMEOUT_S,
    FUNCTIONS,
    MAINS,
    SLEEP_MS,
    WS_CLIENTS_PER_MAIN,
    WS_DROP_NOTICE_S,
    WS_PAUSE_S,
    WS_SOCKET_S,
)
from hotpool.benchmarks.chaos.load import run_clients

# an execution whose record is missing is excused when its Main was killed while it ran or
# within this long after it ended (its record was not yet journaled)
RECORD_MARGIN_S = 1.0
_ENDED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
          aiohttp.WSMsgType.ERROR)  # fmt: skip


@dataclass
class WsMessage:
    """One message as its client saw it."""

    seq: int
    token: str
    client: int
    main: int
    sent_at: float
    done_at: float = 0.0
    cause: str = "pending"  # ok | ws_error <message> | wrong_reply | dropped | client_error ...
    reply: str = ""

    @property
    def answered(self) -> bool:
        return self.cause == "ok"


@dataclass
class WsSocket:
    """One connection a client held."""

    client: int
    main: int
    opened_at: float
    closed_at: float | None = None
    dropped: bool = False  # it ended under the client (not closed by it)
    close_code: int | None = None


def judge_reply(reply: str, token: str) -> str:
    """A message's answer: ``ok`` (its token), ``ws_error <message>`` (API Gateway's error
    message to the client) or ``wrong_reply``."""
    if reply == token:
        return "ok"
    try:
        data = json.loads(reply)
    except ValueError:
        return "wrong_reply"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return f"ws_error {data['message']}"
    return "wrong_reply"


class WsLoad:
    """The WebSocket clients (see the module docstring)."""

    def __init__(self, cluster: Cluster, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.rng = random.Random(seed ^ 0x3E5)
        self.messages: list[WsMessage] = []
        self.sockets: list[WsSocket] = []
        self.connect_failures: Counter[str] = Counter()
        self._seq = itertools.count()

    def _url(self, main: int, function: str) -> str:
        return self.cluster.main_url(main).replace("http://", "ws://") + f"/ws/{function}"

    async def client(self, http: aiohttp.ClientSession, k: int, stop_at: float) -> None:
        home = k % MAINS
        main = home
        function = FUNCTIONS[k % len(FUNCTIONS)]
        while time.time() < stop_at:
            try:
                async with asyncio.timeout(CLIENT_TIMEOUT_S):
                    ws = await http.ws_connect(self._url(main, function), autoping=True)
            except aiohttp.WSServerHandshakeError as exc:
                self.connect_failures[f"{exc.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.connect_failures[f"client_error {type(exc).__name__}"] += 1
            else:
                sock = WsSocket(k, main, time.time())
                self.sockets.append(sock)
                try:
                    await self._converse(ws, sock, min(stop_at, sock.opened_at + WS_SOCKET_S))
                finally:
                    await ws.close()
                    sock.closed_at = sock.closed_at or time.time()
                if not sock.dropped:
                    main = home  # the next socket goes back home: both Mains keep some
                    continue
            # a refused connect or a dropped socket: try the other Main
            main = (main + 1) % MAINS
            await asyncio.sleep(0.1)

    async def _converse(
        self, ws: aiohttp.ClientWebSocketResponse, sock: WsSocket, until: float
    ) -> None:
        """Messages one at a time until ``until``, the socket drops or a reply is late."""
        while time.time() < until:
            n = next(self._seq)
            msg = WsMessage(n, f"s{self.seed}-w{n}", sock.client, sock.main, time.time())
            self.messages.append(msg)
            event = {"token": msg.token, "sleep_ms": self.rng.randint(*SLEEP_MS)}
            try:
                await ws.send_str(json.dumps(event))
                reply = await ws.receive(timeout=CLIENT_TIMEOUT_S)
            except TimeoutError:
                msg.cause = "client_error timeout"  # a late reply must not answer the next one
                return
            except (ConnectionResetError, aiohttp.ClientError) as exc:
                reply = aiohttp.WSMessage(aiohttp.WSMsgType.ERROR, exc, None)
            finally:
                msg.done_at = time.time()
            if reply.type in _ENDED:
                msg.cause = "dropped"
                sock.dropped, sock.closed_at, sock.close_code = True, time.time(), ws.close_code
                return
            msg.reply = str(reply.data)[:200]
            msg.cause = judge_reply(msg.reply, msg.token)
            await asyncio.sleep(WS_PAUSE_S)

    async def run(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        tasks = [
            asyncio.create_task(self.client(http, k, stop_at))
            for k in range(WS_CLIENTS_PER_MAIN * MAINS)
        ]
        await run_clients(tasks, stop_at)


# ---------------------------------------------------------------------------------------------
# the checks


def missing_records(
    runs: dict[str, list[dict[str, Any]]],
    records: dict[str, dict[str, Any]],
    messages: dict[str, WsMessage],
    main_of: dict[str, int],
    killed: Callable[[int, float, float], bool],
) -> dict[str, str]:
    """WebSocket executions without their record, by token -> why. ``runs``: the ledger's ws
    runs by token; ``messages``: the clients' messages by token; ``main_of``: the Main index
    of each ``domain`` in the ledger; ``killed(main, since, until)``: whether that Main was
    killed between those unix times. An answered message ran exactly once with a websocket
    record; any other run has one unless its Main was killed while it ran or right after."""
    missing = {}
    for token, token_runs in runs.items():
        message = messages.get(token)
        if message is not None and message.answered and len(token_runs) != 1:
            missing[token] = f"answered, ran {len(token_runs)} times"
            continue
        for run in token_runs:
            record = records.get(run["request_id"])
            if record is not None and record.get("trigger") == "websocket":
                continue
            # an answered message's record was journaled before its reply: nothing excuses it
            answered = message is not None and message.answered
            main = message.main if message is not None else main_of.get(run.get("domain", ""))
            ended = run["end"] or run["start"] + max(FUNCTION_TIMEOUT_S.values())
            since, until = run["start"] - 0.05, ended + RECORD_MARGIN_S
            if answered or main is None or not killed(main, since, until):
                missing[token] = "no record" if record is None else f"trigger {record['trigger']}"
    for token, message in messages.items():
        if message.answered and token not in runs:
            missing[token] = "answered, never ran"
    return missing


def unnoticed_kills(sockets: list[WsSocket], kills: list[tuple[int, float]]) -> list[dict]:
    """Sockets open on a Main when it was killed that did not see the drop within
    ``WS_DROP_NOTICE_S``. ``kills``: (Main, unix time)."""
    late = []
    for main, at in kills:
        for s in sockets:
            if s.main != main or s.opened_at > at or (s.closed_at or at) < at - 0.05:
                continue
            if s.closed_at is None or s.closed_at > at + WS_DROP_NOTICE_S:
                late.append({"client": s.client, "main": main, "killed_at": at,
                             "closed_at": s.closed_at})  # fmt: skip
    return late


def ws_report(
    load: WsLoad,
    runs: dict[str, list[dict[str, Any]]],
    records: dict[str, dict[str, Any]],
    events: list[dict[str, Any]],
    t0: float,
    main_of: dict[str, int],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary's ws_* counts and the details behind them. ``runs``: the ledger's runs by
    token (``checks.runs_by_token``)."""
    ws_runs = {t: rs for t, rs in runs.items() if rs[0].get("kind") == "ws"}
    messages = {m.token: m for m in load.messages}

    def killed(main: int, since: float, until: float) -> bool:
        return main_killed(events, t0, main, since, until)

    missing = missing_records(ws_runs, records, messages, main_of, killed)
    kills = [(e["main"], t0 + e["t"]) for e in events if e["kind"] == "kill_main"]
    late = unnoticed_kills(load.sockets, kills)
    drops = [s for s in load.sockets if s.dropped]
    explained = [s for s in drops if after_kill(s, kills)]
    reconnects = _reconnects(load.sockets)
    causes = Counter(m.cause for m in load.messages)
    summary = {
        "ws_connections": len(load.sockets),
        "ws_connect_failures": dict(load.connect_failures),
        "ws_messages_sent": len(load.messages),
        "ws_messages_answered": causes.pop("ok", 0),
        "ws_messages_failed_by_cause": dict(causes.most_common()),
        "ws_executions": sum(len(rs) for rs in ws_runs.values()),
        "ws_duplicates": sum(1 for rs in ws_runs.values() if len(rs) > 1),
        "ws_records_missing": len(missing),
        "ws_wrong_replies": causes.get("wrong_reply", 0),
        "ws_drops": len(drops),
        "ws_drops_after_kill": len(explained),
        "ws_drops_unexplained": len(drops) - len(explained),
        "ws_kills_unnoticed": len(late),
        "ws_reconnects_elsewhere": sum(1 for _, other in reconnects if other),
        "ws_reconnect_max_s": round(max((s for s, _ in reconnects), default=0.0), 2),
    }
    details = {
        "ws_records_missing": dict(list(missing.items())[:20]),
        "ws_duplicates": {t: rs for t, rs in ws_runs.items() if len(rs) > 1},
        "ws_wrong_replies": [m.__dict__ for m in load.messages if m.cause == "wrong_reply"][:20],
        "ws_kills_unnoticed": late[:20],
        "ws_drops_unexplained": [s.__dict__ for s in drops if s not in explained][:20],
    }
    return summary, details


def after_kill(sock: WsSocket, kills: list[tuple[int, float]]) -> bool:
    """The socket dropped within ``WS_DROP_NOTICE_S`` of a kill of its Main."""
    closed = sock.closed_at or 0.0
    return any(m == sock.main and at - 0.05 <= closed <= at + WS_DROP_NOTICE_S for m, at in kills)


def _reconnects(sockets: list[WsSocket]) -> list[tuple[float, bool]]:
    """After each dropped socket, the client's next one: (seconds later, on the other Main)."""
    found = []
    for a, b in itertools.pairwise(sorted(sockets, key=lambda s: (s.client, s.opened_at))):
        if a.client == b.client and a.dropped and a.closed_at is not None:
            found.append((b.opened_at - a.closed_at, b.main != a.main))
    return found

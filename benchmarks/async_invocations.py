"""Asynchronous invocations against a real embedded hotpool (``hotpool dev`` with its private
redis-server): how fast Main accepts events, how soon an idle consumer starts one, and how
fast a backlog drains through warm containers, each beside its synchronous counterpart.

- accepts: ``clients`` connections POST ``?async=true`` until ``accepts`` events are in (202s
  per second); the baseline is as many synchronous calls from the same clients.
- idle start: one event at a time on a warm container; the handler returns ``time.time()`` at
  its start, compared with the client's clock when the 202 arrived (and when it sent the
  request). Both clocks are this machine's, so the difference is a real interval.
- backlog: while events of a second function hold every one of the consumer's slots
  (``HOTPOOL_ASYNC_CONCURRENCY``: it reads nothing more), ``backlog`` events are accepted as
  fast as the clients go; when the holders end, the consumer drains them. The rate is events
  over the time from the first one's start to the last one's finish, by Main's own timestamps
  in each status. The baseline is as many synchronous calls at that same concurrency.

Every event accepted is looked up at the end: its status counts, and a run whose events did
not all succeed says so in its figures. Scenarios wait for the queue to be empty before the
next begins, so none runs behind another's backlog. The client is aiohttp in this process,
the same for each side and its baseline, so their ratio holds on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hotpool.benchmarks.devserver import DevServer, bench_zip, dev_server
from hotpool.benchmarks.latency import warm_up
from hotpool.benchmarks.loadgen import percentile
from hotpool.shared.async_keys import FINAL
from hotpool.shared.settings import Settings

ASYNC_FUNCTION = "benchasync"
# its events hold the consumer's slots while the backlog is accepted (the same code, asked
# to sleep)
HOLD_FUNCTION = "benchasynchold"
# returns at once with the time it started; sleeps only when asked (the warm-up holds
# containers with it so the pool starts one per connection; the holders, until a given time)
ASYNC_HANDLER = """import time


def handler(event, context):
    started = time.time()
    if event.get("sleep_s"):
        time.sleep(event["sleep_s"])
    if event.get("until"):
        time.sleep(max(0.0, event["until"] - time.time()))
    return {"started": started}
"""
EVENT = b'{"name": "bench"}'
unmeasured_idle_events = 3  # the first events pay for connections and caches
first_poll_s = 0.02  # an idle event's status is not asked for before this: no noise meanwhile
poll_s = 0.005
idle_event_timeout_s = 30.0
status_poll_s = 0.1
holders_settle_s = 1.0  # the holders running at once have stopped growing for this long
request_timeout_s = 120.0
hold_timeout_s = 900.0  # the holding function's timeout (the longest a function may have)


@dataclass
class Burst:
    """A fixed number of requests sent from ``clients`` connections at once, each sending its
    next request when its answer is in: the answers' statuses and request ids, and the time."""

    clients: int
    statuses: Counter[int] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def figures(self, expected: int) -> dict[str, Any]:
        """Answers per second with status ``expected``, latency, and the other answers."""
        ok = self.statuses[expected]
        return {
            "requests": sum(self.statuses.values()),
            "clients": self.clients,
            "elapsed_s": round(self.elapsed_s, 3),
            "per_s": round(ok / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 3),
            "p99_ms": round(percentile(self.latencies_ms, 99), 3),
            "errors": sum(n for status, n in self.statuses.items() if status != expected),
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
        }


class Client:
    """Main's API for one benchmark, over one aiohttp session."""

    def __init__(self, server: DevServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.headers = {**server.headers, "Content-Type": "application/json"}

    def invoke_url(self, function: str = ASYNC_FUNCTION) -> str:
        return f"{self.server.main_url}/v1/functions/{function}/invoke"

    async def burst(self, count: int, clients: int, *, asynchronous: bool) -> Burst:
        """``count`` invocations (``?async=true`` or synchronous) from ``clients`` at once."""
        url = self.invoke_url() + ("?async=true" if asynchronous else "")
        burst, left = Burst(clients), count

        async def connection() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                begun = time.perf_counter()
                try:
                    async with self.session.post(url, data=EVENT, headers=self.headers) as resp:
                        await resp.read()
                        status, request_id = resp.status, resp.headers.get("X-Hotpool-Request-Id")
                except (aiohttp.ClientError, TimeoutError):
                    status, request_id = 0, None
                burst.latencies_ms.append((time.perf_counter() - begun) * 1000)
                burst.statuses[status] += 1
                if status == 202 and request_id:
                    burst.request_ids.append(request_id)

        begun = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(clients)))
        burst.elapsed_s = time.perf_counter() - begun
        return burst

    async def accept(
        self, function: str = ASYNC_FUNCTION, event: bytes = EVENT
    ) -> tuple[str, float, float]:
        """One event: its request id, and the client's clock when it sent it and at the 202."""
        sent = time.time()
        url = self.invoke_url(function) + "?async=true"
        async with self.session.post(url, data=event, headers=self.headers) as resp:
            await resp.read()
            answered = time.time()
            if resp.status != 202:
                raise RuntimeError(f"an asynchronous invoke answered {resp.status}")
            return resp.headers["X-Hotpool-Request-Id"], sent, answered

    async def status(self, request_id: str) -> dict[str, Any]:
        url = f"{self.server.main_url}/v1/invocations/{request_id}"
        async with self.session.get(url, headers=self.server.headers) as resp:
            if resp.status != 200:
                return {"request_id": request_id, "status": f"http {resp.status}"}
            return await resp.json()

    async def statuses(self, request_ids: list[str], clients: int) -> list[dict[str, Any]]:
        """Every event's status, ``clients`` lookups at a time."""
        found: list[dict[str, Any]] = []
        todo = iter(request_ids)

        async def connection() -> None:
            for request_id in todo:
                found.append(await self.status(request_id))

        await asyncio.gather(*(connection() for _ in range(clients)))
        return found

    async def queued(self) -> int:
        """Events accepted and not yet ended, over every namespace (``/system/status``)."""
        url = f"{self.server.main_url}/system/status"
        async with self.session.get(url, headers=self.server.headers) as resp:
            body = await resp.json()
        return sum(ns["queued"] for ns in body["async"]["namespaces"].values())

    async def drained(self, timeout_s: float) -> bool:
        """Until no event is queued or running; False if some still are after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while await self.queued():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(status_poll_s)
        return True


def ended(states: list[dict[str, Any]]) -> dict[str, int]:
    """How many events ended in each status (a live status means it had not ended)."""
    return dict(Counter(str(s.get("status")) for s in states))


async def idle_start(client: Client, events: int) -> dict[str, Any]:
    """202-to-handler-start of ``events`` events, one at a time, on an idle consumer."""
    from_202, from_send, from_accept = [], [], []
    not_succeeded = 0
    for i in range(unmeasured_idle_events + events):
        request_id, sent, answered = await client.accept()
        await asyncio.sleep(first_poll_s)
        deadline = time.monotonic() + idle_event_timeout_s
        state = await client.status(request_id)
        while state.get("status") not in FINAL and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
            state = await client.status(request_id)
        if i < unmeasured_idle_events:
            continue
        if state.get("status") != "succeeded":
            not_succeeded += 1
            continue
        started = float(state["result"]["started"])
        from_202.append((started - answered) * 1000)
        from_send.append((started - sent) * 1000)
        from_accept.append((started - float(state["accepted_at"])) * 1000)

    def p(values: list[float], q: float) -> float:
        return round(percentile(values, q), 3)

    return {
        "events": events,
        "not_succeeded": not_succeeded,
        # negative when the consumer started the handler before the client read the 202
        "from_202_p50_ms": p(from_202, 50),
        "from_202_p99_ms": p(from_202, 99),
        "from_request_p50_ms": p(from_send, 50),
        "from_request_p99_ms": p(from_send, 99),
        "from_accepted_at_p50_ms": p(from_accept, 50),
        "from_accepted_at_p99_ms": p(from_accept, 99),
    }


async def accepts(client: Client, count: int, clients: int) -> dict[str, Any]:
    """Accepts per second, then (the queue empty again) synchronous calls per second."""
    burst = await client.burst(count, clients, asynchronous=True)
    drained = await client.drained(timeout_s=max(120.0, count / 20))
    states = await client.statuses(burst.request_ids, clients)
    sync = await client.burst(count, clients, asynchronous=False)
    figures = {
        "async": {**burst.figures(202), "drained": drained, "ended": ended(states)},
        "sync": sync.figures(200),
    }
    if sync.elapsed_s and figures["sync"]["per_s"]:
        figures["ratio"] = round(figures["async"]["per_s"] / figures["sync"]["per_s"], 2)
    return figures


async def hold_consumer(client: Client, slots: int, until: float) -> tuple[list[str], int]:
    """Fill the consumer's slots with events that sleep until the unix time ``until``; their
    request ids, and how many run at once. Up to ``slots`` are sent; the consumer may run fewer
    for one namespace (it keeps a slot for another), so the wait ends when every one runs or
    their number has stopped growing. One that starts late ends at ``until`` all the same."""
    event = json.dumps({"until": until}).encode()
    holders = [(await client.accept(HOLD_FUNCTION, event))[0] for _ in range(slots)]
    running, changed = 0, time.monotonic()
    while time.time() < until:
        states = await client.statuses(holders, slots)
        now_running = sum(1 for s in states if s.get("status") == "running")
        if now_running == slots:
            return holders, now_running
        if now_running != running:
            running, changed = now_running, time.monotonic()
        elif running and time.monotonic() - changed > holders_settle_s:
            break
        await asyncio.sleep(status_poll_s)
    return holders, running


async def backlog(
    client: Client, count: int, clients: int, concurrency: int, hold_s: float
) -> dict[str, Any]:
    """``count`` synchronous calls at the consumer's concurrency, then ``count`` events
    accepted while the consumer's slots are held for ``hold_s``, run until the last ended."""
    sync = await client.burst(count, concurrency, asynchronous=False)
    holders, held = await hold_consumer(client, concurrency, time.time() + hold_s)
    burst = await client.burst(count, clients, asynchronous=True)
    drained = await client.drained(timeout_s=hold_s + max(120.0, count / 20))
    states = await client.statuses(burst.request_ids, clients)
    holder_states = await client.statuses(holders, concurrency)
    done = [s for s in states if s.get("status") == "succeeded"]
    figures: dict[str, Any] = {
        "events": count,
        "concurrency": concurrency,
        "hold_s": round(hold_s, 1),
        # the slots the consumer gives one namespace: the drain's concurrency
        "held_slots": held,
        "sync": sync.figures(200),
        "async": {
            "accept": burst.figures(202),
            "drained": drained,
            "ended": ended(states),
            "holders_ended": ended(holder_states),
        },
    }
    if done:
        first_start = min(float(s["started_at"]) for s in done)
        last_finish = max(float(s["finished_at"]) for s in done)
        last_accept = max(float(s["accepted_at"]) for s in states if "accepted_at" in s)
        figures["async"].update(
            drain_s=round(last_finish - first_start, 3),
            per_s=round(len(done) / (last_finish - first_start), 1),
            # a backlog proper when 0: the holders outlasted the accepts
            started_before_last_accept=sum(1 for s in done if float(s["started_at"]) < last_accept),
        )
        if figures["sync"]["per_s"]:
            figures["ratio"] = round(figures["async"]["per_s"] / figures["sync"]["per_s"], 2)
    return figures


async def _measure(
    server: DevServer, *, clients: int, accept_count: int, idle_events: int, backlog_count: int,
    concurrency: int,
) -> dict[str, Any]:  # fmt: skip
    connector = aiohttp.TCPConnector(limit=max(clients, concurrency))
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(server, session)
        figures = {
            "idle_start": await idle_start(client, idle_events),
            "accepts": await accepts(client, accept_count, clients),
        }
        # long enough for the accepts, which go faster with the consumer held than they went
        # beside it unless the machine gets busier meanwhile (3x the time, for that); what
        # "started_before_last_accept" reports if not
        rate = max(50.0, figures["accepts"]["async"]["per_s"])
        hold_s = min(hold_timeout_s - 60, 3 + 3 * backlog_count / rate)
        figures["backlog"] = await backlog(client, backlog_count, clients, concurrency, hold_s)
        return figures


def measure(
    backend: str, *, clients: int, accepts: int, idle_events: int, backlog: int, tool: str,
    warm_up_timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The asynchronous figures on a ``hotpool dev`` of their own, its containers warm."""
    concurrency = Settings.from_env().async_concurrency
    # the queue limit is not what is measured: a backlog never meets it
    limit = 2 * max(accepts, backlog)
    with dev_server(backend=backend, async_max_queued_per_namespace=limit) as server:
        # async calls get half the function's concurrency (HOTPOOL_ASYNC_SHARE's default):
        # enough for the consumer's whole concurrency, and the clients' for the baselines
        server.deploy(
            ASYNC_FUNCTION, bench_zip(ASYNC_HANDLER),
            max_concurrency=max(clients, 2 * concurrency) + 8,
        )  # fmt: skip
        server.deploy(
            HOLD_FUNCTION, bench_zip(ASYNC_HANDLER), max_concurrency=2 * concurrency + 8,
            timeout_s=hold_timeout_s, async_retries=0,
        )  # fmt: skip
        containers = warm_up(
            server, ASYNC_FUNCTION, max(clients, concurrency), tool, warm_up_timeout_s
        )
        # the holders start at once, not after cold starts that would eat into their hold
        warm_up(server, HOLD_FUNCTION, concurrency, tool, warm_up_timeout_s)
        run = _measure(
            server, clients=clients, accept_count=accepts, idle_events=idle_events,
            backlog_count=backlog, concurrency=concurrency,
        )  # fmt: skip
        figures = asyncio.run(run)
    return {"containers": containers, "async_concurrency": concurrency, **figures}

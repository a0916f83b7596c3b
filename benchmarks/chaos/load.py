"""The load: concurrent clients, each call's outcome; asynchronous events beside them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from hotpool.benchmarks.chaos.cluster import Cluster
from hotpool.benchmarks.chaos.config import (
    ASYNC_CLIENTS,
    ASYNC_FAIL_EVERY,
    ASYNC_PAUSE_S,
    ASYNC_SLEEP_MS,
    CLIENT_TIMEOUT_S,
    CONCURRENCY,
    FUNCTIONS,
    MAINS,
    RUNTIME_FUNCTIONS,
    RUNTIME_SHARE,
    SLEEP_MS,
    SLOW_CLIENTS,
    SLOW_FUNCTION,
    SLOW_SLEEP_MS,
)

PYTHON_FUNCTIONS = (*FUNCTIONS, SLOW_FUNCTION)

# ---------------------------------------------------------------------------------------------
# the load


@dataclass
class Outcome:
    """One request as the client saw it."""

    seq: int
    token: str
    function: str
    main: int
    sent_at: float
    done_at: float = 0.0
    status: int | None = None
    request_id: str | None = None
    cause: str = "pending"
    function_error: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.cause == "ok"

    @property
    def answered_by_container(self) -> bool:
        """It got an answer that an execution record must back (BRIEF §3.5)."""
        return self.status == 200 or (self.status == 500 and self.function_error is not None)


@dataclass
class AsyncSent:
    """One asynchronous event as the client saw it: accepted (202) or not."""

    seq: int
    token: str
    function: str
    main: int
    fail: bool
    sent_at: float
    status: int | None = None
    request_id: str | None = None
    cause: str = "pending"

    @property
    def accepted(self) -> bool:
        return self.status == 202 and self.request_id is not None


def _cause(status: int, body: bytes, function_error: str | None, token: str) -> tuple[str, str]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status == 200:
        return ("ok", "") if data == token else ("wrong_result", repr(body[:200]))
    if function_error is not None:
        return f"{status} FunctionError:{function_error}", str(data)[:300]
    error = data.get("error", {}) if isinstance(data, dict) else {}
    return f"{status} {error.get('code', '?')}", str(error.get("message", body[:200]))[:300]


class Load:
    """``CONCURRENCY`` clients, alternating between the Mains, each request a unique token."""

    def __init__(self, cluster: Cluster, seed: int, t0: float) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed ^ 0x5EED)
        self.seed = seed
        self.t0 = t0
        self.outcomes: list[Outcome] = []
        self.async_sent: list[AsyncSent] = []
        self.in_flight = [0] * MAINS
        self._seq = itertools.count()

    async def one(
        self, http: aiohttp.ClientSession, function: str, main: int, *, slow: bool = False
    ) -> Outcome:
        n = next(self._seq)
        token = f"s{self.seed}-r{n}"
        outcome = Outcome(n, token, function, main, time.time())
        self.outcomes.append(outcome)
        event = {
            "token": token,
            "sleep_ms": self.rng.randint(*(SLOW_SLEEP_MS if slow else SLEEP_MS)),
        }
        self.in_flight[main] += 1
        try:
            with client_errors(outcome):
                async with http.post(
                    f"{self.cluster.main_url(main)}/v1/functions/{function}/invoke",
                    json=event,
                    timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
                ) as resp:
                    body = await resp.read()
                    outcome.status = resp.status
                    outcome.request_id = resp.headers.get("X-Hotpool-Request-Id")
                    outcome.function_error = resp.headers.get("X-Hotpool-Function-Error")
                    outcome.cause, outcome.message = _cause(
                        resp.status, body, outcome.function_error, token
                    )
        finally:
            self.in_flight[main] -= 1
        return outcome

    async def send_async(self, http: aiohttp.ClientSession, function: str, main: int) -> AsyncSent:
        """Queue one event (``?async=true``); every ``ASYNC_FAIL_EVERY``-th asks to fail."""
        n = len(self.async_sent)
        sent = AsyncSent(
            n, f"s{self.seed}-a{n}", function, main, n % ASYNC_FAIL_EVERY == 1, time.time()
        )
        self.async_sent.append(sent)
        sleep_ms = self.rng.randint(*ASYNC_SLEEP_MS)
        event = {"token": sent.token, "sleep_ms": sleep_ms, "fail": sent.fail}
        try:
            async with http.post(
                f"{self.cluster.main_url(main)}/v1/functions/{function}/invoke",
                params={"async": "true"},
                json=event,
                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
            ) as resp:
                body = await resp.read()
                sent.status = resp.status
                if resp.status == 202:
                    sent.request_id = json.loads(body)["request_id"]
                    sent.cause = "accepted"
                else:
                    sent.cause = _cause(resp.status, body, None, sent.token)[0]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            # the event may have been queued all the same; it is not counted as accepted
            sent.cause = f"client_error {type(exc).__name__}"
        return sent

    async def run(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        async def client(slow: bool) -> None:
            # a slow call must end with the load, not be cut off by the client
            stop_s = SLOW_SLEEP_MS[1] / 1000 if slow else 0.0
            while time.time() < stop_at - stop_s:
                main = len(self.outcomes) % MAINS
                function = SLOW_FUNCTION if slow else pick_function(self.rng.random())
                outcome = await self.one(http, function, main, slow=slow)
                if outcome.cause.startswith("client_error") or outcome.status in (429, 503):
                    await asyncio.sleep(0.1)  # a Main is down or full: do not spin

        async def async_client(k: int) -> None:
            while time.time() < stop_at:
                main = (len(self.async_sent) + k) % MAINS
                await self.send_async(http, self.rng.choice(FUNCTIONS), main)
                await asyncio.sleep(ASYNC_PAUSE_S)

        tasks = [asyncio.create_task(client(slow=i < SLOW_CLIENTS)) for i in range(CONCURRENCY)]
        tasks += [asyncio.create_task(async_client(k)) for k in range(ASYNC_CLIENTS)]
        await run_clients(tasks, stop_at)


def pick_function(roll: float) -> str:
    """The function a quick call goes to, for ``roll`` in [0, 1): each other runtime's
    function ``RUNTIME_SHARE`` of the time, the Python functions the rest, evenly."""
    for i, function in enumerate(RUNTIME_FUNCTIONS):
        if roll < RUNTIME_SHARE * (i + 1):
            return function
    others = RUNTIME_SHARE * len(RUNTIME_FUNCTIONS)
    i = int((roll - others) / (1 - others) * len(PYTHON_FUNCTIONS))
    return PYTHON_FUNCTIONS[min(i, len(PYTHON_FUNCTIONS) - 1)]


async def run_clients(tasks: list[asyncio.Task[None]], stop_at: float) -> None:
    """Wait for the load's clients until ``stop_at``; the last requests get a moment to finish,
    stragglers are cancelled (and counted by their outcomes)."""
    try:
        await asyncio.wait(tasks, timeout=max(0.0, stop_at - time.time()) + 5.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def client_errors(outcome: Any) -> Iterator[None]:
    """Note on ``outcome`` (its ``cause``, ``message``, ``done_at``) how a request failed on
    the client's side, and when it ended."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.cause = f"client_error {type(exc).__name__}"
        outcome.message = str(exc)[:200]
    except asyncio.CancelledError:
        outcome.cause = "client_error Cancelled"
        raise
    finally:
        outcome.done_at = time.time()

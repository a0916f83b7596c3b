"""A bounded chaos run of a production-shaped hotpool, checked against BRIEF.md §3.

``python -m benchmarks.chaos [--quick] [--seed N] [--duration-s S] [--keep]``

Topology, all on 127.0.0.1 with the process backend: the run's own ``redis-server``, three
Managers and two Mains (``python -m main_server.cli manager|main``) sharing one migrated SQLite
metadata file. Each service has its own state directory; their ``code`` directories are
symlinks to one shared directory, which plays the shared bucket (a LocalCodeStore per process
would otherwise hold only what was deployed through it).

Five functions deploy one package (``benchmarks/chaos_function``): it sleeps as the event says
(5-50 ms; 3-8 s for the calls of three "slow" clients to ``chaos-slow``, which the other clients
call quickly too) and appends one JSON line per call start and one per call end to
``<run dir>/executions.log`` (token, request id, pid, container, start, end). That file is the
ground truth for "delivered exactly once" and for "one call at a time per container".

While a load generator (16 concurrent clients, alternating between the Mains, one unique token
per request) runs, faults planned from the seed strike: SIGKILL of random containers, kill -9 and
restart of a Manager (same id and port), of Redis (same port; every key is lost), and of a Main
while it has requests in flight. Then the run waits (bounded) for leases to expire and the lease
reaper to settle, and counts:

- sent, succeeded, failed_by_cause (HTTP status + error code, or ``client_error <exception>``);
- duplicates (tokens executed more than once), overlaps (one container running two calls at once),
  wrong_version / wrong_result (a reply or an execution for the wrong function, version or token);
- leaked (ready containers in no pool list and no lease), stale_entries (pool entries or leases
  naming containers no Manager has), double_placed (a container in more than one place),
  orphan_processes (container processes no running Manager owns);
- records_missing (a 200 or function-error answer without an execution record on either Main),
  executed_unrecorded (an execution without a record whose Main was not killed under it);
- untracked_processes (container processes a live Manager neither lists nor pre-warms),
  handed_busy (a request given a container still running another call: it answered 409 Busy);
- sent_to_dead and the other Main counters, banked before each Main kill (a restarted Main's
  counters start at zero; what a killed Main counted after the last poll, at most ~1 s, is lost).

Records are read through each Main's API (newest 1000 per function) and, as a long run has more,
straight from each Main's SQLite log in its state directory. A broken run keeps its directory
(logs of every service, executions.log, outcomes.jsonl, report.json) and prints its path.

Prints a human summary, then one JSON object as the last line. Exit status: 0 clean, 1 an
invariant broke, 2 the harness itself failed (a service would not start, no request succeeded).
Every process the run starts is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from shared import keys
from shared.models import PoolEntry
from shared.packages import zip_directory
from shared.redis_conn import REDIS_ERRORS

REPO = Path(__file__).resolve().parents[1]
FUNCTION_DIR = Path(__file__).resolve().parent / "chaos_function"
FUNCTIONS = ("chaos-a", "chaos-b", "chaos-c", "chaos-d")
# two clients make slow calls to one function (which the other clients call quickly too), so
# some calls are still running well after a fault strikes: a Redis restart loses their leases
# while they run, and their containers must not be handed to anyone else meanwhile
SLOW_FUNCTION = "chaos-slow"
ALL_FUNCTIONS = (*FUNCTIONS, SLOW_FUNCTION)
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
# the services' settings; lease and heartbeat timings are short so recovery fits in the run
SERVICE_SETTINGS = {
    "BACKEND": "process",
    "REDIS_SOCKET_TIMEOUT_S": "1",
    "REDIS_CONNECT_TIMEOUT_S": "0.5",
    "HEARTBEAT_INTERVAL_S": "0.5",
    "HEARTBEAT_TTL_S": "3",
    "PREWARM_COUNT": "1",
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
}
MAJOR_FAULTS = ("restart_manager", "restart_redis", "restart_main")
# what counts as a broken invariant (exit status 1)
BREAKS = (
    "leaked", "duplicates", "overlaps", "records_missing", "stale_entries", "double_placed",
    "wrong_version", "wrong_result", "executed_unrecorded", "orphan_processes",
    "untracked_processes", "handed_busy",
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
        return Profile(load_s=duration_s or 28.0, settle_max_s=9.0, container_kills=6)
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
            faults.append(Fault(at_s, kind, 0, rng.uniform(1.0, 2.5)))
        else:
            faults.append(Fault(at_s, kind, rng.randrange(MAINS), rng.uniform(1.5, 3.0)))
    for _ in range(container_kills):
        at_s = rng.uniform(1.0, load_s - 1.0)
        faults.append(Fault(at_s, "kill_container", rng.randrange(1 << 30)))
    return sorted(faults, key=lambda f: f.at_s)


# ---------------------------------------------------------------------------------------------
# the processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# loaded before any fork: the child between fork and exec must not take the loader's locks
_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # if the chaos run itself is SIGKILLed, its services get SIGTERM and drain their containers
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class Bootstrap:
    pid: int
    ppid: int
    container_id: str
    service: str  # the Manager whose state directory holds it


def bootstrap_processes(run_dir: Path) -> list[Bootstrap]:
    """Every container process of this run: bootstrap.py with a --code-dir under ``run_dir``."""
    found = []
    prefix = str(run_dir) + os.sep
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if not any(a.endswith("bootstrap.py") for a in argv) or "--code-dir" not in argv:
            continue
        code_dir = argv[argv.index("--code-dir") + 1]
        if code_dir.startswith(prefix):
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            relative = Path(code_dir).relative_to(run_dir).parts
            found.append(Bootstrap(int(entry.name), ppid, Path(code_dir).parent.name, relative[0]))
    return found


class Cluster:
    """Redis, Managers and Mains of one run, each restartable on its own port."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.redis_port = _free_port()
        self.manager_ports = [_free_port() for _ in range(MANAGERS)]
        self.main_ports = [_free_port() for _ in range(MAINS)]
        self.manager_ids = [f"chaos-m{i}" for i in range(MANAGERS)]
        self.exec_log = run_dir / "executions.log"
        self.db_url = f"sqlite+aiosqlite:///{run_dir / 'hotpool.db'}"
        self.manager_secret = secrets.token_hex(16)
        self.admin_key = ""
        self.procs: dict[str, subprocess.Popen] = {}
        self.generation: Counter[str] = Counter()
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (run_dir / "code").mkdir(exist_ok=True)
        for name in self._service_names():
            (run_dir / name).mkdir(exist_ok=True)
            (run_dir / name / "code").symlink_to(run_dir / "code", target_is_directory=True)

    @staticmethod
    def _service_names() -> list[str]:
        return [f"main{i}" for i in range(MAINS)] + [f"mgr{i}" for i in range(MANAGERS)]

    def main_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.main_ports[i]}"

    def manager_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.manager_ports[i]}"

    def up(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
        env.update({f"HOTPOOL_{k}": v for k, v in SERVICE_SETTINGS.items()})
        env.update(
            HOTPOOL_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            HOTPOOL_DATABASE_URL=self.db_url,
            HOTPOOL_MANAGER_SECRET=self.manager_secret,
            PYTHONUNBUFFERED="1",
        )
        env.update({f"HOTPOOL_{k}": v for k, v in extra.items()})
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.generation[name] += 1
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            log.write(f"==== chaos: start #{self.generation[name]} at {time.time():.3f}\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )  # fmt: skip

    def log_tail(self, name: str, n: int = 15) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    async def start_redis(self) -> None:
        if shutil.which("redis-server") is None:
            raise HarnessError("redis-server is not installed (apt-get install redis-server)")
        self._spawn("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.run_dir),
        ])  # fmt: skip
        await self._wait_tcp("redis", self.redis_port)

    async def migrate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "main_server.cli", "migrate", "--database-url", self.db_url,
            cwd=REPO, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HarnessError("hotpool migrate did not finish") from None
        if proc.returncode != 0:
            raise HarnessError(f"hotpool migrate failed: {out.decode(errors='replace')}")
        # the operator's first key, as in production: straight from the database
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "main_server.cli", "admin", "create-key", "--namespace", "*",
            "--scopes", "admin", cwd=REPO, env=self._env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT_S)
        if proc.returncode != 0:
            raise HarnessError(f"hotpool admin create-key failed: {err.decode(errors='replace')}")
        self.admin_key = out.decode().strip().splitlines()[-1]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def manager_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.manager_secret}"}

    async def start_manager(self, i: int) -> None:
        name = f"mgr{i}"
        env = self._env(
            MANAGER_PORT=str(self.manager_ports[i]),
            MANAGER_ID=self.manager_ids[i],
            STATE_DIR=str(self.run_dir / name),
        )
        self._spawn(name, [sys.executable, "-m", "main_server.cli", "manager"], env)
        await self._wait_http(name, self.manager_url(i) + "/healthz")

    async def start_main(self, i: int) -> None:
        name = f"main{i}"
        env = self._env(PORT=str(self.main_ports[i]), STATE_DIR=str(self.run_dir / name))
        self._spawn(name, [sys.executable, "-m", "main_server.cli", "main"], env)
        await self._wait_http(name, self.main_url(i) + "/healthz")

    async def _wait_tcp(self, name: str, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.up(name):
                raise HarnessError(f"{name} exited while starting:\n{self.log_tail(name)}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise HarnessError(f"{name} did not listen on {port} within {START_TIMEOUT_S} s")

    async def _wait_http(self, name: str, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.up(name):
                    raise HarnessError(f"{name} exited while starting:\n{self.log_tail(name)}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise HarnessError(f"{name} did not answer at {url} within {START_TIMEOUT_S} s")

    def kill(self, name: str) -> int | None:
        """kill -9 one service; returns the pid it had."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return None
        proc.kill()
        proc.wait(timeout=10)
        return proc.pid

    def manager_pids(self) -> set[int]:
        return {p.pid for n, p in self.procs.items() if n.startswith("mgr") and p.poll() is None}

    def teardown(self) -> None:
        """Stop everything this run started: services gracefully, then the rest by pid."""
        services = [p for n, p in self.procs.items() if n != "redis" and p.poll() is None]
        for proc in services:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in services:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # containers of Managers that were killed outlive them (they run in their own session)
        for container in bootstrap_processes(self.run_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.pid, signal.SIGKILL)
        redis_proc = self.procs.get("redis")
        if redis_proc is not None and redis_proc.poll() is None:
            redis_proc.kill()
            redis_proc.wait(timeout=10)


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
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.cause = f"client_error {type(exc).__name__}"
            outcome.message = str(exc)[:200]
        except asyncio.CancelledError:
            outcome.cause = "client_error Cancelled"
            raise
        finally:
            outcome.done_at = time.time()
            self.in_flight[main] -= 1
        return outcome

    async def run(self, http: aiohttp.ClientSession, stop_at: float) -> None:
        async def client(slow: bool) -> None:
            # a slow call must end with the load, not be cut off by the client
            stop_s = SLOW_SLEEP_MS[1] / 1000 if slow else 0.0
            while time.time() < stop_at - stop_s:
                main = len(self.outcomes) % MAINS
                function = SLOW_FUNCTION if slow else self.rng.choice(ALL_FUNCTIONS)
                outcome = await self.one(http, function, main, slow=slow)
                if outcome.cause.startswith("client_error") or outcome.status in (429, 503):
                    await asyncio.sleep(0.1)  # a Main is down or full: do not spin

        tasks = [asyncio.create_task(client(slow=i < SLOW_CLIENTS)) for i in range(CONCURRENCY)]
        try:
            # the last requests get a moment to finish; stragglers are cancelled and counted
            await asyncio.wait(tasks, timeout=max(0.0, stop_at - time.time()) + 5.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# observing the cluster


class CounterBank:
    """Main counters across restarts: a killed Main's last values are banked."""

    def __init__(self) -> None:
        self.current: list[Counter[str]] = [Counter() for _ in range(MAINS)]
        self.banked: Counter[str] = Counter()

    def update(self, i: int, counters: dict[str, int]) -> None:
        self.current[i] = Counter(counters)

    def bank(self, i: int) -> None:
        self.banked += self.current[i]
        self.current[i] = Counter()

    def total(self) -> Counter[str]:
        total = Counter(self.banked)
        for counters in self.current:
            total.update(counters)
        return total


@dataclass
class PoolState:
    """What the Managers run and what Redis says about it, at one moment."""

    described: dict[str, dict[str, Any]]  # container id -> Manager's description (+ manager)
    lists: dict[str, list[str]]  # pool key -> entries
    leases: dict[str, float]  # entry -> deadline
    registered: dict[str, set[str]]  # manager id -> container ids in hp:containers:<id>
    unreachable: list[str]  # Managers that did not answer


def analyse_pool(state: PoolState) -> dict[str, list[Any]]:
    """Invariant 2 over one snapshot: every ready container in exactly one place."""
    places: Counter[str] = Counter()
    entries: list[str] = []
    for items in state.lists.values():
        entries.extend(items)
    entries.extend(state.leases)
    for raw in entries:
        places[PoolEntry.decode(raw).container_id] += 1
    ready = {cid for cid, c in state.described.items() if c["state"] == "ready"}
    return {
        "leaked": sorted(ready - set(places)),
        "stale_entries": sorted(
            e for e in entries if PoolEntry.decode(e).container_id not in state.described
        ),
        "double_placed": sorted(cid for cid, n in places.items() if n > 1),
        "unregistered": sorted(
            cid
            for cid in ready
            if cid not in state.registered.get(state.described[cid]["manager"], set())
        ),
    }


class Observer:
    """Polls the cluster every second: Main counters, Managers' containers, Redis placements."""

    def __init__(self, cluster: Cluster, http: aiohttp.ClientSession, t0: float) -> None:
        self.cluster = cluster
        self.http = http
        self.t0 = t0
        self.redis = aioredis.Redis(
            port=cluster.redis_port, socket_timeout=1, socket_connect_timeout=0.5
        )
        self.counters = CounterBank()
        self.seen_containers: dict[str, dict[str, Any]] = {}
        self.last_placed: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **detail: Any) -> None:
        self.events.append({"t": round(time.time() - self.t0, 2), "kind": kind, **detail})

    async def close(self) -> None:
        await self.redis.aclose()

    async def _get(
        self, url: str, timeout_s: float = 1.0, headers: dict[str, str] | None = None
    ) -> Any:
        """GET with the session's admin key, or ``headers`` (a Manager's shared secret)."""
        async with self.http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_s), headers=headers
        ) as resp:
            if resp.status != 200:
                return None
            return await resp.json()

    async def poll_main(self, i: int, timeout_s: float = 1.0) -> None:
        name = f"main{i}"
        generation = self.cluster.generation[name]
        if not self.cluster.up(name):
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            status = await self._get(self.cluster.main_url(i) + "/system/status", timeout_s)
            # a reply from a Main killed (and banked) meanwhile must not count again
            if status is not None and generation == self.cluster.generation[name]:
                if self.cluster.up(name):
                    self.counters.update(i, status.get("counters", {}))

    async def managers(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        described: dict[str, dict[str, Any]] = {}
        unreachable = []
        for i, manager_id in enumerate(self.cluster.manager_ids):
            try:
                data = await self._get(
                    self.cluster.manager_url(i) + "/v1/containers",
                    headers=self.cluster.manager_headers,
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                data = None
            if data is None:
                unreachable.append(manager_id)
                continue
            for container in data["containers"]:
                described[container["container_id"]] = {**container, "manager": manager_id}
        now = round(time.time() - self.t0, 2)
        for cid, container in described.items():
            self.seen_containers.setdefault(cid, {**container, "first_seen_t": now})
            self.seen_containers[cid]["last_seen_t"] = now
        return described, unreachable

    async def pool_state(self) -> PoolState:
        described, unreachable = await self.managers()
        lists: dict[str, list[str]] = {}
        async for key in self.redis.scan_iter(match=keys.POOL_PREFIX + "*", count=500):
            lists[key.decode()] = [e.decode() for e in await self.redis.lrange(key, 0, -1)]
        leases = {
            m.decode(): s for m, s in await self.redis.zrange(keys.LEASES, 0, -1, withscores=True)
        }
        registered = {}
        for manager_id in self.cluster.manager_ids:
            ids = await self.redis.hkeys(keys.containers(manager_id))
            registered[manager_id] = {c.decode() for c in ids}
        now = round(time.time() - self.t0, 2)
        for raw in [*leases, *(e for items in lists.values() for e in items)]:
            self.last_placed[PoolEntry.decode(raw).container_id] = now
        return PoolState(described, lists, leases, registered, unreachable)

    async def untracked_processes(self) -> dict[str, list[str]]:
        """Per live Manager, its container processes it neither describes nor counts as
        pre-warmed: containers it lost track of while they kept running (ids of every
        undescribed child are listed, as pre-warmed ids are not published)."""
        processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
        untracked = {}
        for i, manager_id in enumerate(self.cluster.manager_ids):
            proc = self.cluster.procs.get(f"mgr{i}")
            if proc is None or proc.poll() is not None:
                continue
            try:
                health = await self._get(self.cluster.manager_url(i) + "/healthz")
                listed = await self._get(
                    self.cluster.manager_url(i) + "/v1/containers",
                    headers=self.cluster.manager_headers,
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            if health is None or listed is None:
                continue
            described = {c["container_id"] for c in listed["containers"]}
            children = [b.container_id for b in processes if b.ppid == proc.pid]
            extra = len(children) - len(described) - int(health.get("prewarmed", 0))
            if extra > 0:
                untracked[manager_id] = [c for c in children if c not in described][: extra + 2]
                untracked[manager_id].insert(0, f"{extra} untracked")
        return untracked

    async def poll_once(self) -> None:
        await asyncio.gather(*(self.poll_main(i) for i in range(MAINS)))
        with contextlib.suppress(*REDIS_ERRORS):
            await self.pool_state()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)


# ---------------------------------------------------------------------------------------------
# the faults


class Chaos:
    """Carries out the fault plan against the cluster."""

    def __init__(self, cluster: Cluster, observer: Observer, load: Load, t0: float) -> None:
        self.cluster = cluster
        self.observer = observer
        self.load = load
        self.t0 = t0
        self.done: Counter[str] = Counter()
        self.harness_errors: list[str] = []

    async def run(self, faults: list[Fault], stop_at: float) -> None:
        majors = [f for f in faults if f.kind != "kill_container"]
        kills = [f for f in faults if f.kind == "kill_container"]
        await asyncio.gather(
            self._run_in_order(majors, stop_at), self._run_in_order(kills, stop_at)
        )

    async def _run_in_order(self, faults: list[Fault], stop_at: float) -> None:
        for fault in faults:
            await asyncio.sleep(max(0.0, self.t0 + fault.at_s - time.time()))
            if time.time() >= stop_at - 0.5:
                self.observer.event("skipped", fault=fault.kind, planned_t=round(fault.at_s, 2))
                continue
            action = getattr(self, fault.kind)
            await action(fault)
            self.done[fault.kind] += 1

    async def _restart(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        for attempt in range(1, 4):
            try:
                await start()
            except HarnessError as exc:
                self.observer.event("restart_failed", service=name, attempt=attempt, error=str(exc))
                self.cluster.kill(name)
                await asyncio.sleep(1.0)
                continue
            self.observer.event("restarted", service=name)
            return
        self.harness_errors.append(f"{name} did not come back after 3 attempts")

    async def kill_container(self, fault: Fault) -> None:
        """SIGKILL one ready container; every other kill picks a busy one if there is any, so
        some calls die inside their container."""
        described, _ = await self.observer.managers()
        ready = sorted(cid for cid, c in described.items() if c["state"] == "ready")
        leased: set[str] = set()
        with contextlib.suppress(*REDIS_ERRORS):
            raw = await self.observer.redis.zrange(keys.LEASES, 0, -1)
            leased = {PoolEntry.decode(e).container_id for e in raw}
        busy = [cid for cid in ready if cid in leased]
        candidates = busy if busy and fault.target % 2 == 0 else ready
        if not candidates:
            self.observer.event("kill_container", container=None, note="no ready container")
            return
        cid = candidates[fault.target % len(candidates)]
        processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
        pids = [b.pid for b in processes if b.container_id == cid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.observer.event(
            "kill_container", container=cid, manager=described[cid]["manager"], pids=pids,
            leased=cid in leased,
        )  # fmt: skip

    async def restart_manager(self, fault: Fault) -> None:
        name = f"mgr{fault.target}"
        pid = self.cluster.kill(name)
        self.observer.event("kill_manager", service=name, pid=pid, down_s=round(fault.down_s, 2))
        await asyncio.sleep(fault.down_s)
        await self._restart(name, lambda: self.cluster.start_manager(fault.target))

    async def restart_redis(self, fault: Fault) -> None:
        placed = None
        with contextlib.suppress(*REDIS_ERRORS):
            state = await self.observer.pool_state()
            placed = {"pool": sum(map(len, state.lists.values())), "leases": len(state.leases)}
        pid = self.cluster.kill("redis")
        self.observer.event("kill_redis", pid=pid, down_s=round(fault.down_s, 2), lost=placed)
        await asyncio.sleep(fault.down_s)
        await self._restart("redis", self.cluster.start_redis)

    async def restart_main(self, fault: Fault) -> None:
        i = fault.target
        name = f"main{i}"
        await self.observer.poll_main(i, timeout_s=0.5)  # its latest counters, then bank them
        deadline = time.monotonic() + 1.0
        # kill it mid-request (the load runs in this loop, so polling its counter is exact)
        while self.load.in_flight[i] == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        in_flight = self.load.in_flight[i]
        self.observer.counters.bank(i)
        pid = self.cluster.kill(name)
        self.observer.event(
            "kill_main", service=name, pid=pid, main=i, in_flight=in_flight,
            down_s=round(fault.down_s, 2),
        )  # fmt: skip
        await asyncio.sleep(fault.down_s)
        await self._restart(name, lambda: self.cluster.start_main(i))


# ---------------------------------------------------------------------------------------------
# the checks


def read_executions(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def find_duplicates(executions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Tokens executed more than once (invariant 3)."""
    by_token: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        by_token[e["token"]].append(e)
    return {t: es for t, es in by_token.items() if len(es) > 1}


def find_overlaps(executions: Iterable[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Pairs of executions one container process ran at the same time (invariant 1)."""
    by_process: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in executions:
        by_process[(e.get("container", ""), e["pid"])].append(e)
    overlaps = []
    for runs in by_process.values():
        runs.sort(key=lambda e: e["start"])
        latest = runs[0] if runs else None
        for run in runs[1:]:
            if latest is not None and run["start"] < latest["end"]:
                overlaps.append((latest, run))
            if latest is None or run["end"] > latest["end"]:
                latest = run
    return overlaps


def read_records_db(path: Path) -> list[dict[str, Any]]:
    """Every execution record in one Main's SQLite log, read-only."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [json.loads(row[0]) for row in db.execute("SELECT doc FROM executions")]
    finally:
        db.close()


async def gather_records(cluster: Cluster, http: aiohttp.ClientSession) -> dict[str, dict]:
    """Execution records of both Mains: through the API (newest 1000 per function) and, as
    the API stops at 1000, straight from each Main's SQLite log too."""
    records: dict[str, dict[str, Any]] = {}
    for i in range(MAINS):
        for function in ALL_FUNCTIONS:
            url = f"{cluster.main_url(i)}/v1/functions/{function}/invocations?limit=1000"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        for r in (await resp.json())["invocations"]:
                            records[r["request_id"]] = {**r, "main": i}
        path = cluster.run_dir / f"main{i}" / "executions.db"
        for r in await asyncio.to_thread(read_records_db, path):
            records.setdefault(r["request_id"], {**r, "main": i})
    return records


def killed_under(outcome: Outcome, events: list[dict[str, Any]], t0: float) -> bool:
    """Its Main was killed while the request was in flight."""
    return any(
        e["kind"] == "kill_main" and e["main"] == outcome.main
        and outcome.sent_at - t0 <= e["t"] + 0.05 and e["t"] - 0.05 <= outcome.done_at - t0
        for e in events
    )  # fmt: skip


async def settle(observer: Observer, max_s: float) -> tuple[PoolState | None, dict, float]:
    """Poll until no lease is left and the pool analysis stops changing (bounded)."""
    began = time.monotonic()
    deadline = began + max_s
    previous = None
    stable_since = time.monotonic()
    state, analysis = None, {}
    while True:
        try:
            state = await observer.pool_state()
            analysis = analyse_pool(state)
        except REDIS_ERRORS:
            state, analysis = None, {}
        key = json.dumps(analysis, sort_keys=True) + str(state and sorted(state.leases))
        now = time.monotonic()
        if key != previous:
            stable_since, previous = now, key
        clean = state is not None and not state.leases and not any(analysis.values())
        # a non-clean state must outlast the orphan grace plus reaper passes before we judge
        if clean or (state is not None and not state.leases and now - stable_since >= 4.0):
            break
        if now >= deadline:
            break
        await asyncio.sleep(0.5)
    return state, analysis, round(time.monotonic() - began, 2)


# ---------------------------------------------------------------------------------------------
# the run


async def deploy(cluster: Cluster, http: aiohttp.ClientSession) -> dict[str, int]:
    package = zip_directory(FUNCTION_DIR)
    versions = {}
    for function in ALL_FUNCTIONS:
        params = {
            "timeout_s": str(FUNCTION_TIMEOUT_S[function]),
            "env": json.dumps({"CHAOS_LOG": str(cluster.exec_log)}),
        }
        async with http.put(
            f"{cluster.main_url(0)}/v1/functions/{function}", data=package, params=params,
            headers={"Content-Type": "application/zip"}, timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:  # fmt: skip
            body = await resp.json()
            if resp.status not in (200, 201):
                raise HarnessError(f"deploying {function} failed ({resp.status}): {body}")
            versions[function] = int(body["version"])
    return versions


async def wait_managers_online(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with http.get(cluster.main_url(0) + "/system/status") as resp:
                if resp.status == 200 and (await resp.json())["managers_online"] == MANAGERS:
                    return
        await asyncio.sleep(0.2)
    raise HarnessError("the Managers did not all register within the start-up bound")


async def start_cluster(cluster: Cluster) -> None:
    await cluster.start_redis()
    await cluster.migrate()
    await asyncio.gather(
        *(cluster.start_manager(i) for i in range(MANAGERS)),
        *(cluster.start_main(i) for i in range(MAINS)),
    )


async def run(cluster: Cluster, seed: int, profile: Profile) -> dict[str, Any]:
    await start_cluster(cluster)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=cluster.headers) as http:
        await wait_managers_online(cluster, http)
        versions = await deploy(cluster, http)
        t0 = time.time()
        load = Load(cluster, seed, t0)
        observer = Observer(cluster, http, t0)
        chaos = Chaos(cluster, observer, load, t0)
        try:
            # one call per function and Main before any fault: the system works at all
            await asyncio.gather(*(load.one(http, f, m) for f in FUNCTIONS for m in range(MAINS)))
            if not any(o.ok for o in load.outcomes):
                raise HarnessError(f"no warm-up call succeeded: {load.outcomes[0]}")
            faults = plan_faults(seed, profile.load_s, profile.container_kills)
            stop_at = time.time() + profile.load_s
            stop_observing = asyncio.Event()
            observing = asyncio.create_task(observer.run(stop_observing))
            try:
                await asyncio.gather(load.run(http, stop_at), chaos.run(faults, stop_at))
            finally:
                stop_observing.set()
                await observing
            load_done = time.time()
            state, analysis, settle_s = await settle(observer, profile.settle_max_s)
            await asyncio.sleep(0.5)  # record flush interval (0.2 s) with margin
            await asyncio.gather(*(observer.poll_main(i) for i in range(MAINS)))
            records = await gather_records(cluster, http)
            orphans = [
                b for b in await asyncio.to_thread(bootstrap_processes, cluster.run_dir)
                if b.ppid not in cluster.manager_pids()
            ]  # fmt: skip
            untracked = await observer.untracked_processes()
            # every request as the client saw it, for digging into a broken run
            await asyncio.to_thread(_write_outcomes, cluster.run_dir / "outcomes.jsonl", load, t0)
            return build_report(
                seed=seed, t0=t0, load_done=load_done, settle_s=settle_s, load=load,
                observer=observer, chaos=chaos, faults=faults, versions=versions,
                state=state, analysis=analysis, records=records, orphans=orphans,
                untracked=untracked, executions=read_executions(cluster.exec_log),
            )  # fmt: skip
        finally:
            await observer.close()


def build_report(
    *, seed: int, t0: float, load_done: float, settle_s: float, load: Load,
    observer: Observer, chaos: Chaos, faults: list[Fault], versions: dict[str, int],
    state: PoolState | None, analysis: dict, records: dict[str, dict],
    orphans: list[Bootstrap], untracked: dict[str, list[str]],
    executions: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    outcomes = load.outcomes
    by_token = {o.token: o for o in outcomes}
    failed = Counter(o.cause for o in outcomes if not o.ok)
    # a start line is a delivery (even if the container died under it); an end line a call
    # that ran to completion
    starts = [e for e in executions if e.get("phase") == "start"]
    ends = [e for e in executions if e.get("phase") == "end"]
    duplicates = find_duplicates(starts)
    overlaps = find_overlaps(ends)
    cut_short = {e["token"] for e in starts} - {e["token"] for e in ends}
    wrong_version = [
        e for e in starts
        if str(versions.get(e["function"])) != e["version"]
        or (e["token"] in by_token and by_token[e["token"]].function != e["function"])
    ]  # fmt: skip
    records_missing = [o for o in outcomes if o.answered_by_container
                       and o.request_id not in records]  # fmt: skip
    missing_ids = {o.request_id for o in records_missing}
    lost_with_main, unrecorded = [], []
    for e in starts:
        if e["request_id"] in records or e["request_id"] in missing_ids:
            continue
        outcome = by_token.get(e["token"])
        if outcome is not None and killed_under(outcome, observer.events, t0):
            lost_with_main.append(e)
        else:
            unrecorded.append(e)
    # the pool handed out a container that was still running a call: the bootstrap refused
    # it (409 Busy), so invariant 1 held only thanks to the container's own guard
    handed_busy = [o for o in outcomes if "answered 409" in o.message]
    counters = observer.counters.total()
    containers = set(observer.seen_containers)
    containers.update(r["container_id"] for r in records.values() if r.get("container_id"))
    containers.update(e["container"] for e in starts)
    broken = {
        "leaked": len(analysis.get("leaked", [])) if state is not None else -1,
        "stale_entries": len(analysis.get("stale_entries", [])) if state is not None else -1,
        "double_placed": len(analysis.get("double_placed", [])),
        "duplicates": len(duplicates),
        "overlaps": len(overlaps),
        "records_missing": len(records_missing),
        "executed_unrecorded": len(unrecorded),
        "wrong_version": len(wrong_version),
        "wrong_result": failed.get("wrong_result", 0),
        "orphan_processes": len(orphans),
        "untracked_processes": sum(int(v[0].split()[0]) for v in untracked.values()),
        "handed_busy": len(handed_busy),
    }
    summary = {
        "sent": len(outcomes),
        "succeeded": sum(o.ok for o in outcomes),
        "failed_by_cause": dict(failed.most_common()),
        "containers_started": len(containers),
        **broken,
        "sent_to_dead": counters.get("sent_to_dead", 0),
        "lost_with_killed_main": len(lost_with_main),
        "executions": len(ends),
        "executions_cut_short": len(cut_short),
        "records": len(records),
        "cold_starts": counters.get("cold_starts", 0),
        "main_counters": dict(sorted(counters.items())),
        "faults": dict(chaos.done),
        "settle_s": settle_s,
        "seed": seed,
        "invariant_breaks": sorted(k for k in BREAKS if broken.get(k, 0) != 0),
        "harness_errors": chaos.harness_errors,
    }
    details = {
        "events": observer.events,
        "planned": [f.__dict__ for f in faults],
        "leaked": [_container_story(cid, observer, state) for cid in analysis.get("leaked", [])],
        "stale_entries": analysis.get("stale_entries", []),
        "double_placed": analysis.get("double_placed", []),
        "unregistered": analysis.get("unregistered", []),
        "duplicates": {t: es for t, es in list(duplicates.items())[:20]},
        "overlaps": overlaps[:20],
        "records_missing": [_outcome_story(o, t0) for o in records_missing[:20]],
        "executed_unrecorded": unrecorded[:20],
        "orphans": [b.__dict__ for b in orphans],
        "untracked": untracked,
        "handed_busy": [_outcome_story(o, t0) for o in handed_busy[:20]],
        "samples": _samples(outcomes, t0),
        "load_s": round(load_done - t0, 2),
        "managers_unreachable": state.unreachable if state else None,
    }
    details["t0"] = t0
    return {"summary": summary, "details": details}


def _write_outcomes(path: Path, load: Load, t0: float) -> None:
    with open(path, "w") as out:
        for o in load.outcomes:
            out.write(json.dumps({**o.__dict__, "sent_t": round(o.sent_at - t0, 3),
                                  "done_t": round(o.done_at - t0, 3)}) + "\n")  # fmt: skip


def _container_story(cid: str, observer: Observer, state: PoolState | None) -> dict[str, Any]:
    seen = observer.seen_containers.get(cid, {})
    described = state.described.get(cid, {}) if state else {}
    return {
        "container": cid,
        "manager": described.get("manager"),
        "entry": described.get("entry"),
        "first_seen_t": seen.get("first_seen_t"),
        "last_placed_t": observer.last_placed.get(cid),
        "in_hash": state is not None and cid in state.registered.get(described.get("manager"), ()),
    }


def _outcome_story(o: Outcome, t0: float) -> dict[str, Any]:
    return {
        "token": o.token, "request_id": o.request_id, "main": o.main, "status": o.status,
        "cause": o.cause, "sent_t": round(o.sent_at - t0, 2), "done_t": round(o.done_at - t0, 2),
    }  # fmt: skip


def _samples(outcomes: list[Outcome], t0: float) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if not o.ok and len(samples[o.cause]) < 3:
            sample = f"t={o.sent_at - t0:.2f}..{o.done_at - t0:.2f} main{o.main} {o.message}"
            samples[o.cause].append(sample[:240])
    return dict(samples)


def print_summary(report: dict[str, Any]) -> None:
    s, d = report["summary"], report["details"]
    out = print
    out(f"hotpool chaos run: seed {s['seed']}, load {d['load_s']} s, total {s['duration_s']} s")
    out("timeline (seconds since the load started):")
    for e in d["events"]:
        rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind"))
        out(f"  t={e['t']:>7.2f}  {e['kind']:<16} {rest}")
    out(f"requests: {s['sent']} sent, {s['succeeded']} succeeded")
    for cause, n in s["failed_by_cause"].items():
        out(f"  {n:>6}  {cause}")
        for sample in d["samples"].get(cause, []):
            out(f"            e.g. {sample}")
    out(
        f"calls completed: {s['executions']} (cut short: {s['executions_cut_short']}); "
        f"records: {s['records']}; containers seen: "
        f"{s['containers_started']}; cold starts: {s['cold_starts']}; "
        f"sent_to_dead: {s['sent_to_dead']}; lost with a killed Main: "
        f"{s['lost_with_killed_main']}; settled in {s['settle_s']} s"
    )
    out(f"Main counters (banked across restarts): {s['main_counters']}")
    for name in BREAKS:
        flag = "BROKEN" if s[name] else "ok"
        out(f"  {name:<20} {s[name]:>5}  {flag}")
    for key in ("leaked", "stale_entries", "double_placed", "records_missing",
                "executed_unrecorded", "orphans", "handed_busy"):  # fmt: skip
        for item in d[key][:10]:
            out(f"  {key}: {item}")
    for manager_id, ids in d["untracked"].items():
        out(f"  untracked on {manager_id}: {ids}")
    if d["unregistered"]:
        out(f"  ready containers missing from hp:containers:* hashes: {len(d['unregistered'])}")
    for token, runs in list(d["duplicates"].items())[:10]:
        out(f"  duplicate {token}: {runs}")
    for a, b in d["overlaps"][:10]:
        out(f"  overlap: {a} / {b}")
    for error in s["harness_errors"]:
        out(f"  harness error: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 45 s in all")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration-s", type=float, default=None, help="load phase length")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    profile = profile_for(args.quick, args.duration_s)
    began = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="hotpool-chaos-"))
    # SIGTERM unwinds like Ctrl-C, so the finally below stops everything we started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cluster = Cluster(run_dir)
    report = None
    code = 2
    try:
        report = asyncio.run(run(cluster, seed, profile))
    except HarnessError as exc:
        print(f"chaos: harness failure: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("chaos: interrupted; stopping everything", file=sys.stderr)
        code = 130
    finally:
        cluster.teardown()
    if report is not None:
        summary = report["summary"]
        summary["duration_s"] = round(time.monotonic() - began, 2)
        code = 1 if summary["invariant_breaks"] else 0
        if summary["succeeded"] == 0 or summary["harness_errors"]:
            code = max(code, 2)
        if code or args.keep:
            (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
            summary["run_dir"] = str(run_dir)
        print_summary(report)
    if code == 0 and not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif report is None:
        print(f"chaos: logs kept in {run_dir}", file=sys.stderr)
    if report is not None:
        print(json.dumps(report["summary"], sort_keys=False), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

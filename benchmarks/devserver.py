"""hotpool under test for a benchmark: ``hotpool dev`` (or ``hotpool main`` + ``hotpool
manager`` as two processes) in child processes with a throw-away state directory, and a
small synchronous client for its API and its Manager's.

Each child listens on a port the system chose for it (port 0) and announces it in its ready
line; the harness only ever talks to the URLs its own children announced, so another process
that happens to hold some port can neither break a run nor answer in a child's place. Its
/metrics ports (on, as in production, unless a run turns them off with 0) are free ports
picked just before the start: nothing in the harness talks to them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotpool.main_server.serve import announced_urls

# The function every scenario calls: as small as a handler gets, so what is measured is
# hotpool. It sleeps only when asked, to hold containers while a warm-up starts them.
BENCH_HANDLER = """import time


def handler(event, context):
    if event.get("sleep_s"):
        time.sleep(event["sleep_s"])
    return {"message": "hello", "event": event}
"""
BENCH_EVENT = b'{"name": "bench"}'
HOLD_EVENT = b'{"name": "bench", "sleep_s": 0.25}'
# one key drives the whole benchmark: its rate limit and the namespace's limit are not what
# is measured, and the throughput runs need many containers on one Manager
BENCH_SETTINGS = {
    "rate_per_s": 1_000_000,
    "rate_burst": 1_000_000,
    "namespace_max_concurrency": 10_000,
    "capacity_containers": 400,
}


def bench_zip(source: str = BENCH_HANDLER) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", source)
    return buffer.getvalue()


class ApiError(RuntimeError):
    pass


@dataclass(frozen=True)
class DevServer:
    """A running hotpool: Main's URL and key, the Manager's URL and secret, the pids."""

    main_url: str
    manager_url: str
    pid: int  # Main's process (with `hotpool dev`, Main and Manager share it)
    api_key: str
    manager_secret: str
    manager_pid: int | None = None  # only when Main and Manager are separate processes

    @property
    def headers(self) -> dict[str, str]:
        """For Main's API: an admin key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def manager_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.manager_secret}"}

    def call(
        self, method: str, path: str, body: bytes | None = None, *,
        content_type: str = "application/json", timeout_s: float = 120,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One request to Main; returns status, headers and body."""
        return _request(
            method, self.main_url + path, body, {**self.headers, "Content-Type": content_type},
            timeout_s,
        )  # fmt: skip

    def deploy(self, name: str, code: bytes, **params: object) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        status, _, body = self.call(
            "PUT", f"/v1/functions/{name}?{query}", code, content_type="application/zip"
        )
        if status not in (200, 201):
            raise ApiError(f"deploy {name}: {status} {body[:300]!r}")
        return json.loads(body)

    def invoke(self, name: str, event: bytes = BENCH_EVENT) -> tuple[dict[str, str], bytes]:
        status, headers, body = self.call("POST", f"/v1/functions/{name}/invoke", event)
        if status != 200:
            raise ApiError(f"invoke {name}: {status} {body[:300]!r}")
        return headers, body

    def records(self, name: str, limit: int) -> list[dict[str, Any]]:
        status, _, body = self.call("GET", f"/v1/functions/{name}/invocations?limit={limit}")
        if status != 200:
            raise ApiError(f"records of {name}: {status}")
        return json.loads(body)["invocations"]

    def containers(self) -> list[dict[str, Any]]:
        """Every container the Manager runs (its address, function, version, ...)."""
        _, _, body = _request(
            "GET", self.manager_url + "/v1/containers", None, self.manager_headers, 30
        )
        return json.loads(body)["containers"]

    def containers_of(self, function: str) -> list[dict[str, Any]]:
        """The containers serving ``function`` (of the default namespace), any version."""
        return [c for c in self.containers() if (c["entry"] or "").startswith(f"{function}|")]

    def manager_health(self) -> dict[str, Any]:
        _, _, body = _request("GET", self.manager_url + "/healthz", None, {}, 30)
        return json.loads(body)

    def wait_prewarmed(self, n: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.manager_health().get("prewarmed", 0) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pre-warm pool did not reach {n} containers")
            time.sleep(0.02)

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Until a Manager is registered with Main (a cold start before that is a 503)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, _, body = self.call("GET", "/system/status")
            if status == 200 and json.loads(body)["managers_online"] >= 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("no Manager registered with Main")
            time.sleep(0.05)


def _request(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout_s: float
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _env(state: str, secret: str, settings: dict[str, object]) -> dict[str, str]:
    env = {**os.environ, "HOTPOOL_STATE_DIR": state, "HOTPOOL_MANAGER_SECRET": secret}
    metrics = {"metrics_port": spare_port(), "manager_metrics_port": spare_port()}
    merged = {**BENCH_SETTINGS, **metrics, **settings}
    env.update({f"HOTPOOL_{k.upper()}": str(v) for k, v in merged.items()})
    return env


def spare_port() -> int:
    """A port free now, for a child process to bind later. It is picked below the kernel's
    ephemeral range: a port the kernel handed out (bind to 0) can be taken in between as the
    source port of any outgoing connection, and the child then fails with "address in use"."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(min(10_000, low - 1), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # that whole range taken: any port the kernel gives
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hotpool.main_server.cli", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def dev_server(**settings: object) -> Iterator[DevServer]:
    """``hotpool dev`` on free ports with ``HOTPOOL_<NAME>`` settings."""
    with tempfile.TemporaryDirectory(prefix="hotpool-bench-") as state:
        secret = secrets.token_hex(16)
        log = Path(state) / "dev.log"
        proc = _spawn(["dev", "--port", "0"], _env(state, secret, settings), log)
        try:
            urls = wait_announced(log, ("main", "manager"), lambda: proc.poll() is None)
            key = (Path(state) / "admin.key").read_text().strip()
            server = DevServer(urls["main"], urls["manager"], proc.pid, key, secret)
            server.wait_ready()
            yield server
        finally:
            _stop(proc)


@contextlib.contextmanager
def split_services(redis_url: str, **settings: object) -> Iterator[DevServer]:
    """``hotpool main`` and ``hotpool manager`` on free ports, two processes sharing
    ``redis_url`` and a throw-away state directory (SQLite metadata, local code store)."""
    with tempfile.TemporaryDirectory(prefix="hotpool-bench-") as state:
        secret = secrets.token_hex(16)
        env = _env(state, secret, {"redis_url": redis_url, "port": 0, "manager_port": 0,
                                   **settings})  # fmt: skip
        for args in (["migrate"], ["admin", "create-key", "--namespace", "*", "--scopes", "admin"]):
            done = subprocess.run(
                [sys.executable, "-m", "hotpool.main_server.cli", *args],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"hotpool {' '.join(args)} failed: {done.stderr[-2000:]}")
        key = done.stdout.strip().splitlines()[-1]
        manager_log, main_log = Path(state) / "manager.log", Path(state) / "main.log"
        manager = _spawn(["manager"], env, manager_log)
        main = _spawn(["main"], env, main_log)
        try:

            def running() -> bool:
                return main.poll() is None and manager.poll() is None

            manager_url = wait_announced(manager_log, ("manager",), running)["manager"]
            main_url = wait_announced(main_log, ("main",), running)["main"]
            server = DevServer(main_url, manager_url, main.pid, key, secret, manager.pid)
            server.wait_ready()
            yield server
        finally:
            _stop(main)
            _stop(manager)


def wait_announced(
    log: Path, services: tuple[str, ...], running: Callable[[], bool], timeout_s: float = 60
) -> dict[str, str]:
    """The URLs a hotpool child announced in its ready line (its output goes to ``log``), by
    service, once each answers /healthz. The child bound those ports itself and holds them, so
    what answers there is the child; ``running()`` going false stops the wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running():
            raise RuntimeError(f"hotpool exited: {log.read_text(errors='replace')[-2000:]}")
        urls = announced_urls(log.read_text(errors="replace"))
        if all(service in urls for service in services):
            for service in services:
                status, _, _ = _request("GET", urls[service] + "/healthz", None, {}, 10)
                if status != 200:
                    raise RuntimeError(f"the {service} at {urls[service]} answered {status}")
            return urls
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"hotpool announced no ready line: {tail}")


def process_stats(pid: int) -> dict[str, float]:
    """RSS (MiB) and CPU time (user + system, seconds) of one process, from /proc."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"rss_mib": rss_kib / 1024, "cpu_s": (int(fields[11]) + int(fields[12])) / ticks}


def private_mib(pid: int) -> float:
    """What only this process holds (USS: its private pages, clean and dirty), in MiB: the
    memory one more such process costs, where RSS also counts pages shared with every other
    process of the same binary."""
    kib = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            kib += int(line.split()[1])
    return kib / 1024


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found

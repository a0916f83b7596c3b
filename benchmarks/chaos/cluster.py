"""The processes of the chaos run: its Redis, Managers and Mains."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from hotpool.benchmarks.chaos.config import (
    MAINS,
    MANAGERS,
    REPO,
    SERVICE_SETTINGS,
    START_TIMEOUT_S,
    HarnessError,
)
from hotpool.benchmarks.devserver import spare_port
from hotpool.manager.runtimes import NODEJS_BOOTSTRAP, PYTHON_BOOTSTRAP
from hotpool.shared.procs import die_with_parent

# ---------------------------------------------------------------------------------------------
# the processes


def _die_with_parent() -> None:
    # if the chaos run itself is SIGKILLed, its services get SIGTERM and drain their containers
    die_with_parent(signal.SIGTERM)


@dataclass(frozen=True)
class Bootstrap:
    pid: int
    ppid: int
    container_id: str
    service: str  # the Manager whose state directory holds it
    # python | nodejs | provided (the relay; its custom runtime is a process of its own)
    runtime: str = "python"


def _processes() -> Iterator[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every process we may read."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), int(stat.rsplit(")", 1)[1].split()[1]), argv


def bootstrap_processes(run_dir: Path) -> list[Bootstrap]:
    """Every container process of this run: a runtime's bootstrap with a --code-dir under
    ``run_dir`` (the Python one, as itself or as the relay of a custom runtime, or Node's)."""
    found = []
    bootstraps = {str(PYTHON_BOOTSTRAP): "python", str(NODEJS_BOOTSTRAP): "nodejs"}
    prefix = str(run_dir) + os.sep
    for pid, ppid, argv in _processes():
        runtime = next((r for path, r in bootstraps.items() if path in argv), None)
        if runtime is None or "--code-dir" not in argv:
            continue
        if "--runtime" in argv:
            runtime = argv[argv.index("--runtime") + 1]
        code_dir = argv[argv.index("--code-dir") + 1]
        if code_dir.startswith(prefix):
            relative = Path(code_dir).relative_to(run_dir).parts
            found.append(Bootstrap(pid, ppid, Path(code_dir).parent.name, relative[0], runtime))
    return found


def runtime_processes(run_dir: Path) -> list[Bootstrap]:
    """Every custom runtime of this run: a process running a package's ``bootstrap`` from a
    container's code folder under ``run_dir`` (its interpreter's argv names the script)."""
    found = []
    prefix = str(run_dir) + os.sep
    for pid, ppid, argv in _processes():
        script = next((a for a in argv[:2] if a.startswith(prefix)), "")
        path = Path(script)
        if path.name == "bootstrap" and path.parent.name == "code":
            relative = path.relative_to(run_dir).parts
            found.append(Bootstrap(pid, ppid, path.parent.parent.name, relative[0], "provided"))
    return found


def orphan_processes(run_dir: Path, manager_pids: set[int]) -> list[Bootstrap]:
    """Container processes no running Manager owns, and custom runtimes no relay owns."""
    containers = bootstrap_processes(run_dir)
    relays = {b.pid for b in containers if b.runtime == "provided"}
    return [b for b in containers if b.ppid not in manager_pids] + [
        r for r in runtime_processes(run_dir) if r.ppid not in relays
    ]


class Cluster:
    """Redis, Managers and Mains of one run, each restartable on its own port (the chaos run's
    counts and settings unless told others: the scheduler's replica test uses it too)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        mains: int = MAINS,
        managers: int = MANAGERS,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.settings = SERVICE_SETTINGS if settings is None else settings
        self.redis_port = spare_port()
        self.manager_ports = [spare_port() for _ in range(managers)]
        self.main_ports = [spare_port() for _ in range(mains)]
        self.manager_ids = [f"chaos-m{i}" for i in range(managers)]
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

    def _service_names(self) -> list[str]:
        mains, managers = len(self.main_ports), len(self.manager_ports)
        return [f"main{i}" for i in range(mains)] + [f"mgr{i}" for i in range(managers)]

    def main_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.main_ports[i]}"

    def manager_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.manager_ports[i]}"

    def up(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
        env.update({f"HOTPOOL_{k}": v for k, v in self.settings.items()})
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
        # AOF fsynced every second: a graceful stop (SIGTERM) writes and fsyncs the rest, so a
        # restart loses nothing; "always" would be needed only to survive a kill -9 or a crash
        redis_dir = self.run_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self._spawn("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--dir", str(redis_dir),
        ])  # fmt: skip
        await self._wait_tcp("redis", self.redis_port)

    def stop_redis(self, timeout_s: float = 10.0) -> int | None:
        """Stop Redis as an operator would (SIGTERM: it flushes its AOF); returns its pid."""
        proc = self.procs.get("redis")
        if proc is None or proc.poll() is not None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise HarnessError(f"redis did not stop within {timeout_s} s of SIGTERM") from None
        return proc.pid

    async def migrate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotpool.main_server.cli", "migrate",
            "--database-url", self.db_url,
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
            sys.executable, "-m", "hotpool.main_server.cli", "admin", "create-key",
            "--namespace", "*", "--scopes", "admin",
            cwd=REPO, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
        self._spawn(name, [sys.executable, "-m", "hotpool.main_server.cli", "manager"], env)
        await self._wait_http(name, self.manager_url(i) + "/healthz")

    async def start_main(self, i: int) -> None:
        name = f"main{i}"
        env = self._env(PORT=str(self.main_ports[i]), STATE_DIR=str(self.run_dir / name))
        self._spawn(name, [sys.executable, "-m", "hotpool.main_server.cli", "main"], env)
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
        # containers of Managers that were killed outlive them (they run in their own session),
        # and so may a custom runtime whose relay was killed alone
        for container in bootstrap_processes(self.run_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.pid, signal.SIGKILL)
        for runtime in runtime_processes(self.run_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(runtime.pid, signal.SIGKILL)
        redis_proc = self.procs.get("redis")
        if redis_proc is not None and redis_proc.poll() is None:
            redis_proc.kill()
            redis_proc.wait(timeout=10)

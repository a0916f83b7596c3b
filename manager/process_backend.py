"""The process backend: each container is a bootstrap subprocess on 127.0.0.1.

Development-grade isolation: every container gets its own working directory, an environment
holding nothing of the Manager's, its own session, and an address-space limit derived from
``memory_mb``. The bootstrap is a child subreaper, so whatever it spawned stays its descendant
even after a double fork and setsid(); removing the container kills them all (``kill_tree``).
User code runs in the bootstrap's own process and could undo that with prctl: this is not a
security boundary; the Docker backend is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import shutil
import time
import uuid
from pathlib import Path

from hotpool.manager.backend import (
    Container,
    ContainerSpec,
    ExitListener,
    ExitStatus,
    new_container_secret,
)
from hotpool.manager.provided import link_provided
from hotpool.manager.runtimes import process_command
from hotpool.shared.errors import ContainerFailed
from hotpool.shared.models import MEMORY_MB_RANGE
from hotpool.shared.procs import become_subreaper, die_with_parent, kill_tree

log = logging.getLogger(__name__)

# CPython, its threads and the bootstrap reserve address space well beyond what they touch;
# the limit is the function's memory plus this allowance, so a function gets about memory_mb
# of real memory before MemoryError.
address_space_allowance_mb = 384
# V8 reserves address space up front, far beyond what it touches: node (20) does not even
# start under 640 MiB of RLIMIT_AS and needs ~768 MiB for a 50 MiB heap, so a Node container
# gets a larger allowance. WebAssembly reserves ~10 GiB of guard pages per memory and does not
# run on the process backend at all (the Docker backend bounds memory with cgroups instead).
runtime_allowance_mb = {"nodejs": 1024}
port_poll_interval_s = 0.005
max_remembered_exits = 1000
# what the Manager keeps of a container's own stdout/stderr (the start-up failure message)
output_tail_bytes = 2000
drain_chunk_bytes = 64 * 1024


class ProcessBackend:
    """``ContainerBackend`` running each container as a local subprocess."""

    name = "process"

    def __init__(
        self, work_dir: Path, *, host: str = "127.0.0.1", ready_timeout_s: float = 30.0
    ) -> None:
        self._work_dir = work_dir
        self._host = host
        self._ready_timeout_s = ready_timeout_s
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[ExitListener] = []
        self._removing: set[str] = set()
        self._exits: dict[str, int] = {}
        self._runtimes: dict[str, str] = {}
        self._provided: asyncio.Task[list[str]] | None = None

    def on_exit(self, listener: ExitListener) -> None:
        self._listeners.append(listener)

    async def start(self, spec: ContainerSpec) -> Container:
        provided = self._work_dir / "provided"
        command = process_command(spec.runtime, provided)
        container_id = "p-" + uuid.uuid4().hex[:12]
        workdir = self._work_dir / container_id
        (workdir / "code").mkdir(parents=True)
        (workdir / "tmp").mkdir()
        # the container's own /opt: its layers are unpacked there (Docker: /opt in the image)
        (workdir / "opt").mkdir()
        port_file = workdir / "port"
        limit_bytes = _address_space_bytes(spec.memory_mb, spec.runtime)
        # the hard limit is the largest a function may have, so a pre-warmed container can be
        # given any function's limit later (raising a hard limit needs privileges)
        hard_bytes = _address_space_bytes(MEMORY_MB_RANGE[1], spec.runtime)
        started = time.time()
        secret = new_container_secret()
        if self._provided is None:  # once per Manager: links to its own boto3 and the rest
            self._provided = asyncio.ensure_future(asyncio.to_thread(link_provided, provided))
        await asyncio.shield(self._provided)
        proc = await asyncio.create_subprocess_exec(
            *command,
            "--host", self._host, "--port", "0",
            "--port-file", str(port_file), "--code-dir", str(workdir / "code"),
            "--opt-dir", str(workdir / "opt"),
            cwd=workdir,
            env=_container_env(workdir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _prepare_child(limit_bytes, hard_bytes),
        )  # fmt: skip
        assert proc.stdout is not None
        tail = bytearray()
        self._drains[container_id] = asyncio.create_task(_drain(proc.stdout, tail))
        self._procs[container_id] = proc
        self._runtimes[container_id] = spec.runtime
        try:
            await _hand_secret(proc, secret)
            port = await self._wait_for_port(container_id, proc, port_file, tail)
        except BaseException:
            await self.remove(container_id)
            raise
        self._watchers[container_id] = asyncio.create_task(self._watch(container_id, proc))
        return Container(
            id=container_id,
            address=f"{self._host}:{port}",
            runtime=spec.runtime,
            memory_mb=spec.memory_mb,
            started_at=started,
            secret=secret,
        )

    async def _wait_for_port(
        self, container_id: str, proc: asyncio.subprocess.Process, port_file: Path, tail: bytes
    ) -> int:
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                # what it wrote before dying may still be in the pipe
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drains[container_id]), 1.0)
                output = tail.decode(errors="replace")
                raise ContainerFailed(
                    f"container exited with code {proc.returncode} while starting: {output}"
                )
            try:
                return int(port_file.read_text())  # noqa: ASYNC240 (tiny local file)
            except (FileNotFoundError, ValueError):
                await asyncio.sleep(port_poll_interval_s)
        raise ContainerFailed(f"container did not start within {self._ready_timeout_s} s")

    async def _watch(self, container_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if container_id in self._removing:
            return
        self._exits[container_id] = code
        if len(self._exits) > max_remembered_exits:
            self._exits.pop(next(iter(self._exits)))
        log.info("container %s exited on its own with code %s", container_id, code)
        self._procs.pop(container_id, None)
        self._runtimes.pop(container_id, None)
        self._watchers.pop(container_id, None)
        _cancel(self._drains.pop(container_id, None))
        shutil.rmtree(self._work_dir / container_id, ignore_errors=True)
        for listener in self._listeners:
            try:
                await listener(container_id)
            except Exception:
                log.exception("exit listener failed for %s", container_id)

    async def remove(self, container_id: str) -> None:
        proc = self._procs.pop(container_id, None)
        self._runtimes.pop(container_id, None)
        self._removing.add(container_id)
        try:
            watcher = self._watchers.pop(container_id, None)
            if proc is not None:
                # whatever the function left running dies too, even in a session of its own
                await asyncio.to_thread(kill_tree, proc.pid)
                await proc.wait()
            if watcher is not None:
                watcher.cancel()
            _cancel(self._drains.pop(container_id, None))
            await asyncio.to_thread(
                shutil.rmtree, self._work_dir / container_id, ignore_errors=True
            )
        finally:
            self._removing.discard(container_id)

    async def alive(self, container_id: str) -> bool:
        proc = self._procs.get(container_id)
        return proc is not None and proc.returncode is None

    async def exit_status(self, container_id: str, wait_s: float = 0.0) -> ExitStatus | None:
        proc = self._procs.get(container_id)
        if proc is not None and proc.returncode is None and wait_s > 0:
            try:
                await asyncio.wait_for(proc.wait(), wait_s)
            except TimeoutError:
                return None
        if proc is not None and proc.returncode is not None:
            return ExitStatus(proc.returncode)
        if container_id in self._exits:
            return ExitStatus(self._exits[container_id])
        return None

    async def set_memory(self, container_id: str, memory_mb: int) -> None:
        proc = self._procs.get(container_id)
        if proc is None:
            return
        runtime = self._runtimes.get(container_id, "python")
        hard = _address_space_bytes(MEMORY_MB_RANGE[1], runtime)
        soft = _address_space_bytes(memory_mb, runtime)
        with contextlib.suppress(ProcessLookupError):
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (soft, hard))

    async def healthy(self) -> bool:
        return True

    async def list_ids(self) -> set[str]:
        return {cid for cid, proc in self._procs.items() if proc.returncode is None}

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(cid) for cid in list(self._procs)))


async def _drain(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read the container's output until it ends, keeping only its last bytes.

    Its output is not kept on disk: a function writing straight to file descriptor 1 (past the
    bootstrap's per-call capture) could fill it. The tail explains a container dying at start.
    """
    while chunk := await stream.read(drain_chunk_bytes):
        tail += chunk
        del tail[:-output_tail_bytes]


def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()


async def _hand_secret(proc: asyncio.subprocess.Process, secret: str) -> None:
    """Write the container's secret to the bootstrap's stdin, one line, and close it."""
    assert proc.stdin is not None
    proc.stdin.write(secret.encode() + b"\n")
    try:
        await proc.stdin.drain()
    except ConnectionError:  # it died already; waiting for its port reports how
        pass
    proc.stdin.close()


def _prepare_child(limit_bytes: int, hard_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard_bytes))
    # a container dies with its Manager: after a kill -9 the restarted Manager cannot find
    # the old processes (nothing labels them, unlike Docker containers), so they would run on,
    # owned by no one, for ever
    die_with_parent()
    become_subreaper()


def _address_space_bytes(memory_mb: int, runtime: str = "python") -> int:
    allowance = runtime_allowance_mb.get(runtime, address_space_allowance_mb)
    return (memory_mb + allowance) * 1024 * 1024


def _container_env(workdir: Path) -> dict[str, str]:
    # nothing of the Manager's environment leaks in; the function's own env arrives via /init
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
    }

"""A custom runtime's ``bootstrap`` process: started, its output read, its exit noticed.

Its stdout and stderr are pipes read by one thread into the capture of the moment (the /init
or the /invoke under way), bounded as the Python runtime's capture is; what it writes between
calls is dropped. The thread keeps reading past the bound, so a runtime flooding its output
never blocks on a full pipe.
"""

from __future__ import annotations

import os
import resource
import select
import threading
import time

from .capture import TRUNCATION_MARKER

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Callable

READ_BYTES = 64 * 1024
SETTLE_POLLS = 20  # at the end of a call, how many times to look for output still in the pipes
SETTLE_POLL_MS = 1
# Output that reaches the pipes through Docker and the Manager (an image's, output_intake)
# comes a moment after the runtime wrote it, not before its answer as a child's does: the end
# of a call waits until the pipes have been quiet this many polls in a row (at most
# EXTERNAL_SETTLE_POLLS). Measured on Docker 28, 2 cores: a line printed just before the
# answer was in its record in 100 of 100 calls on an idle machine, not always with the CPUs
# oversubscribed (the README's "Container-image functions" says so).
EXTERNAL_QUIET_POLLS = 5
EXTERNAL_SETTLE_POLLS = 50


class Bounded:
    """The first ``limit`` bytes written to it, and whether more came."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False

    def write(self, data: bytes) -> None:
        room = self._limit - self._size
        if len(data) > room:
            data, self._truncated = data[: max(room, 0)], True
        if data:
            self._chunks.append(data)
            self._size += len(data)

    def getvalue(self) -> str:
        text = b"".join(self._chunks).decode("utf-8", "replace")
        return text + TRUNCATION_MARKER if self._truncated else text


class ChildOutput:
    """The stdout and stderr pipes of the bootstrap, read by one daemon thread."""

    def __init__(
        self, stdout_fd: int, stderr_fd: int, limit: int, *, quiet_polls: int = 1,
        settle_polls: int = SETTLE_POLLS,
    ) -> None:  # fmt: skip
        """Capture from the start (``begin(limit)``): the child may write before this returns.
        ``quiet_polls``: how many empty polls in a row end ``settle``."""
        self._quiet_polls, self._settle_polls = quiet_polls, settle_polls
        self._names = {stdout_fd: "stdout", stderr_fd: "stderr"}
        # one poll object each for the reader and ``settle``: a poll object is not shared
        self._polls = select.poll(), select.poll()
        for fd in self._names:
            os.set_blocking(fd, False)  # the reader and ``settle`` may both find it readable
            for poll in self._polls:
                poll.register(fd, select.POLLIN)
        self._open = set(self._names)
        self._sinks: dict[str, Bounded] | None = None
        self._lock = threading.Lock()
        self.begin(limit)
        threading.Thread(target=self._read_forever, daemon=True).start()

    def begin(self, limit: int) -> None:
        """Capture from now on, up to ``limit`` bytes of each stream."""
        with self._lock:
            self._sinks = {"stdout": Bounded(limit), "stderr": Bounded(limit)}

    def end(self) -> dict[str, str]:
        """Stop capturing; the ``stdout`` and ``stderr`` fields of an answer. What the runtime
        wrote before it answered is in the pipes already: it is read before returning."""
        self.settle()
        with self._lock:
            sinks, self._sinks = self._sinks, None
        if sinks is None:
            return {"stdout": "", "stderr": ""}
        return {name: sink.getvalue() for name, sink in sinks.items()}

    def settle(self) -> None:
        """Read what is in the pipes now; with ``quiet_polls`` over 1, also what comes until
        they have been quiet that long."""
        quiet = 0
        for _ in range(self._settle_polls):
            quiet = 0 if self._pump(self._polls[1], 0) else quiet + 1
            if quiet >= self._quiet_polls:
                return
            time.sleep(SETTLE_POLL_MS / 1000)

    def _read_forever(self) -> None:
        while self._open:
            self._pump(self._polls[0], -1)

    def _pump(self, poll: select.poll, timeout_ms: int) -> bool:
        """Read each readable pipe once; whether anything was read."""
        read = False
        for fd, _ in poll.poll(timeout_ms):
            with self._lock:
                try:
                    data = os.read(fd, READ_BYTES)
                except BlockingIOError:  # the other reader took it
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close(fd)
                    continue
                read = True
                if self._sinks is not None:
                    self._sinks[self._names[fd]].write(data)
        return read

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            for poll in self._polls:
                poll.unregister(fd)
            os.close(fd)


def start(command: list[str], env: dict[str, str], limit: int) -> tuple[int, ChildOutput]:
    """Start ``command`` in the current directory, stdin /dev/null; (pid, its output, captured
    up to ``limit`` bytes a stream until ``end``). Raises OSError when it cannot be run."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        pid = os.posix_spawn(command[0], command, env, file_actions=actions)
    except OSError:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        for fd in (out_w, err_w, devnull):
            os.close(fd)
    # the relay's own descriptors are close-on-exec (Python's default): none leak into it
    return pid, ChildOutput(out_r, err_r, limit)


def watch(pid: int, on_exit: Callable[[str], None]) -> None:
    """Call ``on_exit(description)`` from a daemon thread once ``pid`` has ended."""

    def wait() -> None:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:  # reaped by someone else (kill_leftovers): it ended
                status = -1
                break
            except InterruptedError:
                continue
        on_exit(describe_status(status))

    threading.Thread(target=wait, daemon=True).start()


def describe_status(status: int) -> str:
    """As Lambda words it: ``exit status 1`` or ``signal: killed``."""
    if status == -1:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        signal_number = os.WTERMSIG(status)
        names = {9: "killed", 15: "terminated", 6: "aborted", 11: "segmentation fault"}
        return f"signal: {names.get(signal_number, signal_number)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def peak_memory_mb(pid: int) -> float:
    """The resident high-water mark of ``pid`` (VmHWM), 0.0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def lift_address_space_limit() -> None:
    """Raise this process's address-space limit to its hard limit, for the runtime to inherit.

    The process backend bounds a container's memory with RLIMIT_AS (the function's memory
    plus an allowance that fits CPython), but runtimes reserve address space far beyond what
    they use: Go's reserves about 700 MB before main() runs, V8 and the JVM more. An
    address-space limit cannot express their memory size, so a custom runtime's memory is
    bounded on the Docker backend only (by its cgroup), as the README says.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))

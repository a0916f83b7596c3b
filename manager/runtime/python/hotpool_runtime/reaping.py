"""What a call leaves running: every process it started is killed when it returns (Linux).

Lambda freezes a sandbox between calls; this runtime kills instead, so nothing a function
started runs on between its calls or during another call. A process that double-forks and
calls setsid() leaves its group and session, so killing those is not enough: the bootstrap
makes itself a child subreaper, orphans are re-parented to it instead of to init, and every
process it started stays its descendant, found by walking /proc.

The check made on every call is one waitid() (about a microsecond): only when the bootstrap
has any child at all does it read /proc. The Manager's process backend walks /proc the same
way (``hotpool.shared.procs``) to remove a container; this stays stdlib-only and separate.
"""

from __future__ import annotations

import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36
MAX_KILL_ROUNDS = 100  # each round kills what the last one re-parented; a fork bomb is bounded
REAP_POLLS = 50  # how long to wait for the killed to die: REAP_POLLS * REAP_POLL_S at most
REAP_POLL_S = 0.002


def become_subreaper() -> bool:
    """Adopt every orphaned descendant (prctl PR_SET_CHILD_SUBREAPER); False where that is
    not possible (no ctypes, not Linux), and the runtime then finds only its own children."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:  # ImportError, OSError, AttributeError: degrade, never fail to start
        return False


def kill_leftovers() -> int:
    """Kill every descendant of this process and reap them; return how many were killed."""
    if not _has_children():
        return 0
    me, killed = os.getpid(), set()
    for _ in range(MAX_KILL_ROUNDS):
        found = descendants(me) - killed
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed |= found
    # SIGKILL takes effect asynchronously; reap now so the next call does not pay the scan
    for _ in range(REAP_POLLS):
        _reap()
        if not _has_children():
            break
        time.sleep(REAP_POLL_S)
    return len(killed)


def descendants(root: int) -> set[int]:
    """The pids of the descendants of ``root`` (zombies among them, where the kernel lists
    children: reading the subtree costs far less than the whole of /proc)."""
    found: set[int] = set()
    stack = [root]
    while stack:
        for pid in _children(stack.pop()):
            if pid not in found:
                found.add(pid)
                stack.append(pid)
    return found


def _children(pid: int) -> list[int]:
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # exited meanwhile
        return []
    children: list[int] = []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                children.extend(int(child) for child in f.read().split())
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN, or the thread ended
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue
            return _children_from_stat(pid)
        except OSError:
            continue
    return children


def _children_from_stat(parent: int) -> list[int]:
    """The live children of ``parent``, from every process's /proc/PID/stat."""
    children: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # the name in parentheses may hold spaces and ")": fields follow the last one
                state, ppid = f.read().rpartition(b")")[2].split(None, 2)[:2]
        except OSError:  # exited since listdir
            continue
        if int(ppid) == parent and state != b"Z":
            children.append(int(name))
    return children


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _reap() -> None:
    """Collect the exit status of every child that has ended, so no zombie stays."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

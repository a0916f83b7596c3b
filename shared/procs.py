"""Child processes that must not outlive the process that started them (Linux)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

# loaded once, at import: the child between fork and exec must not take the loader's locks
_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# each round kills what the last one re-parented to the root; a fork bomb is bounded
max_kill_rounds = 100


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For ``preexec_fn``: the child gets ``sig`` when its parent dies, even by kill -9, so
    nothing is left running that no one owns (Linux only: prctl PR_SET_PDEATHSIG)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, sig)


def become_subreaper() -> None:
    """For ``preexec_fn``: orphaned descendants of the child are re-parented to it, not to
    init, so ``kill_tree`` finds them after a double fork. Kept across execve."""
    _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_tree(root: int) -> int:
    """SIGKILL ``root``, its process group and every descendant; return how many died.

    A process that double-forks and calls setsid() leaves the group and session of ``root``;
    while ``root`` is a subreaper it stays a descendant. ``root`` is stopped first, so it
    cannot fork while its descendants die, and it adopts their orphans until they die too.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(root, signal.SIGSTOP)
    killed: set[int] = set()
    for _ in range(max_kill_rounds):
        found = descendants(root) - killed
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= found
    with contextlib.suppress(ProcessLookupError):
        os.killpg(root, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(root, signal.SIGKILL)
    return len(killed) + 1


def descendants(root: int) -> set[int]:
    """The pids of the live (not zombie) descendants of ``root``, from /proc.

    The bootstrap has its own copy of this /proc walk (hotpool_runtime/reaping.py): it runs in
    the container and imports nothing of hotpool's."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # the name in parentheses may hold spaces and ")": fields follow the last one
                state, ppid = f.read().rpartition(b")")[2].split(None, 2)[:2]
        except OSError:  # exited since listdir
            continue
        if state != b"Z":
            children.setdefault(int(ppid), []).append(int(name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), ()):
            if pid not in found:
                found.add(pid)
                stack.append(pid)
    return found

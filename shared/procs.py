"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal

# loaded once, at import: the child between fork and exec must not take the loader's locks
_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For ``preexec_fn``: the child gets ``sig`` when its parent dies, even by kill -9, so
    nothing is left running that no one owns (Linux only: prctl PR_SET_PDEATHSIG)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, sig)

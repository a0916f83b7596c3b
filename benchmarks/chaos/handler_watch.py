"""Calls in their handler right now, from the ledger's newest lines: what a kill aims at.

A lease says a call holds a container, not that its handler runs: it outlives the handler by
Main's share of the call, and the other runtimes' calls (5-50 ms) end before a kill aimed at a
lease lands more often than not. The ledger's start line without its end line is the handler
itself, with the process that runs it (``pid``: the Node.js bootstrap, or the custom runtime
under its relay), so a kill can go straight to it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# a start line older than this without its end is a call cut short before, not one running
# now (the other runtimes' synchronous calls sleep at most SLEEP_MS, 50 ms)
OPEN_MAX_AGE_S = 0.5

Key = tuple[str, int, float]  # token, pid, start


def track(running: dict[Key, dict[str, Any]], lines: Iterable[Mapping[str, Any]]) -> None:
    """Update ``running`` (the start lines without their end line yet) with ``lines``, in the
    ledger's order. Only plain synchronous calls of runtimes that name themselves count."""
    for line in lines:
        if "runtime" not in line or line.get("kind") or "token" not in line:
            continue
        key = (line["token"], line["pid"], line["start"])
        if line.get("phase") == "start":
            running[key] = dict(line)
        else:
            running.pop(key, None)


def in_handler(
    running: Mapping[Key, Mapping[str, Any]], runtime: str, now: float
) -> list[Mapping[str, Any]]:
    """The calls of ``runtime`` in their handler at ``now`` (unix time), newest first."""
    calls = [
        c for c in running.values()
        if c["runtime"] == runtime and now - OPEN_MAX_AGE_S <= c["start"] <= now
    ]  # fmt: skip
    return sorted(calls, key=lambda c: c["start"], reverse=True)


class HandlerWatch:
    """Reads the ledger's new lines on each ``poll``; ``running`` holds the open calls."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.offset = 0
        self.running: dict[Key, dict[str, Any]] = {}

    def poll(self, runtime: str) -> list[Mapping[str, Any]]:
        """The calls of ``runtime`` in their handler now (``in_handler``)."""
        try:
            with open(self.ledger, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        lines = []
        for raw in complete.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        track(self.running, lines)
        now = time.time()
        for key in [k for k, c in self.running.items() if c["start"] < now - OPEN_MAX_AGE_S]:
            del self.running[key]
        return in_handler(self.running, runtime, now)


def service_of(pid: int, run_dir: Path) -> str | None:
    """The service (``mgr<i>``) whose containers folder holds the process ``pid`` runs, from
    its command line; None when it names nothing under ``run_dir``. A pid read from the
    ledger is signalled only then, never a stranger that reused it."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    prefix = str(run_dir) + os.sep
    for arg in argv:
        if arg.startswith(prefix):
            return Path(arg).relative_to(run_dir).parts[0]
    return None

"""Fails any async test that blocks its event loop for longer than ``BLOCKED_S``.

A blocked loop stalls every request of the server under test, so a test that blocks it (a
``time.sleep``, a ``subprocess.run``, a long CPU loop in a coroutine) measures something other
than what it claims. aiohttp's own suite catches such calls with blockbuster, which flags any
blocking call however short; hotpool does small file I/O on its loop on purpose (and so do
its fixtures: blockbuster failed 228 of the tests in tests/shared), so this guard measures
the stall instead: a heartbeat task beats every ``BEAT_S`` on the test's loop, and a watchdog
thread fails the test when the loop is running yet has not beaten for ``BLOCKED_S``, naming
the line the loop was stuck on. Only time the loop is running counts, so pytest's own work
between fixtures is never taken for a stall.

A test that must block says why: ``@pytest.mark.blocks_event_loop(reason="...")``.

Time spent in Python's cyclic garbage collector does not count: a full collection of the test
process's heap grows with the whole suite (over 1 s once some 1,700 tests have run), wherever
the loop happens to be, and says nothing of the code under test (Main freezes its start-up
objects out of the collector; pytest cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from pytest_asyncio import is_async_test

# generous: a loaded 2-core machine must not make a healthy test fail (ini: loop_guard_blocked_s)
BLOCKED_S = 1.0
BEAT_S = 0.05
MARKER = "blocks_event_loop"
# @pytest.mark.loop_guard(blocked_s=...): a tighter bound for a test that proves a path never
# does heavy work on the loop
BOUND_MARKER = "loop_guard"
ASYNCIO_DIR = os.path.dirname(asyncio.__file__)


@dataclass
class Stall:
    seconds: float
    where: str


class LoopWatchdog:
    """Heartbeat on the loop, watchdog on a thread; ``stalls`` is what it saw."""

    def __init__(self, loop: asyncio.AbstractEventLoop, blocked_s: float = BLOCKED_S) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._blocked_s = blocked_s
        self._last_beat = time.monotonic()
        self._stop = threading.Event()
        self.stalls: list[Stall] = []
        self.reported = 0
        # seconds spent in the garbage collector (any thread: it holds the GIL), and when the
        # collection under way began
        self._gc_s = 0.0
        self._gc_began: float | None = None

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` entry: adds up the time collections take."""
        if phase == "start":
            self._gc_began = time.monotonic()
        elif self._gc_began is not None:
            self._gc_s += time.monotonic() - self._gc_began
            self._gc_began = None

    def _gc_so_far(self, now: float) -> float:
        began = self._gc_began
        return self._gc_s + (now - began if began is not None else 0.0)

    async def beat(self) -> None:
        while True:
            self._last_beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    def watch(self) -> None:
        beat, running_since, gc_since, stall = None, 0.0, 0.0, None
        while not self._stop.wait(BEAT_S):
            now = time.monotonic()
            if not self._loop.is_running() or self._last_beat != beat:
                # stopped (pytest between fixtures) or beating: nothing is stuck
                beat, running_since, stall = self._last_beat, now, None
                gc_since = self._gc_so_far(now)
                continue
            stuck_s = now - running_since - (self._gc_so_far(now) - gc_since)
            if stall is not None:
                stall.seconds = stuck_s
            elif stuck_s >= self._blocked_s:
                stall = Stall(stuck_s, self._where())
                self.stalls.append(stall)

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "(unknown)\n"
        stack = traceback.extract_stack(frame)
        ours = [f for f in stack if not f.filename.startswith(ASYNCIO_DIR)] or stack
        return "".join(traceback.format_list(ours[-3:]))

    def stop(self) -> None:
        self._stop.set()

    def unreported(self) -> str | None:
        """A message for the stalls seen since the last call, or None."""
        new, self.reported = self.stalls[self.reported :], len(self.stalls)
        if not new:
            return None
        worst = max(new, key=lambda s: s.seconds)
        return (
            f"the event loop was blocked for {worst.seconds:.1f} s (more than {self._blocked_s} s; "
            f"{len(new)} stall(s)) at:\n{worst.where}"
            "use asyncio.to_thread or an asyncio subprocess, or mark the test "
            f"@pytest.mark.{MARKER}(reason=...)"
        )


WATCHDOG = pytest.StashKey[LoopWatchdog]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "loop_guard_blocked_s", "an async test whose loop stalls this long fails", default=""
    )


@pytest.fixture(autouse=True)
def _event_loop_guard(request: pytest.FixtureRequest) -> None:
    """Starts the watchdog for async tests (first, so it also watches their fixtures)."""
    item = request.node
    if is_async_test(item) and item.get_closest_marker(MARKER) is None:
        request.getfixturevalue("_loop_watchdog")


@pytest.fixture
async def _loop_watchdog(request: pytest.FixtureRequest) -> AsyncIterator[LoopWatchdog]:
    blocked_s = float(request.config.getini("loop_guard_blocked_s") or BLOCKED_S)
    bound = request.node.get_closest_marker(BOUND_MARKER)
    if bound is not None:
        blocked_s = float(bound.kwargs["blocked_s"])
    watchdog = LoopWatchdog(asyncio.get_running_loop(), blocked_s)
    request.node.stash[WATCHDOG] = watchdog
    thread = threading.Thread(target=watchdog.watch, name="loop-watchdog", daemon=True)
    gc.callbacks.append(watchdog.gc_callback)
    thread.start()
    beating = asyncio.create_task(watchdog.beat(), name="loop-heartbeat")
    try:
        yield watchdog
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        watchdog.stop()
        gc.callbacks.remove(watchdog.gc_callback)
    message = watchdog.unreported()  # a fixture's teardown blocked
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The test fails (rather than errs in teardown) when its own body blocked the loop."""
    result = yield
    watchdog = item.stash.get(WATCHDOG, None)
    message = watchdog.unreported() if watchdog is not None else None
    if message is not None:
        pytest.fail(message, pytrace=False)
    return result

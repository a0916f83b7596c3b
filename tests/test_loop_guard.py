"""The event-loop guard (tests/loop_guard.py) fails an async test that blocks its loop."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit

pytest_plugins = ["pytester"]

CONFTEST = """
from tests.loop_guard import (
    _event_loop_guard, _loop_watchdog, pytest_addoption, pytest_runtest_call
)
"""
INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
markers =
    blocks_event_loop(reason): the test blocks its loop on purpose
    loop_guard(blocked_s): a tighter bound
"""


@pytest.fixture
def run(pytester: pytest.Pytester):
    """Runs a test file in a pytest of its own with the guard; ``blocked_s`` shortens the
    threshold (default: the guard's own)."""
    pytester.makeconftest(CONFTEST)

    def run_tests(source: str, blocked_s: float | None = None) -> pytest.RunResult:
        ini = INI if blocked_s is None else INI + f"loop_guard_blocked_s = {blocked_s}\n"
        pytester.makeini(ini)
        pytester.makepyfile(test_inner=source)
        return pytester.runpytest_inprocess("-p", "no:cacheprovider")

    return run_tests


def test_an_async_test_that_sleeps_two_seconds_on_its_loop_fails_naming_the_line(run):
    result = run(
        """
        import time

        async def test_blocks():
            time.sleep(2)
        """
    )

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*event loop was blocked for*", "*time.sleep(2)*"])


def test_a_fixture_that_blocks_the_loop_in_its_teardown_errs(run):
    result = run(
        """
        import time
        import pytest

        @pytest.fixture
        async def slow_close():
            yield
            time.sleep(0.6)

        async def test_fine(slow_close):
            pass
        """,
        blocked_s=0.2,
    )

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*event loop was blocked for*", "*time.sleep(0.6)*"])


def test_awaiting_and_waiting_outside_the_loop_pass(run):
    result = run(
        """
        import asyncio
        import time
        import pytest

        @pytest.fixture
        def slow_sync_fixture():
            time.sleep(0.6)  # the loop is not running: nothing is blocked

        async def test_awaits(slow_sync_fixture):
            await asyncio.sleep(0.6)
            await asyncio.to_thread(time.sleep, 0.6)

        def test_sync():
            time.sleep(0.6)

        @pytest.mark.blocks_event_loop(reason="this test says why it blocks")
        async def test_opted_out():
            time.sleep(0.6)
        """,
        blocked_s=0.2,
    )

    result.assert_outcomes(passed=3)


def test_a_loop_guard_marker_tightens_the_bound_for_its_test_only(run):
    result = run(
        """
        import time
        import pytest

        @pytest.mark.loop_guard(blocked_s=0.2)
        async def test_tight():
            time.sleep(0.5)

        async def test_default_bound():
            time.sleep(0.5)
        """
    )

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_tight*", "*more than 0.2 s*"])


def test_time_in_the_garbage_collector_is_not_a_stall(run):
    # a collection of the whole suite's heap can pass the bound wherever the loop is; the
    # guard stands in for one here by reporting a long "collection" to its gc callback
    result = run(
        """
        import gc
        import time

        async def test_a_long_collection():
            guards = [c for c in gc.callbacks if type(getattr(c, "__self__", None)).__name__
                      == "LoopWatchdog"]
            assert len(guards) == 1
            guards[0]("start", {"generation": 2})
            time.sleep(0.6)
            guards[0]("stop", {"generation": 2})

        async def test_a_real_stall_still_fails():
            time.sleep(0.6)
        """,
        blocked_s=0.3,
    )

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_a_real_stall_still_fails*"])

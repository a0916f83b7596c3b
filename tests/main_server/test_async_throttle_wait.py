"""A throttled asynchronous attempt waits at least as long as the 429 asked."""

from __future__ import annotations

import pytest

from hotpool.main_server.async_outcome import Outcome, decide
from hotpool.shared.async_queue import Attempt, Entry
from hotpool.shared.errors import TooManyRequests
from hotpool.shared.settings import Settings
from tests.fakes import ECHO_V1

pytestmark = pytest.mark.unit

NOW = 1_000_000.0


@pytest.mark.parametrize(("asked_s", "waited_s"), [(30.0, 30.0), (0.5, 1.0)])
def test_the_retry_after_of_a_429_sets_the_next_attempt_unless_the_backoff_is_longer(
    tmp_path, asked_s, waited_s
):
    settings = Settings.from_env({}, state_dir=tmp_path)  # backoff starts at 1 s
    outcome = Outcome.from_error(TooManyRequests("echo is at its limit", retry_after_s=asked_s))
    attempt = Attempt(
        Entry("1-0", "00000000-0000-4000-8000-000000000000", "echo", "default"),
        1,
        {"accepted_at": str(NOW), "attempts": "1"},
    )
    decision = decide(attempt, ECHO_V1, outcome, settings, now=NOW)
    assert (decision.status, decision.due) == ("retry", NOW + waited_s)
    assert decision.fields["throttles"] == 1 and "retries" not in decision.fields

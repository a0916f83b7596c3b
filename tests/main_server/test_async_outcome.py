"""``async_outcome.decide`` and Lambda's destination record, as pure functions: what each
attempt's outcome makes of the event (Lambda's asynchronous invocation semantics)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from hotpool.main_server.async_outcome import (
    Outcome,
    decide,
    destination_event,
    max_destination_depth,
)
from hotpool.shared.async_queue import Attempt, Entry
from hotpool.shared.errors import (
    ContainerFailed,
    InvocationTimeout,
    NoCapacity,
    NotFound,
    StoreUnavailable,
    TooManyRequests,
)
from hotpool.shared.models import FunctionConfig, FunctionVersion
from hotpool.shared.settings import Settings

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
ACCEPTED = NOW - 10
SETTINGS = Settings.from_env(
    {},
    async_retry_delays_s="0.05,0.1",
    async_throttle_delay_s=0.05,
    async_throttle_max_delay_s=0.3,
    async_max_result_bytes=64,
)
REQUEST_ID = "0b0e5f6c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"


def version(name: str = "team.worker", **config: Any) -> FunctionVersion:
    return FunctionVersion(
        name, 3, "a" * 64, "code/a.zip", FunctionConfig(**config), datetime(2026, 1, 1, tzinfo=UTC)
    )


def attempt(number: int = 1, **state: Any) -> Attempt:
    """Attempt ``number`` of an event of team.worker, with ``state`` over the defaults."""
    values = {
        "request_id": REQUEST_ID,
        "function": "team.worker",
        "short_name": "worker",
        "namespace": "team",
        "status": "running",
        "event": orjson.dumps({"order": 7}).decode(),
        "accepted_at": str(ACCEPTED),
        "attempts": str(number),
        "trigger": "async",
    }
    values.update(
        {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in state.items()}
    )
    return Attempt(Entry("1-0", REQUEST_ID, "team.worker", "team"), number, values)


def failure(message: str = "boom") -> Outcome:
    body = {"errorMessage": message, "errorType": "ValueError", "stackTrace": ["line 1"]}
    return Outcome("function", orjson.dumps(body), "ValueError", message)


THROTTLE = Outcome.from_error(TooManyRequests("at its concurrency limit", retry_after_s=0))


def test_a_success_keeps_the_result_and_goes_to_on_success():
    fv = version(on_success="audit", on_failure="alarm")
    decision = decide(attempt(), fv, Outcome("success", b'{"done":1}'), SETTINGS, now=NOW)

    assert decision.status == "succeeded" and decision.condition == "Success"
    assert decision.fields["result"] == '{"done":1}' and decision.fields["version"] == 3
    assert "result_truncated" not in decision.fields
    assert decision.dead_letter is None
    assert decision.destination == "team.audit"  # the namespace's own function


def test_a_result_over_the_bound_is_not_kept():
    body = orjson.dumps("x" * 100)
    decision = decide(attempt(), version(), Outcome("success", body), SETTINGS, now=NOW)

    assert decision.status == "succeeded"
    assert "result" not in decision.fields
    assert decision.fields["result_truncated"] == 1
    assert decision.fields["result_bytes"] == len(body)


@pytest.mark.parametrize(("used", "delay"), [(0, 0.05), (1, 0.1)])
def test_a_function_error_with_retries_left_is_retried_after_its_delay(used, delay):
    earlier = [{"attempt": n, "kind": "function"} for n in range(1, used + 1)]
    state = {"retries": str(used), "errors": earlier} if used else {}
    decision = decide(
        attempt(used + 1, **state), version(async_retries=2), failure(), SETTINGS, now=NOW
    )

    assert decision.status == "retry"
    assert decision.due == pytest.approx(NOW + delay)
    assert decision.fields["retries"] == used + 1
    assert [e["attempt"] for e in decision.fields["errors"]] == list(range(1, used + 2))
    assert decision.fields["error"] == {
        "attempt": used + 1, "at": NOW, "kind": "function", "type": "ValueError",
        "message": "boom",
    }  # fmt: skip
    assert decision.dead_letter is None and decision.destination == ""


def test_retries_past_the_listed_delays_wait_the_last_one():
    one_delay = Settings.from_env({}, async_retry_delays_s="0.2")
    decision = decide(
        attempt(2, retries="1"), version(async_retries=2), failure(), one_delay, now=NOW
    )
    assert decision.status == "retry" and decision.due == pytest.approx(NOW + 0.2)


def test_exhausted_retries_fail_the_event_into_a_dead_letter_with_every_error():
    earlier = [
        {"attempt": 1, "at": NOW - 2, "kind": "function", "type": "ValueError", "message": "a"},
        {"attempt": 2, "at": NOW - 1, "kind": "function", "type": "ValueError", "message": "b"},
    ]
    fv = version(async_retries=2, on_success="audit", on_failure="alarm")
    decision = decide(attempt(3, retries="2", errors=earlier), fv, failure("c"), SETTINGS, now=NOW)

    assert decision.status == "failed"
    assert decision.fields["reason"] == "RetriesExhausted"
    assert decision.condition == "RetriesExhausted"
    assert decision.destination == "team.alarm"
    letter = decision.dead_letter
    assert letter is not None
    assert letter["reason"] == "RetriesExhausted" and letter["status"] == "failed"
    assert letter["request_id"] == REQUEST_ID
    assert letter["function"] == "worker" and letter["namespace"] == "team"
    assert letter["attempts"] == 3
    assert [e["message"] for e in letter["errors"]] == ["a", "b", "c"]
    assert letter["event"] == {"order": 7}
    assert letter["accepted_at"] == ACCEPTED and letter["dead_at"] == NOW


def test_no_retries_fail_at_the_first_error():
    decision = decide(attempt(), version(async_retries=0), failure(), SETTINGS, now=NOW)
    assert decision.status == "failed" and decision.fields["reason"] == "RetriesExhausted"
    assert decision.dead_letter is not None and decision.dead_letter["attempts"] == 1


def test_a_retry_that_would_come_after_the_maximum_age_expires_the_event():
    # accepted 59.97 s ago, max age 60 s: the retry due in 0.05 s would be too late
    fresh = attempt(accepted_at=str(NOW - 59.97))
    decision = decide(fresh, version(max_event_age_s=60), failure(), SETTINGS, now=NOW)

    assert decision.status == "expired"
    assert decision.fields["reason"] == "EventAgeExceeded"
    assert decision.condition == "EventAgeExceeded"
    assert decision.dead_letter is not None
    assert decision.dead_letter["reason"] == "EventAgeExceeded"


@pytest.mark.parametrize(
    ("throttles", "delay"), [(0, 0.05), (1, 0.1), (2, 0.2), (3, 0.3), (9, 0.3)]
)
def test_a_throttle_backs_off_doubling_up_to_the_cap_and_uses_no_retry(throttles, delay):
    # an event with no retries at all is still tried again after a throttle
    state = {"throttles": str(throttles)} if throttles else {}
    decision = decide(attempt(1, **state), version(async_retries=0), THROTTLE, SETTINGS, now=NOW)

    assert decision.status == "retry"
    assert decision.due == pytest.approx(NOW + delay)
    assert decision.fields["throttles"] == throttles + 1
    assert "retries" not in decision.fields
    assert decision.fields["attempts"] == 0  # a throttled attempt did not run
    assert decision.fields["error"]["kind"] == "throttle"


def test_a_throttle_waits_at_least_the_retry_after_it_was_given():
    told = Outcome.from_error(TooManyRequests("over its rate", retry_after_s=0.25))
    assert told.retry_after_s == 0.25
    decision = decide(attempt(), version(), told, SETTINGS, now=NOW)
    assert decision.status == "retry" and decision.due == pytest.approx(NOW + 0.25)


def test_a_throttle_past_the_maximum_age_expires_the_event():
    old = attempt(accepted_at=str(NOW - 59.99))
    decision = decide(old, version(max_event_age_s=60), THROTTLE, SETTINGS, now=NOW)
    assert decision.status == "expired" and decision.fields["reason"] == "EventAgeExceeded"


def test_an_event_too_old_to_run_expires_into_a_dead_letter():
    old = attempt(2, accepted_at=str(NOW - 61), retries="1")
    decision = decide(old, version(max_event_age_s=60), Outcome.expired(61), SETTINGS, now=NOW)

    assert decision.status == "expired" and decision.fields["reason"] == "EventAgeExceeded"
    assert decision.fields["attempts"] == 1  # this attempt never ran
    assert decision.dead_letter is not None and decision.dead_letter["attempts"] == 1
    assert decision.dead_letter["errors"][-1]["type"] == "EventAgeExceeded"


def test_a_deleted_function_fails_the_event_with_no_dead_letter():
    gone = Outcome.from_error(NotFound("function team.worker was deleted"))
    decision = decide(attempt(), None, gone, SETTINGS, now=NOW)

    assert gone.kind == "fatal"
    assert decision.status == "failed" and decision.fields["reason"] == "NotFound"
    assert decision.dead_letter is None and decision.destination == ""


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvocationTimeout("ran past its timeout"), "function"),
        (ContainerFailed("crashed"), "function"),
        (TooManyRequests("busy"), "throttle"),
        (NoCapacity("full"), "throttle"),
        (StoreUnavailable("Redis away"), "throttle"),
        (NotFound("gone"), "fatal"),
    ],
)
def test_platform_errors_are_throttles_and_a_timeout_or_crash_is_the_functions(error, kind):
    assert Outcome.from_error(error).kind == kind


def _record(fields: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(fields["event"])


def test_the_success_destination_record_is_lambdas():
    fv, target = version(on_success="audit"), version("team.audit")
    decision = decide(
        attempt(2, retries="1"), fv, Outcome("success", b'{"done":1}'), SETTINGS, now=NOW
    )
    fields = destination_event(attempt(2, retries="1"), fv, target, decision, SETTINGS)

    assert fields is not None
    assert fields["function"] == "team.audit" and fields["namespace"] == "team"
    assert fields["trigger"] == "destination" and fields["status"] == "queued"
    assert fields["depth"] == 1 and fields["source_request_id"] == REQUEST_ID
    record = _record(fields)
    assert set(record) == {
        "version", "timestamp", "requestContext", "requestPayload", "responseContext",
        "responsePayload",
    }  # fmt: skip
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["requestContext"] == {
        "requestId": REQUEST_ID,
        "functionArn": "arn:hotpool:lambda:us-east-1:000000000000:function:team.worker:3",
        "condition": "Success",
        "approximateInvokeCount": 2,
    }
    assert record["requestPayload"] == {"order": 7}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "3"}
    assert record["responsePayload"] == {"done": 1}


def test_the_failure_destination_record_carries_the_error():
    fv, target = version(async_retries=0, on_failure="alarm"), version("team.alarm")
    decision = decide(attempt(), fv, failure("bad order"), SETTINGS, now=NOW)
    record = _record(destination_event(attempt(), fv, target, decision, SETTINGS))

    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"] == {
        "statusCode": 200, "executedVersion": "3", "functionError": "Unhandled",
    }  # fmt: skip
    assert record["responsePayload"] == {
        "errorMessage": "bad order", "errorType": "ValueError", "stackTrace": ["line 1"],
    }  # fmt: skip


def test_a_chain_of_destinations_stops_at_the_depth_limit():
    fv, target = version(on_success="audit"), version("team.audit")
    last = attempt(depth=str(max_destination_depth - 1))
    decision = decide(last, fv, Outcome("success", b"1"), SETTINGS, now=NOW)
    fields = destination_event(last, fv, target, decision, SETTINGS)
    assert fields is not None and fields["depth"] == max_destination_depth

    too_deep = attempt(depth=str(max_destination_depth))
    assert destination_event(too_deep, fv, target, decision, SETTINGS) is None

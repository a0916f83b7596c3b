"""What an asynchronous attempt's outcome means, as Lambda's asynchronous invocation has it.

``decide`` is a pure function of the attempt, its function, the outcome and ``now``:

- success: the event ends ``succeeded``; the result is kept (up to a bound) for its status.
- a function error (an exception, a timeout, an OOM kill, a crash): retried ``async_retries``
  times after ``HOTPOOL_ASYNC_RETRY_DELAYS_S``, then ``failed`` with "RetriesExhausted".
- a throttle or a platform error (429, 503): retried with a doubling backoff that uses up no
  retry, until the event is ``max_event_age_s`` old.
- an event that would be tried past its maximum age ends ``expired`` ("EventAgeExceeded").
- anything else the caller must fix (the function was deleted) ends ``failed`` at once.

An event that fails or expires becomes a dead letter with every attempt's error; ``on_success``
and ``on_failure`` receive Lambda's destination record as a new asynchronous event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hotpool.main_server.invoke import Invocation
from hotpool.shared.async_queue import Attempt
from hotpool.shared.errors import (
    ClientError,
    ContainerFailed,
    FunctionError,
    HotpoolError,
    InvocationTimeout,
    TooManyRequests,
)
from hotpool.shared.models import FunctionVersion, qualify
from hotpool.shared.settings import Settings

# Lambda stops a chain of functions calling each other after this many hops (recursive loop
# detection); a destination chain does too
max_destination_depth = 16
ARN_TEMPLATE = "arn:hotpool:lambda:{region}:000000000000:function:{name}:{version}"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: ``kind`` is success, function, throttle, fatal or expired."""

    kind: str
    body: bytes = b"null"  # the result (success) or Lambda's error body (function)
    error_type: str = ""
    message: str = ""
    retry_after_s: float = 0.0

    @classmethod
    def from_invocation(cls, result: Invocation) -> Outcome:
        if result.function_error is None:
            return cls("success", result.body)
        error = orjson.loads(result.body)
        return cls(
            "function", result.body, result.function_error, str(error.get("errorMessage", ""))
        )

    @classmethod
    def from_error(cls, exc: HotpoolError) -> Outcome:
        if isinstance(exc, (FunctionError, InvocationTimeout, ContainerFailed)):
            error_type = exc.error_type if isinstance(exc, FunctionError) else exc.code
            body = {"errorMessage": exc.message, "errorType": error_type, "stackTrace": []}
            return cls("function", orjson.dumps(body), error_type, exc.message)
        if isinstance(exc, TooManyRequests):
            return cls("throttle", b"null", exc.code, exc.message, exc.retry_after_s)
        if isinstance(exc, ClientError):
            return cls("fatal", b"null", exc.code, exc.message)
        return cls("throttle", b"null", exc.code, exc.message)  # a platform error

    @classmethod
    def expired(cls, age_s: float) -> Outcome:
        return cls("expired", b"null", "EventAgeExceeded", f"the event is {age_s:.0f} s old")


@dataclass
class Decision:
    """How the attempt ends: ``status`` is retry, succeeded, failed or expired."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)
    due: float = 0.0
    condition: str = ""  # Lambda's: Success, RetriesExhausted, EventAgeExceeded
    dead_letter: dict[str, Any] | None = None
    destination: str = ""  # the qualified function that gets the destination record
    outcome: Outcome | None = None


def decide(
    attempt: Attempt,
    fv: FunctionVersion | None,
    outcome: Outcome,
    settings: Settings,
    *,
    now: float,
) -> Decision:
    """The end of an attempt (see the module's docstring)."""
    state = attempt.state
    accepted_at = float(state.get("accepted_at", now))
    errors = attempt.errors()
    if outcome.kind == "success":
        return _succeeded(attempt, fv, outcome, settings)
    ran = outcome.kind != "expired"
    errors.append(
        {
            "attempt": attempt.number, "at": now, "kind": outcome.kind,
            "type": outcome.error_type, "message": outcome.message[:1000],
        }
    )  # fmt: skip
    fields: dict[str, Any] = {"errors": errors, "error": errors[-1]}
    if not ran:  # expired before it was sent: this attempt did not run
        fields["attempts"] = attempt.number - 1
    if fv is not None and outcome.kind in ("function", "throttle"):
        expiry = accepted_at + fv.config.max_event_age_s
        if outcome.kind == "function":
            used = int(state.get("retries", "0"))
            if used < fv.config.async_retries:
                delays = settings.async_retry_delays
                due = now + delays[min(used, len(delays) - 1)]
                if due <= expiry:
                    return Decision("retry", {**fields, "retries": used + 1}, due, outcome=outcome)
                return _dead(attempt, fv, "expired", "EventAgeExceeded", fields, outcome, now)
        else:
            throttles = int(state.get("throttles", "0"))
            backoff = settings.async_throttle_delay_s * 2**throttles
            delay = min(settings.async_throttle_max_delay_s, max(backoff, outcome.retry_after_s))
            if now + delay <= expiry:
                retry = {**fields, "throttles": throttles + 1, "attempts": attempt.number - 1}
                return Decision("retry", retry, now + delay, outcome=outcome)
            return _dead(attempt, fv, "expired", "EventAgeExceeded", fields, outcome, now)
        return _dead(attempt, fv, "failed", "RetriesExhausted", fields, outcome, now)
    if outcome.kind == "expired":
        return _dead(attempt, fv, "expired", "EventAgeExceeded", fields, outcome, now)
    # the caller's to fix: nothing to retry; a deleted function keeps no dead letters
    reason = outcome.error_type or "Failed"
    return _dead(attempt, fv, "failed", reason, fields, outcome, now, letter=fv is not None)


def _succeeded(
    attempt: Attempt, fv: FunctionVersion | None, outcome: Outcome, settings: Settings
) -> Decision:
    fields: dict[str, Any] = {"result_bytes": len(outcome.body)}
    if len(outcome.body) <= settings.async_max_result_bytes:
        fields["result"] = outcome.body.decode()
    else:
        fields["result_truncated"] = 1
    if fv is not None:
        fields["version"] = fv.version
    target = fv.config.on_success if fv is not None else ""
    return Decision(
        "succeeded", fields, condition="Success", outcome=outcome,
        destination=qualify(fv.namespace, target) if fv is not None and target else "",
    )  # fmt: skip


def _dead(
    attempt: Attempt,
    fv: FunctionVersion | None,
    status: str,
    reason: str,
    fields: dict[str, Any],
    outcome: Outcome,
    now: float,
    *,
    letter: bool = True,
) -> Decision:
    state = attempt.state
    fields = {**fields, "reason": reason}
    dead_letter = None
    if letter:
        dead_letter = {
            "request_id": attempt.entry.request_id,
            "function": state.get("short_name", attempt.entry.function),
            "namespace": attempt.entry.namespace,
            "reason": reason,
            "status": status,
            "attempts": int(fields.get("attempts", attempt.number)),
            "errors": fields["errors"],
            "accepted_at": float(state.get("accepted_at", now)),
            "dead_at": now,
            "trigger": state.get("trigger", "async"),
            "event": orjson.loads(state.get("event", "null")),
        }
    target = fv.config.on_failure if fv is not None else ""
    condition = "RetriesExhausted" if reason != "EventAgeExceeded" else reason
    return Decision(
        status, fields, condition=condition, dead_letter=dead_letter, outcome=outcome,
        destination=qualify(fv.namespace, target) if fv is not None and target else "",
    )  # fmt: skip


def destination_event(
    attempt: Attempt,
    fv: FunctionVersion,
    target: FunctionVersion,
    decision: Decision,
    settings: Settings,
) -> dict[str, Any] | None:
    """The state of the asynchronous event that carries Lambda's destination record to
    ``target``; None past the chain's depth limit."""
    depth = int(attempt.state.get("depth", "0")) + 1
    if depth > max_destination_depth:
        return None
    outcome = decision.outcome
    assert outcome is not None
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": str(fv.version)}
    if decision.condition == "Success":
        payload = orjson.loads(outcome.body)
    else:
        response_context["functionError"] = "Unhandled"
        payload = orjson.loads(outcome.body) if outcome.kind == "function" else {
            "errorMessage": outcome.message, "errorType": outcome.error_type,
        }  # fmt: skip
    now = datetime.now(UTC)
    record = {
        "version": "1.0",
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": attempt.entry.request_id,
            "functionArn": ARN_TEMPLATE.format(
                region=settings.function_region, name=fv.name, version=fv.version
            ),
            "condition": decision.condition,
            "approximateInvokeCount": int(decision.fields.get("attempts", attempt.number)),
        },
        "requestPayload": orjson.loads(attempt.state.get("event", "null")),
        "responseContext": response_context,
        "responsePayload": payload,
    }
    return new_event(
        target, orjson.dumps(record).decode(), now.timestamp(),
        trigger="destination", depth=depth, source_request_id=attempt.entry.request_id,
    )  # fmt: skip


def new_event(
    fv: FunctionVersion, event: str, now: float, *, trigger: str = "async", **extra: Any
) -> dict[str, Any]:
    """The state of a newly accepted event of ``fv``."""
    return {
        "request_id": extra.pop("request_id", None) or str(uuid.uuid4()),
        "function": fv.name,
        "short_name": fv.short_name,
        "namespace": fv.namespace,
        "status": "queued",
        "event": event,
        "accepted_at": now,
        "attempts": 0,
        "trigger": trigger,
        **extra,
    }

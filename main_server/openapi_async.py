"""The asynchronous invocation part of the OpenAPI document (``main_server.async_api``): the
202 form of ``POST /v1/functions/{name}/invoke``, an event's status, the dead letters, the
function settings of asynchronous calls and the queue in ``/system/status``.

``main_server.openapi`` merges these in; patterns come from the checks in ``async_api``.
"""

from __future__ import annotations

from hotpool.main_server.async_api import REQUEST_ID_RE, max_dead_letters_page, max_redrive_ids
from hotpool.main_server.openapi_schemas import (
    NAME_PATTERN,
    Schema,
    answer,
    json_content,
    object_schema,
    query_param,
    ref,
    responses,
)
from hotpool.shared.models import ASYNC_RETRIES_RANGE, MAX_EVENT_AGE_S_RANGE

REQUEST_ID_PATTERN = REQUEST_ID_RE.pattern.replace(r"\Z", "$")
STATUSES = ("queued", "running", "succeeded", "failed", "expired")
_NAME = {"$ref": "#/components/parameters/name"}
_NAMESPACE = {"$ref": "#/components/parameters/namespace"}


def _any_case(*words: str) -> str:
    """A pattern of ``words`` in any letter case (the server compares them case-blind)."""
    spelled = ("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in w) for w in words)
    return f"^({'|'.join(spelled)})$"


def _request_id_param(description: str) -> Schema:
    return {
        "name": "request_id",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
    }


def settings_params() -> list[Schema]:
    """The function settings of asynchronous calls, as deploy parameters."""
    retries_low, retries_high = ASYNC_RETRIES_RANGE
    age_low, age_high = MAX_EVENT_AGE_S_RANGE
    destination = {"type": "string", "pattern": f"^$|{NAME_PATTERN}", "default": ""}
    return [
        query_param(
            "async_retries",
            {"type": "integer", "minimum": retries_low, "maximum": retries_high, "default": 2},
            "Asynchronous calls: how often an event is tried again after a function error "
            "(throttles and platform errors do not count).",
        ),
        query_param(
            "max_event_age_s",
            {"type": "integer", "minimum": age_low, "maximum": age_high, "default": age_high},
            "Asynchronous calls: the oldest an event may be when it is tried, in seconds; an "
            "older one ends `expired` in the dead letters.",
        ),
        query_param(
            "on_success",
            destination,
            "Asynchronous calls: a function of the same namespace (not this one) that gets "
            "Lambda's destination record of every success; empty for none.",
        ),
        query_param(
            "on_failure",
            destination,
            "Asynchronous calls: a function of the same namespace (not this one) that gets "
            "Lambda's destination record of every event that failed or expired; empty for none.",
        ),
    ]


def invoke_parts() -> Schema:
    """The invoke operation's description and parameters: what makes a call asynchronous,
    and its Idempotency-Key."""
    kind = {"type": "string", "pattern": _any_case("Event", "RequestResponse")}
    kind_text = (
        "`Event`: queue the event and answer 202 at once (an asynchronous call); "
        "`RequestResponse` (the default): wait for the result. Any letter case."
    )
    parameters = [
        {"name": "X-Hotpool-Invocation-Type", "in": "header", "required": False,
         "description": kind_text, "schema": kind},
        {"name": "X-Amz-Invocation-Type", "in": "header", "required": False,
         "description": f"Lambda's name of `X-Hotpool-Invocation-Type`. {kind_text}",
         "schema": kind},
        query_param(
            "async",
            {"type": "string", "pattern": _any_case("true", "false", "1", "0")},
            "`true` (or `1`): the same as `X-Hotpool-Invocation-Type: Event`.",
        ),
        # no pattern: a synchronous call ignores the header, so only the text can say it
        {"name": "Idempotency-Key", "in": "header", "required": False,
         "description": "Asynchronous calls: 1-256 printable ASCII characters (else 400). A "
         "repeat of this key on the same function within 24 h "
         "(HOTPOOL_ASYNC_IDEMPOTENCY_TTL_S) is not queued again: it answers 202 with the first "
         "request's id and `X-Hotpool-Idempotent-Replay: true`. Synchronous calls ignore it.",
         "schema": {"type": "string"}},
    ]  # fmt: skip
    description = (
        "Synchronous by default. With `X-Hotpool-Invocation-Type: Event` (or `?async=true`) "
        "the call is asynchronous: 202 once the event is durably queued, then run at least "
        "once, with the function's `async_retries` and `max_event_age_s`."
    )
    return {"description": description, "parameters": parameters}


def accepted_response() -> Schema:
    """The 202 of an asynchronous invoke."""
    return {
        "description": "An asynchronous call: the event is durably queued. Poll `status_url`. "
        "A namespace with HOTPOOL_ASYNC_MAX_QUEUED_PER_NAMESPACE events queued answers 429 "
        "with `Retry-After` instead.",
        "headers": {
            "X-Hotpool-Request-Id": {"$ref": "#/components/headers/RequestId"},
            "Location": {
                "description": "The status URL's path.",
                "required": True,
                "schema": {"type": "string"},
            },
            "X-Hotpool-Idempotent-Replay": {
                "description": "Present on a repeat of an Idempotency-Key: nothing was queued.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
        "content": json_content(ref("Accepted")),
    }


def schemas() -> dict[str, Schema]:
    """The data shapes of asynchronous calls, by name."""
    string, integer, number = {"type": "string"}, {"type": "integer"}, {"type": "number"}
    epoch = {"type": "number", "description": "Seconds since the epoch."}
    attempt_error = object_schema(
        {
            "attempt": integer,
            "at": epoch,
            "kind": {"type": "string", "enum": ["function", "throttle", "fatal", "expired"]},
            "type": string,
            "message": string,
        }
    )
    errors = {"type": "array", "items": ref("AttemptError")}
    trigger = {"type": "string", "description": "`async`, or `destination` for a record."}
    return {
        "Accepted": object_schema(
            {
                "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
                "status_url": {"type": "string", "description": "`/v1/invocations/{id}`."},
            }
        ),
        "AttemptError": attempt_error,
        "InvocationStatus": object_schema(
            {
                "request_id": string,
                "function": string,
                "namespace": string,
                "status": {"type": "string", "enum": list(STATUSES)},
                "trigger": trigger,
                "attempts": {**integer, "description": "Attempts that reached the function."},
                "retries": {**integer, "description": "Retries after function errors."},
                "throttles": {**integer, "description": "Retries after throttles."},
                "version": integer,
                "result_bytes": integer,
                "accepted_at": epoch,
                "started_at": epoch,
                "finished_at": epoch,
                "next_attempt_at": epoch,
                "result": {"description": "The handler's return value (bounded)."},
                "result_truncated": {"type": "boolean", "enum": [True]},
                "error": ref("AttemptError"),
                "errors": errors,
                "reason": {
                    "type": "string",
                    "description": "Why a failed or expired event ended: RetriesExhausted, "
                    "EventAgeExceeded, or the error that cannot be retried.",
                },
            },
            required=["request_id", "function", "namespace", "status", "trigger"],
        ),
        "DeadLetter": object_schema(
            {
                "request_id": string,
                "function": string,
                "namespace": string,
                "status": {"type": "string", "enum": ["failed", "expired"]},
                "reason": string,
                "attempts": integer,
                "errors": errors,
                "accepted_at": epoch,
                "dead_at": epoch,
                "trigger": trigger,
                "event": {"description": "The event as it was accepted."},
            },
            additionalProperties=True,
        ),
        "DeadLetterList": object_schema(
            {
                "function": string,
                "namespace": string,
                "dead_letters": {"type": "array", "items": ref("DeadLetter")},
            }
        ),
        "Redriven": object_schema(
            {
                "redriven": {"type": "array", "items": string},
                "not_found": {"type": "array", "items": string},
            }
        ),
        "DeadLetterDeleted": object_schema({"deleted": string}),
        "AsyncQueueStatus": object_schema(
            {
                "namespaces": {
                    "type": "object",
                    "additionalProperties": object_schema(
                        {"queued": integer, "oldest_age_s": number}
                    ),
                },
                "stream": integer,
                "pending": integer,
                "delayed": integer,
                "in_flight_here": integer,
            }
        ),
    }


def paths() -> dict[str, Schema]:
    """An event's status and the dead-letter routes."""
    redrive_body = object_schema(
        {"request_ids": {"type": "array", "items": {"type": "string"}, "maxItems": max_redrive_ids}}
    )
    return {
        "/v1/invocations/{request_id}": {
            "get": {
                "operationId": "getAsyncInvocation",
                "summary": "An asynchronous call's status, attempts, result or errors",
                "description": "Kept HOTPOOL_ASYNC_RESULT_TTL_S (1 h) after it ends. Needs "
                "`read` or `invoke` on the function; another tenant's id is a 404.",
                "parameters": [_request_id_param("The `request_id` of the 202.")],
                "responses": responses(
                    {200: answer("The status.", ref("InvocationStatus"))}, 403, 404
                ),
            },
        },
        "/v1/functions/{name}/dead-letters": {
            "parameters": [_NAME, _NAMESPACE],
            "get": {
                "operationId": "listDeadLetters",
                "summary": "Asynchronous events that failed or expired, oldest first",
                "parameters": [
                    query_param(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": max_dead_letters_page,
                            "default": 100,
                        },
                        "How many at most.",
                    ),
                ],
                "responses": responses(
                    {200: answer("The dead letters.", ref("DeadLetterList"))}, 400, 403, 404
                ),
            },
        },
        "/v1/functions/{name}/dead-letters/redrive": {
            "parameters": [_NAME, _NAMESPACE],
            "post": {
                "operationId": "redriveDeadLetters",
                "summary": "Queue dead letters again, with fresh retries and age",
                "requestBody": {
                    "required": False,
                    "description": f"No body: all of them (up to {max_redrive_ids}); or the "
                    "ids to redrive.",
                    "content": json_content(redrive_body),
                },
                "responses": responses(
                    {200: answer("What was queued again.", ref("Redriven"))}, 400, 403, 404, 413
                ),
            },
        },
        "/v1/functions/{name}/dead-letters/{request_id}": {
            "parameters": [_NAME, _request_id_param("The dead letter's id."), _NAMESPACE],
            "delete": {
                "operationId": "deleteDeadLetter",
                "summary": "Delete one dead letter",
                "responses": responses(
                    {200: answer("What was deleted.", ref("DeadLetterDeleted"))}, 400, 403, 404
                ),
            },
        },
    }

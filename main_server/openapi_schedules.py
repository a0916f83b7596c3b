"""The schedule routes of the OpenAPI document (``main_server.openapi`` merges them in)."""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import (
    NAME_PATTERN,
    Schema,
    answer,
    json_content,
    object_schema,
    ref,
    responses,
)
from hotpool.shared.schedule_expr import MAX_EXPRESSION_CHARS
from hotpool.shared.schedules import MAX_SCHEDULE_EVENT_BYTES

_FUNCTION = {"$ref": "#/components/parameters/name"}
_NAMESPACE = {"$ref": "#/components/parameters/namespace"}
_SCHEDULE = {
    "name": "schedule",
    "in": "path",
    "required": True,
    "description": "The schedule's name (unique per function).",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
_EXPRESSION = {
    "type": "string",
    "maxLength": MAX_EXPRESSION_CHARS,
    "description": "`rate(5 minutes)` (units seconds, minutes, hours, days), EventBridge "
    "`cron(0 12 * * ? *)` (minutes hours day-of-month month day-of-week year; days of the "
    "week 1-7 from Sunday), a 5-field Unix cron `0 12 * * *`, or one-time "
    "`at(2026-12-31T23:59:00)`.",
    "example": "cron(0 12 * * ? *)",
}
_TIMEZONE = {
    "type": "string",
    "description": "The IANA time zone of cron fields and at() times. A wall time skipped by "
    "a daylight saving change does not fire; one repeated fires once.",
    "default": "UTC",
    "example": "Europe/Berlin",
}
_EVENT = {
    "nullable": True,
    "description": "A fixed event (any JSON, at most "
    f"{MAX_SCHEDULE_EVENT_BYTES // 1024} KiB); null or absent: EventBridge's Scheduled Event.",
}


def schedule_schemas() -> dict[str, Schema]:
    """The schedule data shapes, by name."""
    time = {"type": "string", "format": "date-time"}
    schedule = object_schema(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "function": {"type": "string", "pattern": NAME_PATTERN},
            "namespace": {"type": "string", "pattern": NAME_PATTERN},
            "expression": _EXPRESSION,
            "timezone": _TIMEZONE,
            "event": _EVENT,
            "enabled": {"type": "boolean"},
            "created_at": time,
            "updated_at": time,
            "next_fires": {
                "type": "array",
                "items": time,
                "description": "The next fire times (UTC); none while disabled.",
            },
            # the scheduler's progress
            "last_fired": {**time, "nullable": True, "description": "The latest tick fired."},
            "fires": {"type": "integer", "description": "Ticks fired."},
            "missed": {
                "type": "integer",
                "description": "Ticks not fired: older than the catch-up window, or their "
                "function was gone.",
            },
        }
    )
    body = object_schema(
        {
            "expression": _EXPRESSION,
            "timezone": _TIMEZONE,
            "event": _EVENT,
            "enabled": {"type": "boolean", "default": True},
        },
        required=["expression"],
        additionalProperties=False,
    )
    return {
        "Schedule": schedule,
        "ScheduleBody": body,
        "ScheduleList": object_schema({"schedules": {"type": "array", "items": ref("Schedule")}}),
    }


def schedule_paths() -> dict[str, Schema]:
    """The ``/v1/functions/{name}/schedules`` routes."""
    one = answer("The schedule.", ref("Schedule"))
    created = answer("Created.", ref("Schedule"))
    return {
        "/v1/functions/{name}/schedules": {
            "parameters": [_FUNCTION, _NAMESPACE],
            "get": {
                "operationId": "listSchedules",
                "summary": "The function's schedules, by name",
                "responses": responses(
                    {200: answer("The schedules.", ref("ScheduleList"))}, 400, 403, 404
                ),
            },
        },
        "/v1/functions/{name}/schedules/{schedule}": {
            "parameters": [_FUNCTION, _SCHEDULE, _NAMESPACE],
            "put": {
                "operationId": "putSchedule",
                "summary": "Create or replace a schedule: the function is invoked "
                "asynchronously at each fire time",
                "description": "A PUT replaces the whole schedule: fields left out take their "
                "defaults. A namespace holds at most HOTPOOL_SCHEDULE_MAX_PER_NAMESPACE "
                "schedules (429 past it).",
                "requestBody": {"required": True, "content": json_content(ref("ScheduleBody"))},
                "responses": responses({201: created, 200: one}, 400, 403, 404, 413, 429),
            },
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule, with its next fire times",
                "responses": responses({200: one}, 400, 403, 404),
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete a schedule (ticks not yet fired never fire)",
                "responses": responses({204: {"description": "Deleted."}}, 400, 403, 404),
            },
        },
    }

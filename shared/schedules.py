"""Scheduled functions: a schedule as stored, as a PUT body makes it, and the event it fires.

A schedule belongs to one function (``namespace``, qualified ``function``) and has a name
unique per function. Unless it carries a fixed event, each fire sends EventBridge's
Scheduled Event, whose ``id`` is derived from the schedule and the tick: a tick fired again
(a new leader re-accepting a claim) carries the same id, so a function can tell.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from hotpool.shared.errors import InvalidEvent, InvalidRequest, PayloadTooLarge
from hotpool.shared.models import split_qualified, validate_name
from hotpool.shared.schedule_expr import ScheduleExpression

# EventBridge Scheduler's limit on a target's input; HOTPOOL_MAX_EVENT_BYTES if smaller
MAX_SCHEDULE_EVENT_BYTES = 256 * 1024
# the account in the Scheduled Event and its rule ARN: hotpool has none (LocalStack and
# moto use the same placeholder)
LOCAL_ACCOUNT = "000000000000"
BODY_FIELDS = ("expression", "timezone", "event", "enabled")
# event ids: uuid5 in a namespace of hotpool's own
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://hotpool.invalid/schedule-events")


@dataclass(frozen=True)
class Schedule:
    """One schedule of one function."""

    id: str  # uuid4 hex, new on create; stays across updates; Redis keys use it
    namespace: str
    function: str  # qualified ("fn" in the default namespace, "ns.fn" elsewhere)
    name: str
    expression: str
    timezone: str
    event: str | None  # fixed event JSON text; None = the EventBridge Scheduled Event
    enabled: bool
    created_at: float
    updated_at: float

    def parsed(self, min_interval_s: float) -> ScheduleExpression:
        """The expression, its rate() ticks anchored at the schedule's creation."""
        return ScheduleExpression.parse(
            self.expression, self.timezone, min_interval_s=min_interval_s, anchor=self.created_at
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's view (the event as JSON, times as ISO 8601)."""
        return {
            "name": self.name,
            "function": split_qualified(self.function)[1],
            "namespace": self.namespace,
            "expression": self.expression,
            "timezone": self.timezone,
            "event": None if self.event is None else orjson.loads(self.event),
            "enabled": self.enabled,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
        }


def iso_time(t: float) -> str:
    """Epoch seconds as EventBridge writes times: ``2026-11-30T12:00:00Z`` (UTC, no fraction
    unless there is one)."""
    moment = datetime.fromtimestamp(t, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def event_id(schedule_id: str, tick: float) -> str:
    """The Scheduled Event id of one tick of one schedule: the same on every fire of it."""
    return str(uuid.uuid5(_EVENT_IDS, f"{schedule_id}:{round(tick * 1000)}"))


def scheduled_event(
    schedule: Schedule, tick: float, *, region: str, account: str = LOCAL_ACCOUNT
) -> dict[str, Any]:
    """EventBridge's Scheduled Event for ``tick`` (the scheduled time, not the fire time)."""
    return {
        "version": "0",
        "id": event_id(schedule.id, tick),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": iso_time(tick),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{schedule.name}"],
        "detail": {},
    }


def event_body(
    schedule: Schedule, tick: float, *, region: str, account: str = LOCAL_ACCOUNT
) -> bytes:
    """What a fire of ``tick`` sends the function: the fixed event, else the Scheduled Event."""
    if schedule.event is not None:
        return schedule.event.encode()
    return orjson.dumps(scheduled_event(schedule, tick, region=region, account=account))


@dataclass(frozen=True)
class ScheduleLimits:
    """What a PUT body may ask for (from the settings)."""

    min_interval_s: float
    max_event_bytes: int
    max_event_depth: int


def from_body(
    body: Any,
    *,
    namespace: str,
    function: str,
    name: str,
    existing: Schedule | None,
    now: float,
    limits: ScheduleLimits,
) -> Schedule:
    """The schedule a PUT body asks for: created (a new id, created ``now``) or replacing
    ``existing`` (same id and creation; absent fields take their defaults, as a PUT does)."""
    validate_name(name, "schedule name")
    if not isinstance(body, Mapping):
        raise InvalidRequest(
            'the body must be a JSON object, e.g. {"expression": "rate(5 minutes)"}'
        )
    if unknown := sorted(set(body) - set(BODY_FIELDS)):
        raise InvalidRequest(
            f"unknown field(s) {', '.join(str(u)[:40] for u in unknown)}; "
            f"known: {', '.join(BODY_FIELDS)}"
        )
    expression = body.get("expression")
    # null is "left out", as for event: the field takes its default
    timezone = "UTC" if body.get("timezone") is None else body["timezone"]
    enabled = True if body.get("enabled") is None else body["enabled"]
    if not isinstance(expression, str):
        raise InvalidRequest('expression is required, a string such as "rate(5 minutes)"')
    if not isinstance(enabled, bool):
        raise InvalidRequest("enabled must be true or false")
    created_at = existing.created_at if existing is not None else now
    parsed = ScheduleExpression.parse(
        expression, timezone, min_interval_s=limits.min_interval_s, anchor=created_at
    )
    changed = existing is None or (parsed.text, parsed.timezone) != (
        existing.expression,
        existing.timezone,
    )
    if changed and enabled and parsed.next_after(now) is None:
        raise InvalidRequest(f"{parsed.text} names no time after now: it would never fire")
    return Schedule(
        id=existing.id if existing is not None else uuid.uuid4().hex,
        namespace=namespace,
        function=function,
        name=name,
        expression=parsed.text,
        timezone=parsed.timezone,
        event=_event_text(body.get("event"), limits),
        enabled=enabled,
        created_at=created_at,
        updated_at=now,
    )


def _event_text(event: Any, limits: ScheduleLimits) -> str | None:
    """A fixed event as compact JSON text, within the size and nesting limits."""
    if event is None:
        return None
    text = orjson.dumps(event)
    limit = min(limits.max_event_bytes, MAX_SCHEDULE_EVENT_BYTES)
    if len(text) > limit:
        raise PayloadTooLarge(f"the event is {len(text)} bytes as JSON; the limit is {limit}")
    if _depth(event) > limits.max_event_depth:
        raise InvalidEvent(f"the event nests deeper than {limits.max_event_depth} levels")
    return text.decode()


def _depth(value: Any) -> int:
    deepest = 0
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in children)
    return deepest

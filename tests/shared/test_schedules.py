"""Tests of shared.schedules: the schedule a PUT body makes, and the EventBridge Scheduled
Event a fire sends."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from hotpool.shared.errors import InvalidEvent, InvalidRequest, PayloadTooLarge
from hotpool.shared.schedules import (
    MAX_SCHEDULE_EVENT_BYTES,
    Schedule,
    ScheduleLimits,
    event_body,
    from_body,
    iso_time,
    scheduled_event,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 11, 58, 30, tzinfo=UTC).timestamp()
TICK = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
LIMITS = ScheduleLimits(min_interval_s=1, max_event_bytes=6 * 1024 * 1024, max_event_depth=8)


def make(body, *, existing=None, now=NOW, name="nightly", limits=LIMITS) -> Schedule:
    return from_body(
        body, namespace="acme", function="acme.report", name=name, existing=existing, now=now,
        limits=limits,
    )  # fmt: skip


def test_the_scheduled_event_has_eventbridges_fields_and_the_scheduled_time():
    schedule = make({"expression": "cron(0 12 * * ? *)"})

    event = scheduled_event(schedule, TICK, region="eu-west-1", account="123456789012")

    # the field set and order of EventBridge's Scheduled Event (AWS's example event)
    assert list(event) == [
        "version", "id", "detail-type", "source", "account", "time", "region", "resources",
        "detail",
    ]  # fmt: skip
    assert event | {"id": None} == {
        "version": "0", "id": None, "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-30T12:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/nightly"], "detail": {},
    }  # fmt: skip
    assert scheduled_event(schedule, TICK, region="r")["account"] == "000000000000"


def test_the_event_id_is_the_same_for_one_tick_and_differs_between_ticks_and_schedules():
    first = make({"expression": "rate(1 minute)"})
    other = make({"expression": "rate(1 minute)"})

    def event_of(schedule, tick):
        return scheduled_event(schedule, tick, region="us-east-1")["id"]

    assert event_of(first, TICK) == event_of(first, TICK)
    assert event_of(first, TICK) != event_of(first, TICK + 60)
    assert event_of(first, TICK) != event_of(other, TICK)
    assert len(event_of(first, TICK)) == 36  # a UUID, as EventBridge's ids are


def test_a_fire_sends_the_fixed_event_or_else_the_scheduled_event():
    fixed = make({"expression": "rate(1 hour)", "event": {"job": "report", "n": [1, 2]}})
    default = make({"expression": "rate(1 hour)"})

    assert orjson.loads(event_body(fixed, TICK, region="us-east-1")) == {
        "job": "report",
        "n": [1, 2],
    }
    body = orjson.loads(event_body(default, TICK, region="us-east-1"))
    assert body["detail-type"] == "Scheduled Event" and body["time"] == "2026-11-30T12:00:00Z"
    assert make({"expression": "rate(1 hour)", "event": "text"}).event == '"text"'
    assert make({"expression": "rate(1 hour)", "event": 0}).event == "0"


def test_a_new_schedule_gets_an_id_and_its_creation_and_defaults():
    schedule = make({"expression": " rate(5 minutes) "})

    assert len(schedule.id) == 32 and int(schedule.id, 16) >= 0
    assert (schedule.namespace, schedule.function, schedule.name) == (
        "acme", "acme.report", "nightly",
    )  # fmt: skip
    assert (schedule.expression, schedule.timezone, schedule.event, schedule.enabled) == (
        "rate(5 minutes)", "UTC", None, True,
    )  # fmt: skip
    assert schedule.created_at == schedule.updated_at == NOW
    assert schedule.to_dict() == {
        "name": "nightly", "function": "report", "namespace": "acme",
        "expression": "rate(5 minutes)", "timezone": "UTC", "event": None, "enabled": True,
        "created_at": "2026-11-30T11:58:30Z", "updated_at": "2026-11-30T11:58:30Z",
    }  # fmt: skip


def test_an_update_keeps_id_and_creation_and_replaces_the_rest():
    first = make(
        {"expression": "cron(0 9 ? * MON-FRI *)", "timezone": "Europe/Berlin", "event": {"a": 1}}
    )

    second = make({"expression": "rate(7 minutes)", "enabled": False}, existing=first, now=NOW + 99)

    assert (second.id, second.created_at, second.updated_at) == (first.id, NOW, NOW + 99)
    # a PUT replaces: what it leaves out takes its default
    assert (second.timezone, second.event, second.enabled) == ("UTC", None, False)
    # rate() ticks stay anchored at the creation across updates
    assert second.parsed(1).next_after(NOW + 99) == NOW + 7 * 60


def test_a_null_timezone_or_enabled_takes_its_default_as_a_null_event_does():
    schedule = make({"expression": "rate(5 minutes)", "timezone": None, "enabled": None})

    assert (schedule.timezone, schedule.event, schedule.enabled) == ("UTC", None, True)


def test_parsed_anchors_rate_ticks_at_the_creation():
    schedule = make({"expression": "rate(1 minute)"})

    assert schedule.parsed(1).next_after(NOW + 1) == NOW + 60


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        ([], InvalidRequest, "the body must be a JSON object"),
        ("rate(5 minutes)", InvalidRequest, "the body must be a JSON object"),
        ({}, InvalidRequest, "expression is required"),
        ({"expression": 5}, InvalidRequest, "expression is required"),
        ({"expression": "rate(5 minutes)", "target": "x"}, InvalidRequest,
         "unknown field(s) target; known: expression, timezone, event, enabled"),
        ({"expression": "rate(5 minutes)", "enabled": "yes"}, InvalidRequest,
         "enabled must be true or false"),
        ({"expression": "rate(5 minutes)", "timezone": "../../etc/passwd"}, InvalidRequest,
         "is not an IANA time zone name"),
        ({"expression": "rate(5 minutes)", "timezone": 3}, InvalidRequest,
         "is not an IANA time zone name"),
        ({"expression": "every minute"}, InvalidRequest, "is not a schedule expression"),
        ({"expression": "at(2026-11-30T11:00:00)"}, InvalidRequest,
         "names no time after"),
        ({"expression": "rate(1 hour)", "event": {"a": [[[[[[[[[1]]]]]]]]]}}, InvalidEvent,
         "the event nests deeper than 8 levels"),
        ({"expression": "rate(1 hour)", "event": "x" * MAX_SCHEDULE_EVENT_BYTES},
         PayloadTooLarge, f"; the limit is {MAX_SCHEDULE_EVENT_BYTES}"),
    ],
)  # fmt: skip
def test_a_bad_body_is_refused_saying_what_is_wrong(body, error, says):
    with pytest.raises(error) as info:
        make(body)

    assert says in info.value.message


def test_the_event_limit_is_the_smaller_of_the_setting_and_eventbridges():
    small = ScheduleLimits(min_interval_s=1, max_event_bytes=100, max_event_depth=8)

    with pytest.raises(PayloadTooLarge, match="the event is 102 bytes as JSON; the limit is 100"):
        make({"expression": "rate(1 hour)", "event": "x" * 100}, limits=small)
    assert make({"expression": "rate(1 hour)", "event": "x" * 98}, limits=small).event


@pytest.mark.parametrize("name", ["", "Nightly", "a/b", "../x", "x" * 64, "1st", "a b"])
def test_a_schedule_name_is_validated_like_a_function_name(name):
    with pytest.raises(InvalidRequest, match="invalid schedule name"):
        make({"expression": "rate(5 minutes)"}, name=name)


def test_a_past_one_time_schedule_may_be_kept_disabled_but_not_set_anew():
    once = make({"expression": "at(2026-12-01T00:00:00)"})
    later = datetime(2026, 12, 2, tzinfo=UTC).timestamp()

    # unchanged expression: disabling (or editing the event of) a done at() is fine
    kept = make(
        {"expression": "at(2026-12-01T00:00:00)", "enabled": False}, existing=once, now=later
    )
    assert kept.enabled is False
    with pytest.raises(InvalidRequest, match="names no time after now"):
        make({"expression": "at(2026-12-01T12:00:00)"}, existing=once, now=later)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (TICK, "2026-11-30T12:00:00Z"),
        (TICK + 0.25, "2026-11-30T12:00:00.25Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_iso_time(t, text):
    assert iso_time(t) == text

"""Tests of shared.schedule_expr: the fire times of rate(), cron(), Unix cron and at()
expressions, time zones and daylight saving, and the 400s of bad expressions.

Every time is explicit: the expressions never read the clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpool.shared.errors import InvalidRequest
from hotpool.shared.schedule_expr import MAX_EXPRESSION_CHARS, ScheduleExpression

pytestmark = pytest.mark.unit

NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"


def at(text: str, zone: str = "UTC") -> float:
    """Epoch seconds of a wall time in ``zone`` (first pass of a repeated one)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str, zone: str = "UTC", *, anchor: float = 0.0, min_s: float = 1.0):
    return ScheduleExpression.parse(text, zone, min_interval_s=min_s, anchor=anchor)


def fires(text: str, zone: str, start: str, end: str) -> list[str]:
    """The fire times (UTC) strictly after ``start`` and up to ``end`` (UTC wall times)."""
    expr = parse(text, zone, anchor=at(start))
    return [utc(t) for t in expr.ticks(at(start), at(end))]


# rate()


def test_rate_ticks_are_anchored_at_the_creation_in_whole_seconds():
    created = at("2026-03-01T10:00:07.250")
    expr = parse("rate(5 minutes)", anchor=created)

    assert expr.kind == "rate" and expr.interval_s == 300
    # from the creation (fraction dropped), not from whenever the scheduler looks
    assert [utc(t) for t in expr.ticks(created, at("2026-03-01T10:16:00"))] == [
        "2026-03-01T10:05:07Z", "2026-03-01T10:10:07Z", "2026-03-01T10:15:07Z",
    ]  # fmt: skip
    later = at("2026-03-01T11:00:00")
    assert utc(expr.next_after(later)) == "2026-03-01T11:00:07Z"
    assert expr.next_after(at("2026-03-01T11:00:07")) == at("2026-03-01T11:05:07")
    assert expr.next_after(created - 3600) == at("2026-03-01T10:00:07")  # the grid's start


@pytest.mark.parametrize(
    ("text", "interval_s"),
    [
        ("rate(1 second)", 1), ("rate(30 seconds)", 30), ("rate(1 minute)", 60),
        ("rate(2 minutes)", 120), ("rate(1 hour)", 3600), ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400), ("rate(7 days)", 604800), ("RATE( 3  Minutes )", 180),
    ],
)  # fmt: skip
def test_rate_units_singular_and_plural(text, interval_s):
    assert parse(text).interval_s == interval_s


def test_rate_of_days_is_24_hours_across_daylight_saving_as_eventbridge_counts_it():
    created = at("2026-03-07T09:00:00", NEW_YORK)
    expr = parse("rate(1 day)", NEW_YORK, anchor=created)

    ticks = list(expr.ticks(created, created + 3 * 86400))

    assert [utc(t) for t in ticks] == [
        "2026-03-08T14:00:00Z", "2026-03-09T14:00:00Z", "2026-03-10T14:00:00Z",
    ]  # fmt: skip
    # on the wall clock: 09:00 before the change, 10:00 after it
    assert datetime.fromtimestamp(ticks[-1], ZoneInfo(NEW_YORK)).hour == 10


@given(
    anchor=st.integers(0, 2_000_000_000),
    interval=st.integers(1, 100_000),
    offset=st.integers(-(10**6), 10**7),
)
@settings(max_examples=200, deadline=None)
def test_rate_ticks_are_the_anchored_grid_strictly_after_and_up_to_the_bounds(
    anchor, interval, offset
):
    expr = ScheduleExpression("rate(x)", "UTC", kind="rate", anchor=anchor, interval_s=interval)
    after = anchor + offset
    until = max(after, anchor) + 5 * interval

    ticks = list(expr.ticks(after, until))

    assert ticks and all(after < t <= until for t in ticks)
    assert all((t - anchor) % interval == 0 and t >= anchor for t in ticks)
    assert ticks == sorted(set(ticks)) and ticks[0] == expr.next_after(after)
    assert ticks[0] - interval <= max(after, anchor - interval)  # none skipped at the start


# cron(): EventBridge's six fields


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # EventBridge numbers the days 1-7 from Sunday; 2026-03-01 is a Sunday
        ("cron(0 0 ? * 1 *)", ["2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z"]),
        ("cron(0 0 ? * 2 *)", ["2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"]),
        ("cron(0 0 ? * 7 *)", ["2026-03-07T00:00:00Z", "2026-03-14T00:00:00Z"]),
        ("cron(0 0 ? * SUN *)", ["2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z"]),
        ("cron(0 18 ? * MON-FRI *)", ["2026-03-02T18:00:00Z", "2026-03-03T18:00:00Z"]),
        ("cron(0 18 ? * 2-6 *)", ["2026-03-02T18:00:00Z", "2026-03-03T18:00:00Z"]),
        ("cron(0 0 ? * 1,7 *)", ["2026-03-07T00:00:00Z", "2026-03-08T00:00:00Z"]),
        # L alone in day-of-week: its last day, Saturday; 6L: the month's last Friday
        ("cron(0 0 ? * L *)", ["2026-03-07T00:00:00Z", "2026-03-14T00:00:00Z"]),
        ("cron(0 0 ? * 6L *)", ["2026-03-27T00:00:00Z", "2026-04-24T00:00:00Z"]),
        # 3#2: the month's second Tuesday
        ("cron(0 0 ? * 3#2 *)", ["2026-03-10T00:00:00Z", "2026-04-14T00:00:00Z"]),
        ("cron(0 0 ? * TUE#2 *)", ["2026-03-10T00:00:00Z", "2026-04-14T00:00:00Z"]),
        # L in day-of-month: the last day; 15W: the weekday nearest the 15th (a Sunday)
        ("cron(0 0 L * ? *)", ["2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"]),
        ("cron(0 0 15W * ? *)", ["2026-03-16T00:00:00Z", "2026-04-15T00:00:00Z"]),
        ("cron(0 12 * * ? *)", ["2026-03-01T12:00:00Z", "2026-03-02T12:00:00Z"]),
        ("cron(15 10 1 JAN,MAR ? *)", ["2026-03-01T10:15:00Z", "2027-01-01T10:15:00Z"]),
        ("cron(1/10 * * * ? *)", ["2026-03-01T00:01:00Z", "2026-03-01T00:11:00Z"]),
        ("cron(0 8 1 * ? 2027-2028)", ["2027-01-01T08:00:00Z", "2027-02-01T08:00:00Z"]),
        # plain Unix cron: 0-6 from Sunday, and its aliases
        ("0 0 * * 1", ["2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"]),
        ("0 0 * * 0", ["2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z"]),
        ("*/15 * * * *", ["2026-03-01T00:15:00Z", "2026-03-01T00:30:00Z"]),
        ("@daily", ["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]),
    ],
)
def test_cron_fields_days_of_week_and_special_characters(text, expected):
    expr = parse(text, anchor=at("2026-03-01T00:00:00"))

    assert [utc(t) for t in expr.upcoming(at("2026-03-01T00:00:00"), 2)] == expected


def test_last_day_of_february_follows_leap_years():
    expr = parse("cron(0 0 L 2 ? *)")

    assert [utc(t) for t in expr.upcoming(at("2027-01-01T00:00:00"), 2)] == [
        "2027-02-28T00:00:00Z", "2028-02-29T00:00:00Z",
    ]  # fmt: skip


def test_a_year_field_ends_the_ticks():
    expr = parse("cron(0 0 1 1 ? 2027-2028)", anchor=at("2026-01-01T00:00:00"))

    assert [utc(t) for t in expr.ticks(0, at("2099-01-01T00:00:00"))] == [
        "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z",
    ]  # fmt: skip
    assert expr.next_after(at("2028-01-01T00:00:00")) is None


def test_cron_fields_are_wall_clock_times_in_the_time_zone():
    expr = parse("cron(0 9 ? * MON-FRI *)", NEW_YORK)

    winter = expr.next_after(at("2026-01-05T00:00:00", NEW_YORK))
    summer = expr.next_after(at("2026-07-06T00:00:00", NEW_YORK))

    assert (utc(winter), utc(summer)) == ("2026-01-05T14:00:00Z", "2026-07-06T13:00:00Z")
    assert expr.timezone == NEW_YORK and parse("0 9 * * *").timezone == "UTC"


# daylight saving: a skipped wall time does not fire, a repeated one fires once (its first pass)


@pytest.mark.parametrize(
    ("zone", "start", "end", "expected"),
    [
        # New York springs forward on 2026-03-08 at 02:00 -> 03:00: 02:30 does not exist
        (NEW_YORK, "2026-03-07T00:00", "2026-03-10T00:00",
         ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]),
        # Berlin on 2026-03-29 at 02:00 -> 03:00
        (BERLIN, "2026-03-28T00:00", "2026-03-31T00:00",
         ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]),
        # Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 passes twice, fires once
        (BERLIN, "2026-10-24T00:00", "2026-10-27T00:00",
         ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    ],
)  # fmt: skip
def test_a_daily_time_the_clock_skips_does_not_fire_and_a_repeated_one_fires_once(
    zone, start, end, expected
):
    assert fires("cron(30 2 * * ? *)", zone, f"{start}+00:00", f"{end}+00:00") == expected


def test_hourly_across_spring_forward_fires_every_real_hour_once():
    # 01:00 EST, then 03:00 EDT: one real hour apart, nothing doubled
    assert fires(
        "0 * * * *", NEW_YORK, "2026-03-08T05:30:00+00:00", "2026-03-08T08:30:00+00:00"
    ) == ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]


def test_hourly_across_fall_back_fires_the_repeated_hour_once():
    # New York falls back on 2026-11-01 at 02:00 EDT -> 01:00 EST: 01:00 fires at 05:00Z
    # (EDT) only; 06:00Z is 01:00 EST again
    assert fires(
        "0 * * * *", NEW_YORK, "2026-11-01T03:30:00+00:00", "2026-11-01T08:30:00+00:00"
    ) == ["2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z",
          "2026-11-01T08:00:00Z"]  # fmt: skip


def test_looking_from_inside_the_second_pass_of_a_repeated_hour():
    expr = parse("*/20 * * * *", NEW_YORK)
    second_pass = at("2026-11-01T06:10:00+00:00")  # 01:10 EST; 01:20 EDT fired already

    assert utc(expr.next_after(second_pass)) == "2026-11-01T07:00:00Z"  # 02:00 EST


def test_a_daily_time_in_the_repeated_hour_fires_at_its_first_pass():
    assert fires(
        "cron(30 1 * * ? *)", NEW_YORK, "2026-10-31T00:00:00+00:00", "2026-11-03T00:00:00+00:00"
    ) == ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # skipped: when it would have been without the jump (03:30 EDT)
        ("at(2026-03-08T02:30:00)", "2026-03-08T07:30:00Z"),
        # repeated: its first pass (01:30 EDT)
        ("at(2026-11-01T01:30:00)", "2026-11-01T05:30:00Z"),
        ("at(2026-12-31T23:59:00)", "2027-01-01T04:59:00Z"),
    ],
)
def test_at_fires_once_at_a_wall_time_of_its_zone(text, expected):
    expr = parse(text, NEW_YORK, anchor=at("2026-01-01T00:00:00"))

    assert [utc(t) for t in expr.ticks(0, at("2030-01-01T00:00:00"))] == [expected]
    assert expr.next_after(at(expected.replace("Z", "+00:00"))) is None
    assert expr.upcoming(0, 3) == [at(expected.replace("Z", "+00:00"))]


@given(start=st.integers(at("2026-01-01T00:00:00"), at("2027-01-01T00:00:00")))
@settings(max_examples=150, deadline=None)
@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN])
def test_hourly_ticks_are_ascending_whole_wall_hours_each_once(zone, start):
    expr = ScheduleExpression.parse("0 * * * *", zone, min_interval_s=1)

    ticks = list(expr.ticks(start, start + 3 * 86400))
    walls = [datetime.fromtimestamp(t, ZoneInfo(zone)).replace(tzinfo=None) for t in ticks]

    assert ticks == sorted(set(ticks)) and all(t > start for t in ticks)
    assert len(set(walls)) == len(walls)  # no wall time fires twice
    assert all(w.minute == 0 and w.second == 0 for w in walls)
    # consecutive fires are one real hour apart, or none/two hours around a change
    assert {b - a for a, b in itertools.pairwise(ticks)} <= {3600, 7200}
    assert walls[0] - datetime.fromtimestamp(start, ZoneInfo(zone)).replace(
        tzinfo=None
    ) <= timedelta(hours=2)


# the shortest interval


def test_an_interval_shorter_than_the_minimum_is_refused_naming_the_setting():
    assert parse("rate(1 second)", min_s=1).interval_s == 1
    with pytest.raises(InvalidRequest, match="HOTPOOL_SCHEDULE_MIN_INTERVAL_S") as info:
        parse("rate(10 seconds)", min_s=30)
    assert "fires every 10 s; the shortest interval allowed is 30 s" in info.value.message
    with pytest.raises(InvalidRequest, match="fires 60 s apart; the shortest interval allowed"):
        parse("cron(0,1 * * * ? *)", min_s=120)
    assert parse("cron(0/5 * * * ? *)", min_s=120).kind == "cron"


# bad expressions: a 400 that says what is wrong


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expression is missing; use e.g. rate(5 minutes)"),
        ("   ", "expression is missing"),
        ("x" * (MAX_EXPRESSION_CHARS + 1), f"at most {MAX_EXPRESSION_CHARS}"),
        ("rate(0 minutes)", "the rate must be a whole number >= 1"),
        ("rate(5 fortnights)", "unit seconds, minutes, hours or days, e.g. rate(5 minutes)"),
        ("rate(1.5 hours)", "rate(<whole number> <unit>)"),
        ("rate(-1 hours)", "rate(<whole number> <unit>)"),
        ("rate(9999999999 days)", "rate(<whole number> <unit>)"),
        ("rate(rate(5 minutes))", "is not a rate expression"),
        ("cron(cron(0 12 * * ? *))", "is not valid"),
        ("cron(0 12 * * ?)", "has 5 fields; it needs 6 (minutes hours day-of-month"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 ? * * ? *)", "'?' stands alone in day-of-month or day-of-week"),
        ("cron(61 0 * * ? *)", "the minutes field '61' is not valid"),
        ("cron(0 24 * * ? *)", "the hours field '24' is not valid"),
        ("cron(0 0 32 * ? *)", "the day-of-month field '32' is not valid"),
        ("cron(0 0 1 13 ? *)", "the month field '13' is not valid"),
        ("cron(0 0 ? * 0 *)", "day-of-week '0' is not 1-7 (1 = SUN) or SUN-SAT"),
        ("cron(0 0 ? * 8 *)", "day-of-week '8' is not 1-7"),
        ("cron(0 0 ? * MON-FUNDAY *)", "day-of-week 'FUNDAY' is not 1-7"),
        ("cron(0 0 ? * 2#x *)", "day-of-week '2#x' is not valid"),
        ("cron(0 12 * * ? 2300)", "the year field '2300' is not a year or range in 1970-2099"),
        ("cron(0 12 * * ? 99999999999)", "the year field"),
        ("cron(0 0 LW * ? *)", "LW is not supported"),
        ("cron(0 0 30 2 ? *)", "never fires: no month it names has that day-of-month"),
        ("cron(0 0 31 4,6,9,11 ? *)", "never fires: no month it names has that day-of-month"),
        ("cron(0 0 29 2 ? 2097)", "never fires: no month it names has that day-of-month"),
        ("0 0 31 2 *", "never fires: no month it names has that day-of-month"),
        ("cron(0 0 1 1 ? 2025)", "names no time after 2026-03-01T00:00:00Z: check its fields"),
        ("cron(0 0 1 1 ? 2020)", "names no time after"),
        ("cron(0 0 * * ? *); rm -rf /)", "has 9 fields; it needs 6"),
        ("* * * * * *", "is not a schedule expression. Use rate(N unit)"),
        ("0 0 1 1 * 2030", "For seconds use rate(N seconds)"),
        ("every day", "is not a schedule expression"),
        ("0 12 * * 8", "the day-of-week field '8' is not valid"),
        ("R * * * *", "random or hashed values (H, R) in the minute field"),
        ("0 H * * *", "random or hashed values (H, R) in the hour field"),
        ("@reboot", "is not a valid cron expression; use e.g."),
        ("at(tomorrow)", "use at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2026-02-30T00:00:00)", "use at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2026-12-31T23:59:00+02:00)", "use at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2020-01-01T00:00:00)", "at() must name a future time"),
    ],
)
def test_a_bad_expression_is_a_400_saying_what_is_wrong(text, says):
    with pytest.raises(InvalidRequest) as info:
        parse(text, anchor=at("2026-03-01T00:00:00"))

    assert info.value.status == 400
    assert says in info.value.message
    assert len(info.value.message) < 600 and "\n" not in info.value.message


def test_an_expression_naming_only_wall_times_the_clock_skips_never_fires():
    # 02:00 on New York's second Sunday of March is its spring-forward gap, every year
    with pytest.raises(InvalidRequest, match="names no time after"):
        parse("cron(0 2 ? 3 1#2 *)", NEW_YORK, anchor=at("2026-01-01T00:00:00"))
    assert parse("cron(0 2 ? 3 1#2 *)", anchor=at("2026-01-01T00:00:00")).kind == "cron"


def test_unix_cron_fires_on_either_day_field():
    # day 31 or any Monday of February: the Mondays
    expr = parse("0 0 31 2 1", anchor=at("2026-01-01T00:00:00"))

    assert utc(expr.next_after(at("2026-01-01T00:00:00"))) == "2026-02-02T00:00:00Z"


@pytest.mark.parametrize(
    "zone", ["../../etc/passwd", "", "Mars/Olympus", "america/new_york", "/etc/localtime", None]
)
def test_a_time_zone_must_be_an_iana_name(zone):
    with pytest.raises(InvalidRequest, match=r"is not an IANA time zone name; use e\.g\. 'UTC'"):
        ScheduleExpression.parse("rate(5 minutes)", zone, min_interval_s=1)  # type: ignore[arg-type]


def test_a_parsed_expression_keeps_the_text_as_written():
    expr = parse("  cron(0 12 * * ? *) ", BERLIN)

    assert (expr.text, expr.timezone, expr.kind) == ("cron(0 12 * * ? *)", BERLIN, "cron")

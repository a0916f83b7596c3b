"""Schedule expressions: when a scheduled function fires.

Four syntaxes, parsed with croniter (field matching) and zoneinfo (time zones):

- ``rate(N unit)``: every N minutes, hours or days (EventBridge), or seconds (hotpool's
  extension), counted from an anchor (the schedule's creation) in absolute time: a day is
  24 hours even across a daylight saving change, as EventBridge Scheduler counts it.
- ``cron(min hour day-of-month month day-of-week year)``: EventBridge's six fields. Its
  day-of-week numbers run 1-7 for SUN-SAT (Unix cron: 0-6); one of the two day fields must be
  ``?``; ``L``, ``W`` and ``#`` as EventBridge documents them; years 1970-2099.
- ``min hour day-of-month month day-of-week``: plain Unix cron (``@daily`` and friends too).
- ``at(yyyy-mm-ddThh:mm:ss)``: once (EventBridge Scheduler's one-time schedule).

Cron fields and ``at()`` are wall-clock times in the schedule's IANA time zone. Daylight
saving follows EventBridge Scheduler: a wall time the clock skips (spring forward) does not
fire that day; a wall time the clock passes twice (fall back) fires once, at its first pass.
An ``at()`` naming a skipped time fires when that time would have been without the jump
(02:30 in a gap from 02:00 to 03:00 fires at 03:30); one in a repeated hour fires at its
first pass.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import re
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

from hotpool.shared.errors import InvalidRequest

log = logging.getLogger(__name__)

MAX_EXPRESSION_CHARS = 256
RATE_UNITS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
YEAR_RANGE = (1970, 2099)  # croniter's; EventBridge's goes to 2199
# croniter scans month by month for a match, at most this many years: 1970 to 2099
MAX_YEARS_BETWEEN_MATCHES = 130
# cron fires on whole minutes: only a minimum interval above this needs sampling
CRON_RESOLUTION_S = 60
INTERVAL_SAMPLE = 100  # fire times sampled for the shortest interval of a cron expression
EXAMPLES = "rate(5 minutes), cron(0 12 * * ? *), 0 12 * * * or at(2026-12-31T23:59:00)"

_RATE_RE = re.compile(r"^rate\(\s*(\d{1,9})\s+([a-z]+)\s*\)\Z", re.IGNORECASE)
_WRAPPED_RE = re.compile(r"^(cron|at)\((.*)\)\Z", re.IGNORECASE | re.DOTALL)
_AT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")
_FIELD_CHARS_RE = re.compile(r"^[0-9A-Za-z*?,/#-]+\Z")
# croniter's random (R) and hashed (H) fields: replicas must agree on every fire time
_RANDOM_RE = re.compile(r"(^|,)[HhRr](\(|/|,|\Z)")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DOW_ITEM_RE = re.compile(
    r"^(?:(?P<star>\*)|(?P<last>L)|(?P<day>\w+?)(?:(?P<lastof>L)|#(?P<nth>\d)"
    r"|-(?P<to>\w+))?)(?:/(?P<step>\d+))?\Z",
    re.IGNORECASE,
)
_EVENTBRIDGE_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_UNIX_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: object) -> str:
    """``name`` if it is an IANA time zone this host knows (e.g. "Europe/Berlin")."""
    if not isinstance(name, str) or name not in _zones():
        shown = str(name)[:64]
        raise InvalidRequest(
            f"timezone {shown!r} is not an IANA time zone name; use e.g. 'UTC', "
            "'America/New_York' or 'Europe/Berlin'"
        )
    return name


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed schedule expression: its fire times, in epoch seconds."""

    text: str  # as the user wrote it
    timezone: str  # IANA name
    kind: str = "cron"  # rate | cron | at
    anchor: float = 0.0  # rate(): the tick grid starts here (whole seconds)
    interval_s: int = 0  # rate()
    cron: str = field(default="", repr=False)  # croniter's expression (Unix day numbers)
    at_s: float = 0.0  # at()

    @classmethod
    def parse(
        cls, text: str, timezone: str = "UTC", *, min_interval_s: float, anchor: float = 0.0
    ) -> ScheduleExpression:
        """Parse ``text``; InvalidRequest says what is wrong and shows a good expression.

        ``anchor`` (the schedule's creation) starts a rate()'s ticks; a cron() or at() that
        names no time after it is refused, as is anything firing more often than
        ``min_interval_s``."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"expression is missing; use e.g. {EXAMPLES}")
        if len(text) > MAX_EXPRESSION_CHARS:
            raise InvalidRequest(
                f"expression is {len(text)} characters; at most {MAX_EXPRESSION_CHARS}"
            )
        zone = validate_timezone(timezone)
        text = text.strip()
        if text.lower().startswith("rate("):
            expr = _parse_rate(text, zone, math.floor(anchor))
        elif wrapped := _WRAPPED_RE.match(text):
            keyword, inner = wrapped.group(1).lower(), wrapped.group(2).strip()
            if keyword == "at":
                expr = cls(text, zone, kind="at", at_s=_parse_at(text, inner, zone))
            else:
                expr = cls(text, zone, kind="cron", cron=_eventbridge_cron(text, inner))
        else:
            expr = cls(text, zone, kind="cron", cron=_unix_cron(text))
        expr._check_fires(anchor, min_interval_s)
        return expr

    def ticks(self, after: float, until: float) -> Iterator[float]:
        """Scheduled fire times (epoch s) strictly after ``after`` and <= ``until``, ascending."""
        if self.kind == "rate":
            tick = self.next_after(after)
            while tick is not None and tick <= until:
                yield tick
                tick += self.interval_s
        elif self.kind == "at":
            if after < self.at_s <= until:
                yield self.at_s
        else:
            for tick in self._cron_ticks(after):
                if tick > until:
                    return
                yield tick

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after ``t``; None when there is none (a past at())."""
        if self.kind == "rate":
            steps = max(0, math.floor((t - self.anchor) / self.interval_s) + 1)
            return self.anchor + steps * self.interval_s
        if self.kind == "at":
            return self.at_s if self.at_s > t else None
        return next(self._cron_ticks(t), None)

    def upcoming(self, after: float, count: int) -> list[float]:
        """The next ``count`` fire times after ``after`` (fewer if the expression ends)."""
        found: list[float] = []
        t: float | None = after
        while len(found) < count and (t := self.next_after(t)) is not None:
            found.append(t)
        return found

    def _cron_ticks(self, after: float) -> Iterator[float]:
        """Fire times after ``after``, matched on the zone's wall clock (see the module's
        daylight saving rule): walking naive wall times meets each one once."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        start = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
        walk = croniter(
            self.cron,
            start,
            ret_type=datetime,
            max_years_between_matches=MAX_YEARS_BETWEEN_MATCHES,
        )
        while True:
            try:
                wall: datetime = walk.get_next()
            except (CroniterBadDateError, ValueError):  # no match within its years
                return
            if wall.year > YEAR_RANGE[1]:  # e.g. only ever a wall time the clock skips
                return
            local = wall.replace(tzinfo=zone)  # fold=0: the first pass of a repeated time
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
                continue  # skipped by spring forward
            tick = local.timestamp()
            # ``after`` on the second pass of a repeated hour: that hour has fired already
            if tick > after:
                yield tick

    def _check_fires(self, anchor: float, min_interval_s: float) -> None:
        if self.kind == "rate":
            if self.interval_s < min_interval_s:
                raise InvalidRequest(
                    f"{self.text} fires every {self.interval_s} s; the shortest interval "
                    f"allowed is {min_interval_s:g} s (HOTPOOL_SCHEDULE_MIN_INTERVAL_S)"
                )
            return
        first = self.next_after(anchor)
        if first is None:
            when = datetime.fromtimestamp(anchor, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            hint = "at() must name a future time" if self.kind == "at" else "check its fields"
            raise InvalidRequest(f"{self.text} names no time after {when}: {hint}")
        if self.kind == "cron" and min_interval_s > CRON_RESOLUTION_S:
            sample = self.upcoming(anchor, INTERVAL_SAMPLE)
            shortest = min((b - a for a, b in itertools.pairwise(sample)), default=math.inf)
            if shortest < min_interval_s:
                raise InvalidRequest(
                    f"{self.text} fires {shortest:g} s apart; the shortest interval allowed "
                    f"is {min_interval_s:g} s (HOTPOOL_SCHEDULE_MIN_INTERVAL_S)"
                )


def _parse_rate(text: str, zone: str, anchor: int) -> ScheduleExpression:
    match = _RATE_RE.match(text)
    unit = match.group(2).lower().removesuffix("s") if match else ""
    if match is None or unit not in RATE_UNITS_S:
        raise InvalidRequest(
            f"{text[:80]!r} is not a rate expression: use rate(<whole number> <unit>) with "
            "unit seconds, minutes, hours or days, e.g. rate(5 minutes)"
        )
    value = int(match.group(1))
    if value < 1:
        raise InvalidRequest(f"{text}: the rate must be a whole number >= 1, e.g. rate(1 hour)")
    interval = value * RATE_UNITS_S[unit]
    return ScheduleExpression(text, zone, kind="rate", anchor=float(anchor), interval_s=interval)


def _parse_at(text: str, inner: str, zone: str) -> float:
    try:
        if not _AT_RE.match(inner):
            raise ValueError(inner)
        wall = datetime.fromisoformat(inner)
    except ValueError:
        raise InvalidRequest(
            f"{text[:80]!r} is not a one-time expression: use at(yyyy-mm-ddThh:mm:ss), "
            "e.g. at(2026-12-31T23:59:00), a wall-clock time in the schedule's timezone"
        ) from None
    # fold=0 (zoneinfo): a skipped time takes the offset before the jump, a repeated one
    # its first pass
    return wall.replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


def _fields(text: str, inner: str, names: tuple[str, ...], example: str) -> list[str]:
    fields_ = inner.split()
    if len(fields_) != len(names):
        raise InvalidRequest(
            f"{text[:80]!r} has {len(fields_)} fields; it needs {len(names)} "
            f"({' '.join(names)}), e.g. {example}"
        )
    for name, value in zip(names, fields_, strict=True):
        if not _FIELD_CHARS_RE.match(value):
            raise InvalidRequest(f"{text[:80]!r}: the {name} field {value[:40]!r} is not valid")
        if _RANDOM_RE.search(value):
            raise InvalidRequest(
                f"{text[:80]!r}: random or hashed values (H, R) in the {name} field are not "
                "supported: every replica must compute the same fire times"
            )
    return fields_


def _unix_cron(text: str) -> str:
    if text.startswith("@"):
        _croniter_check(text, [text], [text], ("alias",))
        return text
    fields_ = text.split()
    if len(fields_) != len(_UNIX_FIELDS):
        raise InvalidRequest(
            f"{text[:80]!r} is not a schedule expression. Use rate(N unit), "
            "cron(minutes hours day-of-month month day-of-week year) (EventBridge), "
            "a 5-field Unix cron (minute hour day-of-month month day-of-week) or "
            f"at(yyyy-mm-ddThh:mm:ss); e.g. {EXAMPLES}. For seconds use rate(N seconds)"
        )
    fields_ = _fields(text, text, _UNIX_FIELDS, "0 12 * * *")
    _croniter_check(text, fields_, fields_, _UNIX_FIELDS)
    return " ".join(fields_)


def _eventbridge_cron(text: str, inner: str) -> str:
    """croniter's seven-field form (seconds 0, then the year) of an EventBridge cron()."""
    shown = _fields(text, inner, _EVENTBRIDGE_FIELDS, "cron(0 12 * * ? *)")
    minutes, hours, dom, month, dow, year = shown
    shown = [*shown[:5], "0", year]
    if (dom == "?") == (dow == "?"):
        raise InvalidRequest(
            f"{text[:80]!r}: exactly one of day-of-month and day-of-week must be '?' "
            "(EventBridge), e.g. cron(0 12 * * ? *) or cron(0 9 ? * MON-FRI *)"
        )
    if any("?" in value for value in (minutes, hours, month, year)) or "?" in (
        dom if dow == "?" else dow
    ):
        raise InvalidRequest(
            f"{text[:80]!r}: '?' stands alone in day-of-month or day-of-week, nowhere else"
        )
    if dom.upper() == "LW":
        raise InvalidRequest(f"{text[:80]!r}: LW is not supported; use L (last day) or e.g. 28W")
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else ",".join(_unix_day(text, item) for item in dow.split(","))
    parts = (minutes, hours, dom, month, dow, "0", year)
    _croniter_check(text, parts, shown, (*_EVENTBRIDGE_FIELDS[:5], "seconds", "year"))
    return " ".join(parts)


def _day_number(text: str, day: str) -> int:
    """An EventBridge day-of-week (1-7 or SUN-SAT) as Unix's 0-6."""
    if day.upper() in _DAY_NAMES:
        return _DAY_NAMES.index(day.upper())
    if day.isdigit() and 1 <= int(day) <= 7:
        return int(day) - 1
    raise InvalidRequest(
        f"{text[:80]!r}: day-of-week {day[:20]!r} is not 1-7 (1 = SUN) or SUN-SAT, e.g. MON-FRI"
    )


def _unix_day(text: str, item: str) -> str:
    """One comma-separated item of an EventBridge day-of-week field in croniter's terms."""
    match = _DOW_ITEM_RE.match(item)
    if match is None:
        raise InvalidRequest(
            f"{text[:80]!r}: day-of-week {item[:20]!r} is not valid; use e.g. MON, 2-6, 6L "
            "(last Friday) or 3#2 (second Tuesday)"
        )
    step = f"/{match['step']}" if match["step"] else ""
    if match["star"]:
        return "*" + step
    if match["last"]:
        return "6" + step  # EventBridge's L alone: the last day of the week, Saturday
    day = _day_number(text, match["day"])
    if match["lastof"]:
        return f"L{day}"
    if match["nth"]:
        return f"{day}#{match['nth']}"
    if match["to"]:
        return f"{day}-{_day_number(text, match['to'])}{step}"
    return f"{day}{step}"


def _croniter_check(
    text: str, parts: Sequence[str], shown: Sequence[str], names: Sequence[str]
) -> None:
    """croniter's verdict on ``parts``, naming the field it refuses (as the user wrote it,
    ``shown``) where one field alone is to blame."""
    try:
        croniter(" ".join(parts), 0, max_years_between_matches=MAX_YEARS_BETWEEN_MATCHES)
    except CroniterError as exc:
        reason = str(exc)
    else:
        _check_days_exist(text, parts, names)
        return
    for index in range(len(parts) if len(parts) > 1 else 0):
        probe = ["0" if name == "seconds" else "*" for name in names]
        probe[index] = parts[index]
        try:
            croniter(" ".join(probe), 0)
        except CroniterError:
            bad = shown[index][:40]
            if names[index] == "year":
                low, high = YEAR_RANGE
                raise InvalidRequest(
                    f"{text[:80]!r}: the year field {bad!r} is not a year or range in {low}-{high}"
                ) from None
            raise InvalidRequest(
                f"{text[:80]!r}: the {names[index]} field {bad!r} is not valid"
            ) from None
    log.debug("croniter refused %r: %s", text, reason)
    raise InvalidRequest(f"{text[:80]!r} is not a valid cron expression; use e.g. {EXAMPLES}")


def _check_days_exist(text: str, parts: Sequence[str], names: Sequence[str]) -> None:
    """Refuse a day of the month that none of its months has (the 30th of February) at once,
    rather than after croniter's search through every year for it."""
    if "day-of-week" not in names or parts[names.index("day-of-week")] != "*":
        return  # a day-of-week: Unix cron fires on either day field
    try:
        croniter.expand(" ".join(parts), strict=True)
    except CroniterError:
        raise InvalidRequest(
            f"{text[:80]!r} never fires: no month it names has that day-of-month "
            "(like the 30th of February)"
        ) from None

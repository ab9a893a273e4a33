"""Schedule expressions as EventBridge takes them: `rate(...)`, `cron(...)`, `at(...)`,
and the instants they fire at in a time zone.

- `rate(value unit)`: a positive whole number and `minute`/`minutes`, `hour`/`hours`,
  `day`/`days`, singular exactly when the value is 1 (`rate(1 minute)`,
  `rate(5 minutes)`). A rate counts real time from its first firing: a day is 24 hours,
  also across a daylight saving change (EventBridge Scheduler's "Daylight saving time").
  `second`/`seconds` are taken here only, for local development: AWS's smallest rate is
  one minute, so `validate` warns. An interval that reaches past the year 2199 (where
  cron's years end) is refused.
- `cron(...)` (connectors/schedule/cron.py): evaluated on the wall clock of the
  schedule's time zone. As EventBridge Scheduler documents it, a time the clock skips
  when daylight saving time starts does not fire, and a time the clock passes twice when
  it ends fires once, the first time.
- `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall-clock time in the time zone
  (EventBridge Scheduler's one-time schedules).

A malformed expression is refused with AWS's words, `Parameter ScheduleExpression is
not valid.`, followed by what is wrong.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from connectors.schedule.cron import Cron, CronError

INVALID = "Parameter ScheduleExpression is not valid."
UTC = ZoneInfo("UTC")

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
# The longest rate: from the epoch to 2200-01-01, the end of cron's years (1970-2199).
# A longer one would next fire after that, past what a date can be written as.
RATE_MAX_SECONDS = 7_258_118_400
_RATE = re.compile(r"rate\((?P<value>[^ ()]*) (?P<unit>[^ ()]*)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_AT = re.compile(r"at\((?P<moment>[^()]*)\)")
_AT_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


class ExpressionError(ValueError):
    """An expression EventBridge would refuse; the message is AWS's, then the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{INVALID} ({reason})")
        self.reason = reason


class Schedule:
    """When an expression fires, as UTC epoch seconds. A rate counts from `anchor`, its
    first firing; the other kinds ignore it."""

    expression: str

    def local_only(self) -> bool:
        """Whether only local development takes it (a rate in seconds)."""
        return False

    def next_after(self, instant: float, anchor: float) -> float | None:
        """The first firing strictly after `instant`, or None if there is none."""
        raise NotImplementedError

    def latest_between(self, after: float, until: float, anchor: float) -> float | None:
        """The last firing in (`after`, `until`], or None (what was missed while down)."""
        latest = None
        moment = self.next_after(after, anchor)
        while moment is not None and moment <= until:
            latest = moment
            moment = self.next_after(moment, anchor)
        return latest


@dataclass(frozen=True)
class Rate(Schedule):
    expression: str
    seconds: int

    def local_only(self) -> bool:
        return self.seconds < 60

    def next_after(self, instant: float, anchor: float) -> float | None:
        if instant < anchor:
            return anchor
        return anchor + (math.floor((instant - anchor) / self.seconds) + 1) * self.seconds

    def latest_between(self, after: float, until: float, anchor: float) -> float | None:
        if until < anchor:
            return None
        latest = anchor + math.floor((until - anchor) / self.seconds) * self.seconds
        return latest if latest > after else None


@dataclass(frozen=True)
class At(Schedule):
    expression: str
    moment: float

    def next_after(self, instant: float, anchor: float) -> float | None:
        return self.moment if self.moment > instant else None


@dataclass(frozen=True)
class CronSchedule(Schedule):
    expression: str
    cron: Cron
    zone: ZoneInfo

    def next_after(self, instant: float, anchor: float) -> float | None:
        local = dt.datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None, fold=0)
        for wall in self.cron.wall_times(local):
            moment = _instant(wall, self.zone)
            if moment is not None and moment > instant:
                return moment
        return None


def _instant(wall: dt.datetime, zone: ZoneInfo) -> float | None:
    """The first instant the zone's clock shows `wall`, or None if it never does (the
    hour skipped when daylight saving time starts)."""
    aware = wall.replace(tzinfo=zone, fold=0)
    moment = aware.timestamp()
    if dt.datetime.fromtimestamp(moment, zone).replace(tzinfo=None) != wall:
        return None
    return moment


def parse(expression: str, timezone: str = "UTC") -> Schedule:
    """The schedule an expression describes; raises ExpressionError as AWS would refuse
    it (and ValueError for an unknown time zone)."""
    zone = ZoneInfo(timezone)
    if match := _RATE.fullmatch(expression):
        return Rate(expression, _rate_seconds(match["value"], match["unit"]))
    if match := _CRON.fullmatch(expression):
        try:
            cron = Cron.parse(match["fields"])
        except CronError as exc:
            raise ExpressionError(str(exc)) from None
        return CronSchedule(expression, cron, zone)
    if match := _AT.fullmatch(expression):
        text = match["moment"]
        if not _AT_MOMENT.fullmatch(text):
            raise ExpressionError(
                f"at() takes a date and time as yyyy-mm-ddThh:mm:ss, not {text!r}"
            )
        try:
            wall = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ExpressionError(f"{text!r} is not a date and time that exists") from None
        return At(expression, wall.replace(tzinfo=zone).timestamp())
    raise ExpressionError(
        "write rate(value unit), cron(minutes hours day-of-month month day-of-week year) "
        "or at(yyyy-mm-ddThh:mm:ss)"
    )


def _rate_seconds(value_text: str, unit: str) -> int:
    if not value_text.isdigit() or not value_text.isascii() or int(value_text) == 0:
        raise ExpressionError(f"the rate's value is a positive whole number, not {value_text!r}")
    value = int(value_text)
    singular = unit.removesuffix("s")
    if singular not in _UNIT_SECONDS:
        raise ExpressionError(f"the rate's unit is minute(s), hour(s) or day(s), not {unit!r}")
    if (value == 1) != (unit == singular):
        wanted = singular if value == 1 else f"{singular}s"
        raise ExpressionError(f"rate({value} ...) is written with {wanted!r}, not {unit!r}")
    longest = RATE_MAX_SECONDS // _UNIT_SECONDS[singular]
    if value > longest:
        raise ExpressionError(
            f"the rate's interval is at most {longest} {singular}s: a longer one would next "
            "fire after the year 2199"
        )
    return value * _UNIT_SECONDS[singular]

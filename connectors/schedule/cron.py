"""EventBridge's six-field cron expressions: parsed, and their firings found.

`cron(minutes hours day-of-month month day-of-week year)`, as EventBridge rules and
EventBridge Scheduler take it (AWS's "Cron expressions reference"):

| field        | values           | wildcards         |
|--------------|------------------|-------------------|
| minutes      | 0-59             | `, - * /`         |
| hours        | 0-23             | `, - * /`         |
| day-of-month | 1-31             | `, - * ? / L W`   |
| month        | 1-12 or JAN-DEC  | `, - * /`         |
| day-of-week  | 1-7 or SUN-SAT   | `, - * ? L #`     |
| year         | 1970-2199        | `, - * /`         |

One of day-of-month and day-of-week is `?` and the other is not. `L` alone is the
month's last day (day-of-month) or Saturday (day-of-week, the week's last day); `5L` is
the month's last Thursday, `LW` its last weekday, `15W` the weekday nearest the 15th
(never leaving the month), `3#2` its second Tuesday. `L`, `W` and `#` stand alone in
their field, as in Quartz, whose grammar EventBridge's is.

Written here rather than taken from `croniter`: croniter has no `W`, numbers weekdays
0-6 from Sunday, reads a sixth field as seconds, and has its own DST rules; EventBridge's
grammar is small enough to evaluate exactly. Every search is bounded: it walks the
years the expression allows, and no year after 2199 exists in the grammar.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

FIRST_YEAR = 1970
LAST_YEAR = 2199

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronError(ValueError):
    """What is wrong with an expression, in words that point at the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


MINUTES = _Field("minutes", 0, 59)
HOURS = _Field("hours", 0, 23)
DAY_OF_MONTH = _Field("day-of-month", 1, 31)
MONTH = _Field("month", 1, 12, MONTH_NAMES)
DAY_OF_WEEK = _Field("day-of-week", 1, 7, DAY_NAMES)
YEAR = _Field("year", FIRST_YEAR, LAST_YEAR)


def _number(text: str, field: _Field) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.low
    if not text.isdigit() or not text.isascii():
        what = (
            f"a number or a name ({field.names[0]}-{field.names[-1]})"
            if field.names
            else "a number"
        )
        raise CronError(f"{field.name}: {text!r} is not {what}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _item(text: str, field: _Field) -> set[int]:
    """One comma-separated part: `*`, `a`, `a-b`, each optionally `/step`."""
    base, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or not step_text.isascii() or int(step_text) == 0:
            raise CronError(f"{field.name}: the increment in {text!r} is not a positive number")
        step = int(step_text)
        if step > field.high - field.low + 1:
            raise CronError(f"{field.name}: the increment in {text!r} is larger than the field")
    if base == "*":
        start, end = field.low, field.high
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _number(first, field), _number(last, field)
    else:
        start = _number(base, field)
        # `a/step` runs from a to the end of the field; a bare `a` is just a.
        end = field.high if slash else start
    span = field.high - field.low + 1
    # A range may wrap around the field's end (Quartz's `FRI-MON`, hours `22-2`).
    count = (end - start) % span + 1
    return {field.low + (start - field.low + offset) % span for offset in range(0, count, step)}


def _values(text: str, field: _Field) -> frozenset[int]:
    if not text:
        raise CronError(f"{field.name}: empty")
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field.name}: an empty item in {text!r}")
        values |= _item(part, field)
    return frozenset(values)


# -- the day rule: day-of-month or day-of-week, whichever is not `?` ------------------------


@dataclass(frozen=True)
class DayRule:
    """Which days of a month match. `kind`: `days` (day-of-month values), `last` (L),
    `last_weekday` (LW), `nearest_weekday` (nW), `weekdays` (day-of-week values),
    `last_of_week` (nL), `nth` (n#k). Weekdays are Python's (Monday 0 .. Sunday 6)."""

    kind: str
    values: frozenset[int] = frozenset()
    number: int = 0

    def days(self, year: int, month: int) -> list[int]:
        """The matching days of the month, in order."""
        first_weekday, length = calendar.monthrange(year, month)
        kind = self.kind
        if kind == "days":
            return [day for day in sorted(self.values) if day <= length]
        if kind == "weekdays":
            return [
                day for day in range(1, length + 1) if (first_weekday + day - 1) % 7 in self.values
            ]
        if kind == "last":
            return [length]
        if kind == "last_weekday":
            return [_nearest_weekday(length, first_weekday, length)]
        if kind == "nearest_weekday":
            return (
                [_nearest_weekday(self.number, first_weekday, length)]
                if self.number <= length
                else []
            )
        (weekday,) = self.values
        first = 1 + (weekday - first_weekday) % 7
        if kind == "nth":
            day = first + 7 * (self.number - 1)
            return [day] if day <= length else []
        # last_of_week: the last such weekday of the month.
        return [first + 7 * ((length - first) // 7)]


def _nearest_weekday(day: int, first_weekday: int, length: int) -> int:
    """The weekday (Monday-Friday) nearest `day`, without leaving the month (`15W`)."""
    weekday = (first_weekday + day - 1) % 7
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day + 1 if day < length else day - 2
    return day


def _python_weekday(aws_day: int) -> int:
    """EventBridge's 1 (Sunday) .. 7 (Saturday) as Python's Monday 0 .. Sunday 6."""
    return (aws_day + 5) % 7


def _day_of_month_rule(text: str) -> DayRule:
    upper = text.upper()
    if upper == "L":
        return DayRule("last")
    if upper == "LW":
        return DayRule("last_weekday")
    if upper.endswith("W"):
        day = upper[:-1]
        if not day.isdigit() or not day.isascii():
            raise CronError(
                f"day-of-month: {text!r}: W follows one day of the month (15W) or L (LW), alone"
            )
        return DayRule("nearest_weekday", number=_number(day, DAY_OF_MONTH))
    if "L" in upper or "W" in upper:
        raise CronError(f"day-of-month: {text!r}: L and W stand alone (L, LW, 15W)")
    return DayRule("days", _values(text, DAY_OF_MONTH))


def _day_of_week_rule(text: str) -> DayRule:
    upper = text.upper()
    if upper == "L":
        return DayRule("weekdays", frozenset({_python_weekday(7)}))
    if "#" in upper:
        weekday, _, nth = upper.partition("#")
        if "," in upper or "-" in upper or "/" in upper:
            raise CronError(f"day-of-week: {text!r}: # takes one day (3#2), in no list or range")
        if not nth.isdigit() or not nth.isascii() or not 1 <= int(nth) <= 5:
            raise CronError(f"day-of-week: {text!r}: the number after # is 1-5")
        return DayRule("nth", frozenset({_python_weekday(_number(weekday, DAY_OF_WEEK))}), int(nth))
    if upper.endswith("L"):
        weekday = upper[:-1]
        if "," in weekday or "-" in weekday or "/" in weekday:
            raise CronError(f"day-of-week: {text!r}: L takes one day (5L), in no list or range")
        return DayRule("last_of_week", frozenset({_python_weekday(_number(weekday, DAY_OF_WEEK))}))
    if "/" in upper:
        raise CronError(f"day-of-week: {text!r}: day-of-week takes no / increments")
    values = _values(text, DAY_OF_WEEK)
    return DayRule("weekdays", frozenset(_python_weekday(value) for value in values))


# -- the expression ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...]
    days: DayRule

    @classmethod
    def parse(cls, fields_text: str) -> Cron:
        """The text between `cron(` and `)`; raises CronError."""
        fields = fields_text.split()
        if len(fields) != 6:
            raise CronError(
                f"a cron expression has six fields (minutes hours day-of-month month "
                f"day-of-week year), not {len(fields)}"
            )
        minutes, hours, day_of_month, month, day_of_week, year = fields
        if (day_of_month == "?") == (day_of_week == "?"):
            raise CronError(
                "day-of-month and day-of-week: exactly one of them must be ?, not both, nor neither"
            )
        for text, field in ((minutes, MINUTES), (hours, HOURS), (month, MONTH), (year, YEAR)):
            if "?" in text or "#" in text:
                raise CronError(f"{field.name}: {text!r}: only , - * / are allowed here")
        for text, field in ((day_of_month, DAY_OF_MONTH), (day_of_week, DAY_OF_WEEK)):
            if "?" in text and text != "?":
                raise CronError(f"{field.name}: {text!r}: ? stands alone")
        days = (
            _day_of_week_rule(day_of_week)
            if day_of_month == "?"
            else _day_of_month_rule(day_of_month)
        )
        return cls(
            minutes=tuple(sorted(_values(minutes, MINUTES))),
            hours=tuple(sorted(_values(hours, HOURS))),
            months=tuple(sorted(_values(month, MONTH))),
            years=tuple(sorted(_values(year, YEAR))),
            days=days,
        )

    def matches(self, moment: dt.datetime) -> bool:
        """Whether a wall-clock minute matches (the brute-force reference of the tests)."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and moment.year in self.years
            and moment.day in self.days.days(moment.year, moment.month)
        )

    def wall_times(self, start: dt.datetime) -> Iterator[dt.datetime]:
        """Every matching wall-clock minute at or after `start` (naive), in order, up to
        the last year the expression allows (at most 2199)."""
        start = start.replace(second=0, microsecond=0)
        for year in self.years:
            if year < start.year:
                continue
            year_open = year > start.year
            for month in self.months:
                if not year_open and month < start.month:
                    continue
                month_open = year_open or month > start.month
                for day in self.days.days(year, month):
                    if not month_open and day < start.day:
                        continue
                    day_open = month_open or day > start.day
                    for hour in self.hours:
                        if not day_open and hour < start.hour:
                            continue
                        hour_open = day_open or hour > start.hour
                        for minute in self.minutes:
                            if hour_open or minute >= start.minute:
                                yield dt.datetime(year, month, day, hour, minute)

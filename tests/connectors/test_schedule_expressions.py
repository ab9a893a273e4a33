"""EventBridge schedule expressions: what is accepted, what is refused and with which
words, and when each kind fires (L, W, #, the year field, daylight saving time in
Europe/Berlin). Property tests compare the search with a brute-force walk, minute by
minute, over the UTC clock."""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.schedule.cron import Cron
from connectors.schedule.expressions import INVALID, At, CronSchedule, ExpressionError, Rate, parse

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def shown(instant: float | None, zone: ZoneInfo = BERLIN) -> str | None:
    if instant is None:
        return None
    return dt.datetime.fromtimestamp(instant, zone).strftime("%Y-%m-%d %H:%M %Z")


def firings(expression: str, start: str, count: int, zone: str = "UTC") -> list[str]:
    schedule = parse(expression, zone)
    moment = dt.datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone)).timestamp()
    found = []
    for _ in range(count):
        following = schedule.next_after(moment, 0.0)
        if following is None:
            break
        found.append(shown(following, ZoneInfo(zone)))
        moment = following
    return [text for text in found if text is not None]


# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43_200),
        ("rate(1 day)", 86_400),
        ("rate(7 days)", 604_800),
        ("rate(1 second)", 1),
        ("rate(30 seconds)", 30),
    ],
)
def test_rates(expression: str, seconds: int) -> None:
    schedule = parse(expression)
    assert isinstance(schedule, Rate)
    assert schedule.seconds == seconds
    assert schedule.local_only() is (seconds < 60)


def test_a_rate_counts_from_its_first_firing_in_real_time() -> None:
    """`rate(1 day)` is 24 hours, also across the night the clocks go back."""
    schedule = parse("rate(1 day)", "Europe/Berlin")
    anchor = utc("2026-10-24T10:00:00")
    assert schedule.next_after(anchor - 5, anchor) == anchor
    assert schedule.next_after(anchor, anchor) == anchor + 86_400
    assert shown(schedule.next_after(anchor + 86_400, anchor)) == "2026-10-26 11:00 CET"
    assert schedule.latest_between(anchor, anchor + 3 * 86_400 + 5, anchor) == anchor + 3 * 86_400
    assert schedule.latest_between(anchor + 3 * 86_400, anchor + 3 * 86_400 + 5, anchor) is None


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # Every day at noon; AWS's own examples.
        (
            "cron(0 12 * * ? *)",
            "2026-12-07T12:00:00",
            ["2026-12-08 12:00 UTC", "2026-12-09 12:00 UTC", "2026-12-10 12:00 UTC"],
        ),
        (
            "cron(15 10 ? * 6L 2026-2027)",
            "2026-11-01T00:00:00",
            ["2026-11-27 10:15 UTC", "2026-12-25 10:15 UTC", "2027-01-29 10:15 UTC"],
        ),
        (
            "cron(0/15 10-16 ? * MON-FRI *)",
            "2026-12-04T16:40:00",
            ["2026-12-04 16:45 UTC", "2026-12-07 10:00 UTC", "2026-12-07 10:15 UTC"],
        ),
        # The last day of the month, February of a leap year included.
        (
            "cron(0 0 L * ? *)",
            "2028-01-15T00:00:00",
            ["2028-01-31 00:00 UTC", "2028-02-29 00:00 UTC", "2028-03-31 00:00 UTC"],
        ),
        # The last weekday: Jan 2027 ends on a Sunday, Jul 2027 on a Saturday.
        (
            "cron(0 18 LW * ? *)",
            "2027-01-01T00:00:00",
            ["2027-01-29 18:00 UTC", "2027-02-26 18:00 UTC", "2027-03-31 18:00 UTC"],
        ),
        # The weekday nearest the 1st never leaves the month (Aug 1 2026 is a Saturday),
        # the one nearest the 15th (Nov 15 2026 is a Sunday) is the Monday after.
        ("cron(0 8 1W 8 ? 2026)", "2026-01-01T00:00:00", ["2026-08-03 08:00 UTC"]),
        ("cron(0 8 15W 11 ? 2026)", "2026-01-01T00:00:00", ["2026-11-16 08:00 UTC"]),
        # Friday the 14th is nearest Saturday the 15th.
        ("cron(0 8 15W 8 ? 2026)", "2026-01-01T00:00:00", ["2026-08-14 08:00 UTC"]),
        # The second Tuesday; the fifth Monday only where a month has one.
        (
            "cron(0 9 ? * 3#2 *)",
            "2026-12-01T00:00:00",
            ["2026-12-08 09:00 UTC", "2027-01-12 09:00 UTC", "2027-02-09 09:00 UTC"],
        ),
        (
            "cron(0 9 ? * MON#5 2026)",
            "2026-09-01T00:00:00",
            ["2026-11-30 09:00 UTC"],
        ),
        # L alone in day-of-week is the week's last day, Saturday; 1 is Sunday.
        (
            "cron(0 9 ? * L *)",
            "2026-12-07T00:00:00",
            ["2026-12-12 09:00 UTC", "2026-12-19 09:00 UTC", "2026-12-26 09:00 UTC"],
        ),
        (
            "cron(0 9 ? * 1 *)",
            "2026-12-07T00:00:00",
            ["2026-12-13 09:00 UTC", "2026-12-20 09:00 UTC", "2026-12-27 09:00 UTC"],
        ),
        # Names, lists and ranges, one wrapping round the week's end.
        (
            "cron(30 7 ? JAN,JUL FRI-SUN 2027)",
            "2027-01-29T08:00:00",
            ["2027-01-30 07:30 UTC", "2027-01-31 07:30 UTC", "2027-07-02 07:30 UTC"],
        ),
        # The year field: once, then never again.
        ("cron(0 10 15 4 ? 2027)", "2026-01-01T00:00:00", ["2027-04-15 10:00 UTC"]),
        ("cron(0 0 1 1 ? 2199)", "2198-06-01T00:00:00", ["2199-01-01 00:00 UTC"]),
        # February 30th never comes: the search ends (with no firing) at 2199.
        ("cron(0 0 30 2 ? *)", "2026-01-01T00:00:00", []),
    ],
)
def test_cron_firings(expression: str, start: str, expected: list[str]) -> None:
    assert firings(expression, start, 3) == expected


def test_at_fires_once_at_its_wall_clock_time() -> None:
    schedule = parse("at(2026-12-24T18:00:00)", "Europe/Berlin")
    assert isinstance(schedule, At)
    assert schedule.moment == utc("2026-12-24T17:00:00")
    assert schedule.next_after(utc("2026-12-24T16:59:59"), 0) == schedule.moment
    assert schedule.next_after(schedule.moment, 0) is None
    assert schedule.latest_between(0, utc("2027-01-01T00:00:00"), 0) == schedule.moment


def test_at_in_the_skipped_hour_is_read_with_the_offset_before_the_change() -> None:
    schedule = parse("at(2027-03-28T02:30:00)", "Europe/Berlin")
    assert isinstance(schedule, At)
    assert shown(schedule.moment) == "2027-03-28 03:30 CEST"


def test_the_newest_firing_of_a_window() -> None:
    """What a restart's catch-up looks for: the last firing in (after, until]."""
    schedule = parse("cron(0/15 * * * ? *)", "Europe/Berlin")
    after, until = utc("2026-10-25T00:20:00"), utc("2026-10-25T01:10:00")
    # 01:00 UTC is 02:00 CET, the second time the clock shows 02:00: no firing then.
    assert schedule.latest_between(after, until, 0.0) == utc("2026-10-25T00:45:00")
    assert schedule.latest_between(after, until + 3000, 0.0) == utc("2026-10-25T02:00:00")
    assert schedule.latest_between(until, until + 60, 0.0) is None
    assert parse("at(2026-12-24T18:00:00)").latest_between(0, utc("2027-01-01T00:00:00"), 0) == (
        utc("2026-12-24T18:00:00")
    )


# -- daylight saving time in Europe/Berlin ---------------------------------------------------


def test_a_time_the_clock_skips_does_not_fire() -> None:
    """On 2027-03-28 Berlin's clocks go from 02:00 to 03:00: 02:30 is skipped that day."""
    assert firings("cron(30 2 * * ? *)", "2027-03-26T12:00:00", 3, "Europe/Berlin") == [
        "2027-03-27 02:30 CET",
        "2027-03-29 02:30 CEST",
        "2027-03-30 02:30 CEST",
    ]


def test_a_time_the_clock_passes_twice_fires_once() -> None:
    """On 2026-10-25 Berlin's clocks go from 03:00 back to 02:00: 02:30 fires once, the
    first time, and an hourly schedule has no second firing in the repeated hour."""
    assert firings("cron(30 2 * * ? *)", "2026-10-24T12:00:00", 2, "Europe/Berlin") == [
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
    ]
    assert firings("cron(0 * * * ? *)", "2026-10-25T01:30:00", 3, "Europe/Berlin") == [
        "2026-10-25 02:00 CEST",
        "2026-10-25 03:00 CET",
        "2026-10-25 04:00 CET",
    ]


def test_wall_clock_times_follow_the_zone() -> None:
    """Noon in Berlin is 11:00 UTC in winter and 10:00 UTC in summer."""
    schedule = parse("cron(0 12 * * ? *)", "Europe/Berlin")
    winter = schedule.next_after(utc("2026-12-07T00:00:00"), 0)
    summer = schedule.next_after(utc("2027-07-07T00:00:00"), 0)
    assert (winter, summer) == (utc("2026-12-07T11:00:00"), utc("2027-07-07T10:00:00"))


# -- refused, with AWS's words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("rate(1 minutes)", "rate(1 ...) is written with 'minute', not 'minutes'"),
        ("rate(5 minute)", "rate(5 ...) is written with 'minutes', not 'minute'"),
        ("rate(0 minutes)", "the rate's value is a positive whole number, not '0'"),
        ("rate(-5 minutes)", "the rate's value is a positive whole number, not '-5'"),
        ("rate(1.5 hours)", "the rate's value is a positive whole number, not '1.5'"),
        ("rate(5 weeks)", "the rate's unit is minute(s), hour(s) or day(s), not 'weeks'"),
        ("rate(5minutes)", "write rate(value unit), cron(minutes hours day-of-month month "),
        (
            "cron(0 12 * * *)",
            "a cron expression has six fields (minutes hours day-of-month month day-of-week "
            "year), not 5",
        ),
        (
            "cron(0 12 * * * *)",
            "day-of-month and day-of-week: exactly one of them must be ?, not both, nor neither",
        ),
        (
            "cron(0 12 ? * ? *)",
            "day-of-month and day-of-week: exactly one of them must be ?, not both, nor neither",
        ),
        (
            "cron(0 12 1 * MON *)",
            "day-of-month and day-of-week: exactly one of them must be ?, not both, nor neither",
        ),
        ("cron(60 12 * * ? *)", "minutes: 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours: 24 is outside 0-23"),
        ("cron(0 0 32 * ? *)", "day-of-month: 32 is outside 1-31"),
        ("cron(0 0 * 13 ? *)", "month: 13 is outside 1-12"),
        ("cron(0 0 ? * 8 *)", "day-of-week: 8 is outside 1-7"),
        ("cron(0 0 ? * 0 *)", "day-of-week: 0 is outside 1-7"),
        ("cron(0 0 * * ? 1969)", "year: 1969 is outside 1970-2199"),
        ("cron(0 0 * * ? 2200)", "year: 2200 is outside 1970-2199"),
        ("cron(0 0 * FOO ? *)", "month: 'FOO' is not a number or a name (JAN-DEC)"),
        ("cron(0/0 0 * * ? *)", "minutes: the increment in '0/0' is not a positive number"),
        ("cron(0 0 ? * 3#6 *)", "day-of-week: '3#6': the number after # is 1-5"),
        ("cron(0 0 ? * 2#1,3#1 *)", "day-of-week: '2#1,3#1': # takes one day (3#2)"),
        ("cron(0 0 ? * 1-5L *)", "day-of-week: '1-5L': L takes one day (5L)"),
        ("cron(0 0 ? * */2 *)", "day-of-week: '*/2': day-of-week takes no / increments"),
        ("cron(0 0 1,L * ? *)", "day-of-month: '1,L': L and W stand alone (L, LW, 15W)"),
        ("cron(0 0 1-5W * ? *)", "day-of-month: '1-5W': W follows one day of the month"),
        ("cron(L 0 * * ? *)", "minutes: 'L' is not a number"),
        ("cron(0 ? * * ? *)", "hours: '?': only , - * / are allowed here"),
        ("cron(0 0 ?5 * ? *)", "day-of-month: '?5': ? stands alone"),
        ("cron(0 0 1,,2 * ? *)", "day-of-month: an empty item in '1,,2'"),
        ("at(2026-12-24 18:00:00)", "at() takes a date and time as yyyy-mm-ddThh:mm:ss"),
        ("at(2026-02-30T18:00:00)", "'2026-02-30T18:00:00' is not a date and time that exists"),
        ("every 5 minutes", "write rate(value unit)"),
        ("", "write rate(value unit)"),
    ],
)
def test_refused_with_aws_words_and_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        parse(expression)
    message = str(refused.value)
    assert message.startswith(f"{INVALID} ({reason}"), message
    assert INVALID == "Parameter ScheduleExpression is not valid."


# -- properties: the search against a brute-force walk --------------------------------------


def _day_matches(day_of_month: str, day_of_week: str, date: dt.date) -> bool:
    """A direct reading of the day fields' definitions, independent of cron.py."""
    length = calendar.monthrange(date.year, date.month)[1]
    aws_weekday = (date.weekday() + 1) % 7 + 1  # Sunday 1 .. Saturday 7
    if day_of_month == "L":
        return date.day == length
    if day_of_month.endswith("W"):
        target = length if day_of_month == "LW" else int(day_of_month[:-1])
        if target > length:
            return False
        weekdays = [
            day for day in range(1, length + 1) if dt.date(date.year, date.month, day).weekday() < 5
        ]
        nearest = min(weekdays, key=lambda day: (abs(day - target), day))
        return date.day == nearest
    if day_of_week.endswith("L") and day_of_week != "L":
        weekday = int(day_of_week[:-1])
        return aws_weekday == weekday and date.day + 7 > length
    if "#" in day_of_week:
        weekday, nth = map(int, day_of_week.split("#"))
        return aws_weekday == weekday and (date.day - 1) // 7 + 1 == nth
    if day_of_week == "L":
        return aws_weekday == 7
    if day_of_month == "?":
        return aws_weekday in _plain(day_of_week, 1, 7)
    return date.day in _plain(day_of_month, 1, 31)


def _plain(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = map(int, base.split("-"))
        else:
            start = int(base)
            end = high if step else start
        values |= set(range(start, end + 1, int(step or 1)))
    return values


def _plain_field(low: int, high: int, steps: bool = True) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    single = number.map(str)
    span = st.tuples(number, number).map(lambda pair: f"{min(pair)}-{max(pair)}")
    stepped = st.tuples(st.sampled_from(["*", *map(str, range(low, high + 1))]), st.integers(1, 9))
    step = stepped.map(lambda pair: f"{pair[0]}/{pair[1]}")
    item = st.one_of(single, span, step) if steps else st.one_of(single, span)
    listed = st.lists(item, min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), listed)


@st.composite
def _cron(draw: st.DrawFn) -> str:
    minutes = draw(_plain_field(0, 59))
    hours = draw(_plain_field(0, 23))
    day_of_month, day_of_week = draw(
        st.one_of(
            _plain_field(1, 31).map(lambda text: (text, "?")),
            _plain_field(1, 7, steps=False).map(lambda text: ("?", text)),
            st.sampled_from(["L", "LW", "1W", "15W", "30W", "31W"]).map(lambda t: (t, "?")),
            st.integers(1, 7).map(lambda day: ("?", f"{day}L")),
            st.tuples(st.integers(1, 7), st.integers(1, 5)).map(lambda p: ("?", f"{p[0]}#{p[1]}")),
            st.just(("?", "L")),
        )
    )
    month = draw(_plain_field(1, 12))
    return f"{minutes} {hours} {day_of_month} {month} {day_of_week} *"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_cron(), day=st.dates(dt.date(2026, 1, 1), dt.date(2030, 12, 31)))
def test_day_rules_match_their_definitions(fields: str, day: dt.date) -> None:
    """Every day-of-month/day-of-week form names exactly the days its definition does."""
    cron = Cron.parse(fields)
    _, _, day_of_month, _, day_of_week, _ = fields.split()
    matching = set(cron.days.days(day.year, day.month))
    assert (day.day in matching) == _day_matches(day_of_month, day_of_week, day)


TRANSITIONS = [utc("2026-03-29T01:00:00"), utc("2026-10-25T01:00:00"), utc("2027-03-28T01:00:00")]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=_cron(),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    near=st.sampled_from(TRANSITIONS),
    offset=st.integers(-2 * 86_400, 2 * 86_400),
)
def test_next_firing_is_the_first_minute_a_brute_force_walk_finds(
    fields: str, zone: str, near: float, offset: int
) -> None:
    """Walking the UTC clock minute by minute (through a daylight saving change), the
    first minute whose wall-clock time matches, and shows that time for the first time,
    is the next firing; none within the walk means none before its end."""
    schedule = parse(f"cron({fields})", zone)
    assert isinstance(schedule, CronSchedule)
    start = near + offset + 17.5
    horizon = 3 * 86_400
    tz = ZoneInfo(zone)
    expected = None
    minute = (int(start) // 60 + 1) * 60
    while minute <= start + horizon:
        wall = dt.datetime.fromtimestamp(minute, tz)
        first_time = wall.fold == 0
        if first_time and schedule.cron.matches(wall.replace(tzinfo=None)):
            expected = float(minute)
            break
        minute += 60
    found = schedule.next_after(start, 0.0)
    if expected is None:
        assert found is None or found > start + horizon
    else:
        assert found == expected, (shown(found, tz), shown(expected, tz))


def test_matches_is_checked_against_the_definitions_too() -> None:
    """The walk above relies on `Cron.matches`, whose day part the day-rule property
    checks; its time part is the plain sets."""
    cron = Cron.parse("5,35 9-10 ? * 2#1 *")
    assert cron.matches(dt.datetime(2026, 12, 7, 9, 35))
    assert not cron.matches(dt.datetime(2026, 12, 7, 11, 5))
    assert not cron.matches(dt.datetime(2026, 12, 14, 9, 5))

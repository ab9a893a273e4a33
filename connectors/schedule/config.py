"""Settings of the `schedule` source: EventBridge schedules that invoke the function."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator

from bridge.config.plugins import ConfigPath, Identity, SourceConfig, SourceContext, SourceFamily
from bridge.protocols import Source
from connectors.schedule.expressions import At, ExpressionError, Schedule, parse

# As EventBridge invokes a function, asynchronously (esm-reference.md 1.10, 12): each
# firing is one invocation of its own, a failing one retried twice and given up after six
# hours, to the on-failure destination if there is one; firings do not wait for each
# other (each is its own key, up to `maximum_concurrency` at once).
SCHEDULE = SourceFamily(
    "schedule",
    batch_size_default=1,
    batch_size_max=1,
    window_default=0.0,
    window_from_first_record=False,
    settings=frozenset(
        {
            "maximum_retry_attempts",
            "maximum_record_age_in_seconds",
            "destination_config",
            "retry_backoff",
            "maximum_concurrency",
            "scaling_config",
        }
    ),
    retry_attempts_default=2,
    record_age_default=21_600,
    concurrency_default=10,
    concurrency_min=1,
    keyed=True,
)

# The longest `catch_up`: a week. Older firings are history, not something to run late.
CATCH_UP_MAX = 7 * 86_400
_DURATION = re.compile(r"(\d+) ?(s|m|h|d|seconds?|minutes?|hours?|days?)")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(value: Any) -> Any:
    """`catch_up`: seconds as a number, or a duration such as `90s`, `15m`, `2 hours`."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError("must be seconds, or a duration such as 90s, 15m, 2h or 1d")
        return int(match[1]) * _DURATION_UNITS[match[2][0]]
    return value


class ScheduleSourceConfig(SourceConfig):
    """A schedule whose firings invoke the function, as an EventBridge rule or an
    EventBridge Scheduler schedule does (connectors/schedule/expressions.py)."""

    checkpoints_in_store = True
    type: Literal["schedule"]
    family = SCHEDULE
    expression: str = Field(
        description="rate(5 minutes), cron(0 12 * * ? *) or at(2026-12-24T18:00:00), as "
        "EventBridge takes them; rate(N seconds) for local development only."
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone cron() and at() are read in (e.g. Europe/Berlin); "
        "daylight saving time as EventBridge Scheduler handles it.",
    )
    input: dict[str, Any] | None = Field(
        None,
        description="JSON the function receives instead of the scheduled event, as "
        "EventBridge Scheduler sends a schedule's input.",
    )
    catch_up: Annotated[float | None, BeforeValidator(_duration)] = Field(
        None,
        gt=0,
        le=CATCH_UP_MAX,
        description="After a restart, deliver the newest firing missed while the daemon was "
        "down if it is at most this old (seconds, or 90s, 15m, 2h, 1d). Default: none, as "
        "on AWS, where a firing missed is not made up.",
    )
    rule_name: str | None = Field(
        None,
        pattern=r"^[\.\-_A-Za-z0-9]{1,64}$",
        description="The rule named in the event's `resources`; default: the mapping's name.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("expression")
    @classmethod
    def _valid_expression(cls, value: str) -> str:
        parse(value)
        return value

    def check_mapping(self, mapping: Any) -> list[tuple[ConfigPath, str]]:
        """An asynchronous invocation's limits (esm-reference.md 12): 0-2 retries, an
        event age of 60 s to 6 hours."""
        problems: list[tuple[ConfigPath, str]] = []
        retries = mapping.maximum_retry_attempts
        if retries is not None and not 0 <= retries <= 2:
            problems.append(
                (("maximum_retry_attempts",), "must be 0 to 2 for schedule sources, as on AWS")
            )
        age = mapping.maximum_record_age_in_seconds
        if age is not None and not 60 <= age <= 21_600:
            problems.append(
                (
                    ("maximum_record_age_in_seconds",),
                    "must be 60 to 21600 for schedule sources, as on AWS",
                )
            )
        return problems

    def schedule(self) -> Schedule:
        return parse(self.expression, self.timezone)

    def source_id(self) -> str:
        return f"schedule:{self.expression}|{self.timezone}"

    def cautions(self) -> list[tuple[ConfigPath, str]]:
        try:
            schedule = self.schedule()
        except ExpressionError:
            return []
        cautions: list[tuple[ConfigPath, str]] = []
        if schedule.local_only():
            cautions.append(
                (
                    ("expression",),
                    "a rate in seconds works only here: on AWS the smallest rate is 1 minute",
                )
            )
        now = time.time()
        if schedule.next_after(now, now) is None:
            when = "is in the past" if isinstance(schedule, At) else "has no firing left"
            cautions.append(
                (("expression",), f"{self.expression} {when}: the schedule will not fire")
            )
        return cautions

    def build(self, context: SourceContext) -> Source:
        from connectors.schedule.source import ScheduleSource

        return ScheduleSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        """The scheduled event of one firing (a firing is one event, whatever `count`)."""
        from connectors.schedule.events import FiringRecords, rule_arn

        records = FiringRecords(
            rule=rule_arn(identity.region, identity.account_id, "nightly-report"),
            expression="cron(0 17 * * ? *)",
            region=identity.region,
            account_id=identity.account_id,
        )
        return records.formatter.encode_event([records.record(1_798_131_600.0)])

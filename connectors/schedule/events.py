"""The event a schedule's firing invokes the function with (esm-reference.md 1.10).

Without `input`, EventBridge's scheduled event:

    {"version": "0", "id": "<uuid>", "detail-type": "Scheduled Event",
     "source": "aws.events", "account": "<account>", "time": "2026-12-24T17:00:00Z",
     "region": "<region>", "resources": ["arn:aws:events:<region>:<account>:rule/<name>"],
     "detail": {}}

`time` is the scheduled time of the firing (UTC, second precision), not the time the
function was invoked. With `input`, the function receives exactly that JSON, as
EventBridge Scheduler sends a schedule's input to its target.

Each firing is one invocation of its own: the event is the record itself, with no
`Records` around it. The `id` is derived from the rule's ARN and the scheduled time
(a name-based UUID), so a firing delivered again after a crash carries the same id and
a handler can tell it is the same firing.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Sequence
from typing import Any

from bridge.codec import dumps
from bridge.failures import iso_millis, iso_seconds
from bridge.pipeline.responses import string_identifier
from bridge.records import Record

# The checkpoint's key in the store (the records' partitions are their firings).
PARTITION = "schedule"
_FIRING_IDS = uuid.UUID("0f8d1c9e-5b7a-4e39-9a55-3c4b2f0d6a17")


def rule_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:events:{region}:{account_id}:rule/{name}"


def scheduled_event(*, firing: float, rule: str, region: str, account_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": firing_id(rule, firing),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": iso_seconds(firing),
        "region": region,
        "resources": [rule],
        "detail": {},
    }


def firing_id(rule: str, firing: float) -> str:
    return str(uuid.uuid5(_FIRING_IDS, f"{rule}|{firing!r}"))


class FiringRecords:
    """Builds the record of each firing of one schedule."""

    def __init__(
        self,
        *,
        rule: str,
        expression: str,
        region: str,
        account_id: str,
        payload: Any = None,
    ) -> None:
        self.rule = rule
        self.region = region
        self.account_id = account_id
        # The schedule's `input`, encoded once: every firing sends the same bytes.
        self._input = None if payload is None else dumps(payload)
        self.formatter = ScheduleEventFormatter(rule, expression)

    def record(self, firing: float) -> Record:
        encoded = self._input
        if encoded is None:
            encoded = dumps(
                scheduled_event(
                    firing=firing, rule=self.rule, region=self.region, account_id=self.account_id
                )
            )
        return Record(
            # Each firing a partition of its own: the core commits a partition as soon as
            # its records are settled, so the source learns of each firing settled, not
            # only of the oldest run of them (a slow firing holds no later one back).
            iso_seconds(firing),
            firing,
            firing_id(self.rule, firing),
            None,
            firing,
            # Every firing on a lane of its own: as on AWS, a slow or failing firing does
            # not hold up the next one (bridge.pipeline.keyed_lanes).
            firing,
            None,
            encoded,
        )


class ScheduleEventFormatter:
    """The event is the one firing's record itself: EventBridge invokes a function once
    per firing, asynchronously (esm-reference.md 1.10, 12), so a batch is one firing."""

    envelope_bytes = 0

    def __init__(self, rule: str, expression: str) -> None:
        self.rule = rule
        self.expression = expression

    def encode_event(self, records: Sequence[Record]) -> bytes:
        (record,) = records
        return record.encode()

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        return string_identifier(raw)

    def stable_position(self, record: Record) -> Any:
        """The scheduled time: a firing delivered again keeps it."""
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """Modelled on the stream sources' batch info (esm-reference.md 10.1), for a
        schedule: which rule, which expression, which firings."""
        first, last = records[0], records[-1]
        return "ScheduleBatchInfo", {
            "ruleArn": self.rule,
            "scheduleExpression": self.expression,
            "firstScheduledTime": iso_millis(first.position),
            "lastScheduledTime": iso_millis(last.position),
            "eventIds": [record.item_id for record in records],
            "batchSize": len(records),
        }

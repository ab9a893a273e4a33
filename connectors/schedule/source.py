"""The `schedule` source: a stream with one partition whose records are the firings of
an EventBridge schedule expression, each delivered as EventBridge invokes a function,
asynchronously (esm-reference.md 1.10, 12).

State (one checkpoint, flushed as soon as a firing is settled): when the schedule was
first started (`since`, which is also where a rate's firings are counted from), the
scheduled time of the newest firing whose outcome is settled (`last`: succeeded, or
given up to the on-failure destination) and the firing last delivered again after a
restart (`redelivered`).

After a restart, the firings after `last` that are already due were missed while the
daemon was down. As on AWS, they are not made up (EventBridge fires a schedule only
while it runs; a rule's firing is an asynchronous invocation, esm-reference.md 12),
unless `catch_up` is set: then the newest of them is delivered once, if it is at most
`catch_up` old. What this promises:

- a settled firing is never delivered again (its time is checkpointed and flushed when
  it is settled; firings run at once and settle in any order, and `last` is the newest);
- a firing in flight when the daemon died is a missed one: delivered again only under
  `catch_up`, only if no later firing was settled (that one did its work), and then at
  most once (`redelivered` is checkpointed and flushed before that firing is handed
  over, so a second crash does not repeat it a third time; if that write fails, the
  firing is skipped).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import structlog

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.config.plugins import SourceContext
from bridge.failures import iso_seconds
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from connectors.schedule.config import ScheduleSourceConfig
from connectors.schedule.events import PARTITION, FiringRecords, rule_arn

# How long read() waits for the next firing before returning an empty list.
IDLE_READ_SECONDS = 0.5
# Firings handed over by one read() when many are due at once (a stalled process).
MAX_FIRINGS_PER_READ = 100


@dataclass
class ScheduleState:
    since: float
    last: float | None = None
    redelivered: float | None = None

    def encode(self) -> str:
        return dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str | None) -> ScheduleState | None:
        if text is None:
            return None
        try:
            fields = loads(text)
            return cls(
                since=float(fields["since"]),
                last=None if fields.get("last") is None else float(fields["last"]),
                redelivered=(
                    None if fields.get("redelivered") is None else float(fields["redelivered"])
                ),
            )
        except (JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class ScheduleSource(Source):
    mode = DeliveryMode.STREAM

    def __init__(self, config: ScheduleSourceConfig, context: SourceContext) -> None:
        self.config = config
        self._schedule = config.schedule()
        identity = context.identity
        self._rule = rule_arn(
            identity.region, identity.account_id, config.rule_name or context.mapping
        )
        self._firings = FiringRecords(
            rule=self._rule,
            expression=config.expression,
            region=identity.region,
            account_id=identity.account_id,
            payload=config.input,
        )
        self.formatter = self._firings.formatter
        self._store = context.checkpoints
        self._namespace = f"{context.mapping}|{config.source_id()}"
        self._state = ScheduleState(since=0.0)
        self._next: float | None = None
        self._due: list[Record] = []
        self._log = structlog.get_logger("connectors.schedule").bind(
            mapping=context.mapping, expression=config.expression
        )

    @property
    def source_arn(self) -> str:
        return self._rule

    async def open(self, ownership: Ownership) -> None:
        stored = await self._store.load(self._namespace)
        state = ScheduleState.decode(stored.get(PARTITION))
        now = time.time()
        if state is None:
            if PARTITION in stored:
                self._log.warning("schedule.checkpoint_unreadable")
            # First start: the schedule begins now (a rate fires at once, as EventBridge
            # Scheduler's rate schedules without a start date do).
            self._state = ScheduleState(since=float(math.floor(now)))
            await self._persist()
            self._next = self._schedule.next_after(self._state.since - 0.001, self._state.since)
        else:
            self._state = state
            self._next = await self._after_downtime(now)
        self._log.info(
            "schedule.started",
            next_firing=None if self._next is None else iso_seconds(self._next),
            last_settled=None if self._state.last is None else iso_seconds(self._state.last),
        )

    async def _after_downtime(self, now: float) -> float | None:
        """Apply the catch-up rule to the firings due while the daemon was down; return
        the next firing to wait for."""
        state = self._state
        settled_until = state.last if state.last is not None else state.since - 0.001
        first_missed = self._schedule.next_after(settled_until, self._state.since)
        if first_missed is None or first_missed > now:
            return first_missed
        catch_up = self.config.catch_up
        newest = None
        if catch_up is not None:
            newest = self._schedule.latest_between(
                max(settled_until, now - catch_up), now, self._state.since
            )
        if newest is not None and newest == state.redelivered:
            self._log.warning("schedule.not_redelivered_again", firing=iso_seconds(newest))
            newest = None
        self._log.warning(
            "schedule.missed",
            first_missed=iso_seconds(first_missed),
            catch_up=catch_up,
            delivering=None if newest is None else iso_seconds(newest),
        )
        if newest is not None:
            state.redelivered = newest
            if await self._persist():
                self._due.append(self._firings.record(newest))
            else:
                # Not on disk, the redelivery could be repeated by another crash: skipped.
                self._log.warning("schedule.catch_up_skipped", firing=iso_seconds(newest))
        return self._schedule.next_after(now, self._state.since)

    async def read(self) -> Sequence[Record]:
        if self._due:
            due, self._due = self._due, []
            return due
        upcoming = self._next
        if upcoming is None:
            await asyncio.sleep(IDLE_READ_SECONDS)
            return []
        wait = upcoming - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, IDLE_READ_SECONDS))
        records: list[Record] = []
        while upcoming is not None and upcoming <= time.time():
            records.append(self._firings.record(upcoming))
            upcoming = self._schedule.next_after(upcoming, self._state.since)
            if len(records) == MAX_FIRINGS_PER_READ:
                break
        self._next = upcoming
        return records

    async def commit(self, positions: Mapping[str, Record]) -> None:
        """Firings settled (each its own partition, so each comes as soon as it is
        settled, in any order): checkpoint the newest, and write it through at once, as a
        settled firing must not come again after a crash."""
        if not positions:
            return
        newest = max(float(record.position) for record in positions.values())
        if self._state.last is not None and newest <= self._state.last:
            return
        self._state.last = newest
        await self._persist()

    async def _persist(self) -> bool:
        """Stage the state and write it through; False if the write failed."""
        await self._store.save(self._namespace, {PARTITION: self._state.encode()})
        try:
            await self._store.flush()
        except Exception as exc:
            # Kept staged: the store writes it with its own retries, and its `problem`
            # shows the mapping Degraded meanwhile.
            self._log.warning("schedule.checkpoint_not_written", error=str(exc))
            return False
        return True

    async def close(self) -> None:
        self._due = []

"""The `schedule` source with the daemon's SQLite checkpoint store: firings as records,
the scheduled event, and the catch-up rule across restarts.

A restart is a new source on the same store, as the daemon's next run builds it. Where
a test needs a downtime longer than it can wait, it writes the checkpoint a run would
have left (the store's own API, the value the source itself writes) instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.codec import loads
from bridge.config.plugins import Identity, SourceContext
from bridge.pipeline import checkpoints
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import Source
from bridge.records import InvokeResult
from bridge.retry import Backoff, RetryPolicy
from bridge.testing import StandaloneOwnership
from connectors.schedule.config import ScheduleSourceConfig
from connectors.schedule.events import PARTITION
from connectors.schedule.source import ScheduleState
from tests.connectors.reading import collect, quiet, run, settle

IDENTITY = Identity(region="eu-central-1", account_id="123456789012")
MAPPING = "nightly"


class Rig:
    """A checkpoint store in a folder, and schedule sources built on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.store = SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3", flush_interval=3600)

    def config(self, **settings: Any) -> ScheduleSourceConfig:
        return ScheduleSourceConfig.model_validate({"type": "schedule", **settings})

    def build(self, **settings: Any) -> Source:
        context = SourceContext(
            mapping=MAPPING,
            identity=IDENTITY,
            checkpoints=self.store,
            state_dir=self.tmp_path / "state",
        )
        return self.config(**settings).build(context)

    @asynccontextmanager
    async def source(self, **settings: Any) -> AsyncIterator[Source]:
        source = self.build(**settings)
        await source.open(StandaloneOwnership())
        try:
            yield source
        finally:
            await source.close()

    async def write_state(self, state: ScheduleState, **settings: Any) -> None:
        """The checkpoint an earlier run of this schedule would have left."""
        namespace = f"{MAPPING}|{self.config(**settings).source_id()}"
        await self.store.save(namespace, {PARTITION: state.encode()})
        await self.store.flush()

    async def stored(self, **settings: Any) -> ScheduleState | None:
        namespace = f"{MAPPING}|{self.config(**settings).source_id()}"
        return ScheduleState.decode((await self.store.load(namespace)).get(PARTITION))


def rig_run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        rig = Rig(tmp_path)
        await rig.store.open()
        try:
            await body(rig)
        finally:
            await rig.store.close()

    run(main)


def at_expression(moment: float) -> str:
    return "at(" + dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + ")"


EVERY_SECOND = {"expression": "rate(1 second)"}


def test_a_rate_fires_at_once_then_on_its_beat_with_the_scheduled_event(tmp_path: Path) -> None:
    """`rate(1 second)`: the first firing at the start, then one a second; each record
    is EventBridge's scheduled event with the scheduled time, and the firings' times
    are the records' positions, in order."""

    async def body(rig: Rig) -> None:
        before = time.time()
        async with rig.source(**EVERY_SECOND) as source:
            records = await collect(source, 3)
        assert len(records) >= 3
        positions = [record.position for record in records]
        assert positions[0] == math.floor(before) or positions[0] == math.ceil(before)
        assert positions == [positions[0] + index for index in range(len(positions))]
        for record in records:
            event = record.payload
            assert event == {
                "version": "0",
                "id": event["id"],
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": dt.datetime.fromtimestamp(record.position, dt.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "region": "eu-central-1",
                "resources": ["arn:aws:events:eu-central-1:123456789012:rule/nightly"],
                "detail": {},
            }
            assert uuid.UUID(event["id"])
            assert record.item_id == event["id"]
            assert record.arrival == record.position
            # The event is the record itself: one firing, one invocation.
            assert loads(source.formatter.encode_event([record])) == event
        assert len({record.payload["id"] for record in records}) == len(records)

    rig_run(tmp_path, body)


def test_input_is_sent_as_it_is_and_the_rule_can_be_named(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        settings = {**EVERY_SECOND, "input": {"job": "rebuild", "depth": [1, 2]}}
        async with rig.source(**settings, rule_name="ops-rule") as source:
            [record, *_] = await collect(source, 1)
            assert record.payload == {"job": "rebuild", "depth": [1, 2]}
            assert source.source_arn == "arn:aws:events:eu-central-1:123456789012:rule/ops-rule"

    rig_run(tmp_path, body)


def test_without_catch_up_firings_missed_while_down_are_skipped(tmp_path: Path) -> None:
    """As on AWS: after a restart the schedule goes on from now; what fell due while
    the daemon was down is not made up, and a settled firing never comes again."""

    async def body(rig: Rig) -> None:
        async with rig.source(**EVERY_SECOND) as source:
            records = await collect(source, 2)
            await settle(source, records)
        settled = records[-1].position
        state = await rig.stored(**EVERY_SECOND)
        assert state is not None and state.last == settled
        # Down for a minute: sixty firings missed.
        await rig.write_state(ScheduleState(since=state.since, last=settled - 60), **EVERY_SECOND)
        reopened = time.time()
        async with rig.source(**EVERY_SECOND) as source:
            [first, *_] = await collect(source, 1)
        assert first.position > reopened

    rig_run(tmp_path, body)


def test_catch_up_delivers_only_the_newest_missed_firing_once(tmp_path: Path) -> None:
    """`catch_up: 120` after two hours down with `rate(1 minute)`: of the 120 missed
    firings only the newest (under a minute old) comes, once; the next one is the next
    on the beat."""
    settings = {"expression": "rate(1 minute)", "catch_up": 120}

    async def body(rig: Rig) -> None:
        now = time.time()
        since = math.floor(now) - 4 * 3600 - 17
        await rig.write_state(ScheduleState(since=since, last=since + 7200), **settings)
        async with rig.source(**settings) as source:
            records = await collect(source, 1)
            records += await quiet(source)
        [record] = records
        assert (record.position - since) % 60 == 0
        assert now - 60 < record.position <= time.time()
        state = await rig.stored(**settings)
        assert state is not None and state.redelivered == record.position

    rig_run(tmp_path, body)


def test_catch_up_takes_nothing_older_than_its_window(tmp_path: Path) -> None:
    """A one-time schedule that fell due 100 s ago while the daemon was down: delivered
    under `catch_up: 200s`, skipped under `catch_up: 50`, and under no catch_up."""

    async def body(rig: Rig) -> None:
        now = math.floor(time.time())
        expression = at_expression(now - 100)
        delivered = {}
        for catch_up in ("200s", 50, None):
            settings = {"expression": expression, "catch_up": catch_up}
            await rig.write_state(ScheduleState(since=now - 1000), **settings)
            async with rig.source(**settings) as source:
                delivered[catch_up] = [record.position for record in await quiet(source)]
        assert delivered == {"200s": [now - 100], 50: [], None: []}

    rig_run(tmp_path, body)


def test_a_firing_in_flight_at_a_crash_is_redelivered_at_most_once(tmp_path: Path) -> None:
    """A firing read and never settled (the daemon died): the next run delivers it
    again under catch_up; if that run dies too, the one after does not repeat it."""

    async def body(rig: Rig) -> None:
        now = math.floor(time.time())
        settings = {"expression": at_expression(now + 1), "catch_up": 3600}
        async with rig.source(**settings) as source:
            first = await collect(source, 1)
        assert [record.position for record in first] == [now + 1]
        async with rig.source(**settings) as source:
            again = await quiet(source)
        assert [record.position for record in again] == [now + 1]
        async with rig.source(**settings) as source:
            assert await quiet(source) == []

    rig_run(tmp_path, body)


class FirstFiringHangs:
    """An invoker whose first firing never ends (a slow one, in flight at the crash);
    every later firing succeeds at once."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.succeeded: list[str] = []
        self.hanging: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        firing = loads(event)["time"]
        if self.first in (None, firing):
            self.first = firing
            self.hanging = asyncio.current_task()
            await asyncio.Event().wait()
        self.succeeded.append(firing)
        return InvokeResult(b"null", request_id)


def test_a_firing_settled_while_an_earlier_one_runs_is_not_caught_up_again(
    tmp_path: Path,
) -> None:
    """Firings run at once (the real mapping, its keyed lanes): the first one still runs
    when the second has succeeded. The daemon dies; restarted within `catch_up`, it does
    not deliver the succeeded firing again (nor the older one it superseded)."""
    settings = {"expression": "rate(2 seconds)", "catch_up": 60}

    async def body(rig: Rig) -> None:
        invoker = FirstFiringHangs()
        runner = MappingRunner(
            name=MAPPING,
            function_arn="arn:aws:lambda:eu-central-1:123456789012:function:f",
            settings=MappingSettings(
                batch=BatchPolicy(max_records=1),
                retry=RetryPolicy(maximum_retry_attempts=2, backoff=Backoff(0.01, 0.05)),
                parallelization_factor=1,
                maximum_concurrency=10,
                keyed=True,
            ),
            source_factory=lambda: rig.build(**settings),
            invoker=invoker,
            destination=None,
        )
        task = asyncio.create_task(runner.run())
        # Until the second firing's success is checkpointed (without the fix it never
        # is: then a second after it succeeded, before the third is due).
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline and not (state and state.last):
            await asyncio.sleep(0.05)
            state = await rig.stored(**settings)
            if invoker.succeeded:
                deadline = min(deadline, time.monotonic() + 1)
        # The crash: the first firing never ends, nothing is drained.
        task.cancel()
        assert invoker.hanging is not None
        invoker.hanging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert invoker.first is not None and invoker.succeeded
        assert invoker.first < invoker.succeeded[0]
        async with rig.source(**settings) as source:
            again = [record.payload["time"] for record in await quiet(source)]
        assert not set(again) & {invoker.first, *invoker.succeeded}

    rig_run(tmp_path, body)


def test_a_catch_up_firing_is_skipped_when_its_redelivery_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most once rests on `redelivered` being on disk before the firing is handed
    over: while the checkpoint file cannot be written, the firing is not delivered."""
    monkeypatch.setattr(checkpoints, "BUSY_TIMEOUT_SECONDS", 0.1)
    settings = {"expression": "rate(1 minute)", "catch_up": 120}

    async def body(rig: Rig) -> None:
        since = math.floor(time.time()) - 3600
        await rig.write_state(ScheduleState(since=since, last=since + 600), **settings)
        holder = sqlite3.connect(rig.tmp_path / "checkpoints.sqlite3", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            async with rig.source(**settings) as source:
                assert await quiet(source) == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    rig_run(tmp_path, body)


def test_at_fires_once_and_never_after_a_restart(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        moment = math.floor(time.time()) + 3
        settings = {"expression": at_expression(moment), "catch_up": "1d"}
        async with rig.source(**settings) as source:
            records = await collect(source, 1)
            records += await quiet(source)
            assert [record.position for record in records] == [moment]
            assert time.time() >= moment
            await settle(source, records)
        async with rig.source(**settings) as source:
            assert await quiet(source) == []

    rig_run(tmp_path, body)


def test_closing_twice_or_unopened_is_harmless(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        context = SourceContext(
            mapping=MAPPING, identity=IDENTITY, checkpoints=rig.store, state_dir=tmp_path
        )
        await rig.config(**EVERY_SECOND).build(context).close()
        async with rig.source(**EVERY_SECOND) as source:
            await collect(source, 1)
            await source.close()
        async with rig.source(**EVERY_SECOND) as source:
            assert await collect(source, 1)

    rig_run(tmp_path, body)


def test_an_unreadable_checkpoint_starts_the_schedule_afresh(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        namespace = f"{MAPPING}|{rig.config(**EVERY_SECOND).source_id()}"
        await rig.store.save(namespace, {PARTITION: "{not json"})
        await rig.store.flush()
        started = math.floor(time.time())
        async with rig.source(**EVERY_SECOND) as source:
            [first, *_] = await collect(source, 1)
        assert first.position >= started
        state = await rig.stored(**EVERY_SECOND)
        assert state is not None and state.since >= started

    rig_run(tmp_path, body)


def test_a_changed_expression_is_a_new_schedule(tmp_path: Path) -> None:
    """The checkpoint belongs to the expression and zone it was made for."""
    one = ScheduleSourceConfig.model_validate({"type": "schedule", **EVERY_SECOND})
    two = ScheduleSourceConfig.model_validate(
        {"type": "schedule", **EVERY_SECOND, "timezone": "Europe/Berlin"}
    )
    assert one.source_id() != two.source_id()


def test_sample_event_is_the_scheduled_event() -> None:
    event = loads(ScheduleSourceConfig.sample_event(3, IDENTITY))
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-12-24T17:00:00Z"
    assert event["resources"] == ["arn:aws:events:eu-central-1:123456789012:rule/nightly-report"]

"""One connected run of a mapping: the reader, the lanes, the tracker and the dispatcher.

The reader takes chunks from the source and routes each record to its lane. Memory is
bounded: a source that can pause single partitions is paused for the partitions of a
lane that is full, so one blocked partition does not stop the others; for other sources
the reader waits until lanes have room. A source that loses partitions (a rebalance,
a lost lease) calls `revoked`: their waiting records are dropped, their retries stop and
they are never checkpointed again by this session.

The session owns the source's background tasks (`spawn`): the first one to fail ends the
session with its error, as a failing read does. Failures the source retries by itself
are reported through `failed`/`recovered` into the mapping's Health (bridge.ops.health).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Coroutine, Hashable, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any

import structlog

from bridge.cancellation import cancelled_from_outside
from bridge.errors import BridgeError, SourceError
from bridge.ops.health import BackgroundTaskFailed, Health, TaskOwner
from bridge.ops.metrics import MappingMetrics
from bridge.pipeline.dispatch import Dispatcher
from bridge.pipeline.journal import MappingJournal
from bridge.pipeline.keyed_lanes import KeyedLane
from bridge.pipeline.lanes import Buffer, Lane, Matcher
from bridge.pipeline.settings import MappingSettings
from bridge.pipeline.tracking import PartitionTracker
from bridge.pipeline.windows import TumblingWindow
from bridge.protocols import Destination, Invoker, Source
from bridge.records import Record

_LANE = attrgetter("lane")

AnyLane = Lane | KeyedLane

# Records read ahead per lane before its partitions are paused (or the reader waits).
READ_AHEAD_BATCHES = 4
# Pausing and resuming a partition costs a fetch round trip, so a pausable source may run
# further ahead per lane before it is paused.
PAUSABLE_READ_AHEAD_RECORDS = 2000
# A lane still full after this long is stuck rather than busy.
STUCK_LANE_SECONDS = 1.0


class Session:
    def __init__(
        self,
        *,
        mapping: str,
        function_arn: str,
        source: Source,
        settings: MappingSettings,
        invoker: Invoker,
        destination: Destination | None,
        stopping: asyncio.Event,
        matches: Matcher | None = None,
        metrics: MappingMetrics | None = None,
        health: Health | None = None,
        journal: MappingJournal | None = None,
    ) -> None:
        self.mapping = mapping
        self.metrics = metrics if metrics is not None else MappingMetrics()
        self.health = health if health is not None else Health()
        self.tasks = TaskOwner(self._task_failed)
        self._task_failure: BackgroundTaskFailed | None = None
        self._task_failed_event = asyncio.Event()
        self._reported: set[str] = set()
        # How long the source keeps a record (a stream's retention), once it says.
        self.retention: float | None = None
        self.source = source
        self.settings = settings
        self.stopping = stopping
        self.matches = matches
        # Queues are acknowledged record by record; streams commit a contiguous position.
        self.mode = source.mode
        self.tracker = None if self.mode.acknowledged else PartitionTracker()
        self.abandoned: set[str] = set()
        self._function_arn = function_arn
        self._invoker = invoker
        self._destination = destination
        # Only streams are journaled: a queue redelivers a crashed batch itself, counting
        # the receive (SQS's ApproximateReceiveCount and redrive policy).
        self._journal = journal if self.tracker is not None else None
        self.dispatcher = self._dispatcher(invoker, self.settle, self._journal)
        self.policy = dataclasses.replace(
            settings.batch, envelope_bytes=source.formatter.envelope_bytes
        )
        self.lane_capacity = settings.batch.max_records * READ_AHEAD_BATCHES
        if source.can_pause:
            self.lane_capacity = max(self.lane_capacity, PAUSABLE_READ_AHEAD_RECORDS)
        concurrent = settings.keyed or not self.mode.ordered
        lanes_wanted = max(
            settings.parallelization_factor, settings.maximum_concurrency if concurrent else 1
        )
        self.buffer = Buffer(self.lane_capacity * lanes_wanted)
        self.lanes: dict[Hashable, AnyLane] = {}
        self._windows: list[TumblingWindow] = []
        self._group: asyncio.TaskGroup | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("bridge.pipeline.mapping").bind(mapping=mapping)

    def _dispatcher(
        self,
        invoker: Invoker,
        settle: Callable[[Sequence[Record]], Awaitable[None]],
        journal: MappingJournal | None = None,
    ) -> Dispatcher:
        return Dispatcher(
            mapping=self.mapping,
            function_arn=self._function_arn,
            invoker=invoker,
            formatter=self.source.formatter,
            policy=self.settings.retry,
            settle=settle,
            release=self.release,
            destination=self._destination,
            stopping=self.stopping,
            abandoned=self.abandoned,
            redelivery_seconds=lambda: self.source.redelivery_seconds,
            retention_seconds=lambda: self.retention,
            metrics=self.metrics,
            health=self,
            journal=journal,
        )

    def _tumbling_window(self) -> TumblingWindow:
        """A lane's own window and dispatcher: its records are held until the window's final
        call, and its events carry the window's fields (esm-reference.md 1.9)."""
        window = TumblingWindow(
            length=self.settings.tumbling_window,
            invoker=self._invoker,
            # Read per event: a stream named in the config has its ARN only once open.
            source_arn=lambda: self.source.source_arn,
            settle=self.settle,
            stopping=self.stopping,
            backoff=self.settings.retry.backoff,
            mapping=self.mapping,
        )
        assert self._group is not None
        self._group.create_task(window.watch(), name=f"{self.mapping}:window")
        self._windows.append(window)
        return window

    # -- settling, called by the dispatcher and lanes --------------------------------

    async def settle(self, records: Sequence[Record]) -> None:
        """Records whose outcome is known: a stream commits the positions this lets
        through, a queue acknowledges the records."""
        if self.tracker is None:
            await self.source.acknowledge(records)
            return
        positions = self.tracker.settle(records)
        if positions:
            await self.source.commit(positions)

    async def release(self, records: Sequence[Record]) -> None:
        if self.tracker is None and records:
            self.metrics.released += len(records)
            await self.source.release(records)

    # -- Ownership -------------------------------------------------------------------

    def revoked(self, partitions: Collection[str]) -> None:
        lost = set(partitions)
        if not lost:
            return
        if self.tracker is not None:
            self.tracker.forget(lost)
        dropped = sum(len(lane.drop(lost)) for lane in self.lanes.values())
        self.metrics.released += dropped
        self.abandoned |= lost
        for lane in self.lanes.values():
            lane.forget_paused(lost)
        self._log.info("partitions.revoked", partitions=sorted(lost), dropped_records=dropped)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.tasks.spawn(work, f"{self.mapping}:{name}")

    def failed(self, component: str, reason: str) -> None:
        self._reported.add(component)
        self.health.failed(component, reason)

    def recovered(self, component: str) -> None:
        self.health.recovered(component)

    def records_expire_after(self, seconds: float) -> None:
        self.retention = seconds

    def lost_to_retention(self, partition: str) -> None:
        self.metrics.retention_gaps += 1

    def leases_changed(self, held: Collection[str], taken: int, lost: int) -> None:
        self.metrics.leases_held = tuple(sorted(held))
        self.metrics.leases_taken += taken
        self.metrics.leases_lost += lost

    def _task_failed(self, failure: BackgroundTaskFailed) -> None:
        if self._task_failure is None:
            self._task_failure = failure
            self.health.failures[failure.task_name.rpartition(":")[2]] += 1
            self._task_failed_event.set()

    async def _watch_tasks(self) -> None:
        """End the session with the first background task failure, until it stops."""
        failed = asyncio.ensure_future(self._task_failed_event.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((failed, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            stopping.cancel()
        failure = self._task_failure
        if failure is not None:
            cause = failure.__cause__
            if isinstance(cause, BridgeError) and not cause.retriable:
                # Refused for good (no permission, ...): the mapping fails with the reason.
                raise cause
            raise failure

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Read and deliver until stopped; raise the first failure of any part."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._watch_tasks(), name=f"{self.mapping}:tasks")
                self._reader = group.create_task(self._read(), name=f"{self.mapping}:reader")
        except BaseExceptionGroup as failures:
            raise _first_error(failures) from None

    async def close(self) -> None:
        """After the source is closed: cancel background tasks it left running, and take
        back the problems this session reported (a new session reports its own)."""
        await self.tasks.close()
        for component in self._reported:
            self.health.recovered(component)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for lane in self.lanes.values():
            lane.wake()
        for window in self._windows:
            window.wake()

    def _lane(self, key: Hashable) -> AnyLane:
        lane = self.lanes.get(key)
        if lane is not None:
            return lane
        if self.settings.keyed:
            lane = KeyedLane(
                policy=self.policy,
                dispatcher=self.dispatcher,
                settle=self.settle,
                buffer=self.buffer,
                stopping=self.stopping,
                capacity=self.lane_capacity,
                on_drained=self._drained,
                matches=self.matches,
                concurrency=self.settings.maximum_concurrency,
            )
            return self._start_lane(key, lane)
        ordered = self.mode.ordered
        window = self._tumbling_window() if self.settings.tumbling_window and self.tracker else None
        dispatcher = self._dispatcher(window.invoker, window.hold) if window else self.dispatcher
        lane = Lane(
            key,
            policy=self.policy,
            dispatcher=dispatcher,
            settle=self.settle,
            release=self.release,
            buffer=self.buffer,
            stopping=self.stopping,
            mode=self.mode,
            capacity=self.lane_capacity,
            on_drained=self._drained,
            matches=self.matches,
            window=window,
            concurrency=1 if ordered else self.settings.maximum_concurrency,
        )
        return self._start_lane(key, lane)

    def _start_lane(self, key: Hashable, lane: AnyLane) -> AnyLane:
        self.lanes[key] = lane
        assert self._group is not None
        self._group.create_task(lane.run(), name=f"{self.mapping}:lane:{key}")
        return lane

    async def _read(self) -> None:
        source = self.source
        pausing = source.can_pause
        try:
            while not self.stopping.is_set():
                records = await source.read()
                if not records:
                    continue
                self.metrics.polled += len(records)
                if self.tracker is not None:
                    self.tracker.track(records)
                if self.abandoned:
                    self.abandoned.difference_update({record.partition for record in records})
                self.buffer.add(len(records))
                touched = self._route(records)
                if pausing:
                    await self._wait_or_pause(touched)
                else:
                    await self.buffer.wait_for_space()
        except asyncio.CancelledError:
            if not cancelled_from_outside():
                # Not ours: a client library let its own cancellation out of a read. A
                # reader that ended here would leave the mapping reading nothing.
                raise SourceError(f"{self.mapping}: the source's client cancelled a read") from None
            if not self.stopping.is_set():
                raise

    def _route(self, records: Sequence[Record]) -> list[AnyLane]:
        if not self.mode.ordered or self.settings.keyed:
            lane = self._lane(None)
            lane.put(list(records))
            return [lane]
        by_lane: dict[Hashable, list[Record]] = {}
        for key, run in groupby(records, _LANE):
            chunk = by_lane.get(key)
            if chunk is None:
                by_lane[key] = list(run)
            else:
                chunk.extend(run)
        touched = []
        for key, chunk in by_lane.items():
            lane = self._lane(key)
            lane.put(chunk)
            touched.append(lane)
        return touched

    async def _wait_or_pause(self, lanes: list[AnyLane]) -> None:
        """A full lane that is busy soon has room again: wait for it, as reading more now
        would only pile up. One that stays full is stuck (retrying a failing batch): pause
        its partitions so the others keep flowing."""
        for lane in lanes:
            if (
                lane.paused is None
                and lane.waiting >= self.lane_capacity
                and not await lane.wait_for_room(STUCK_LANE_SECONDS)
            ):
                self.source.pause(lane.pause_waiting())

    def _drained(self, lane: AnyLane) -> None:
        partitions = lane.take_paused()
        if partitions:
            self.source.resume(partitions)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure in a task group, looking through nested groups."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]

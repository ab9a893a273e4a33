"""The mapping worker: reader -> lanes -> dispatcher -> settle, restarted with backoff.

A session opens the source, reads in chunks, routes each record to its lane and settles
records once their outcome is known. If the source fails, the session ends without
acknowledging anything unsettled and a new one starts after a backoff; other mappings
are not affected. A permanent error (access denied, not found) marks the mapping Failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence

import structlog

from bridge.dispatch import Dispatcher
from bridge.errors import BridgeError
from bridge.lanes import Buffer, Lane, Matcher
from bridge.protocols import Destination, Invoker, Source
from bridge.records import Record
from bridge.retry import Backoff, sleep_unless
from bridge.settings import MappingSettings
from bridge.tracking import PartitionTracker

# Records read ahead per lane before the reader waits, in batches.
READ_AHEAD_BATCHES = 4
# A session that ran this long resets the reconnect backoff.
HEALTHY_SESSION_SECONDS = 30.0
RECONNECT_BACKOFF = Backoff(initial=0.5, maximum=30.0)


class MappingState(enum.Enum):
    CONNECTING = "Connecting"
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    FAILED = "Failed"
    STOPPED = "Stopped"


class MappingRunner:
    def __init__(
        self,
        *,
        name: str,
        function_arn: str,
        settings: MappingSettings,
        source_factory: Callable[[], Source],
        invoker: Invoker,
        destination: Destination | None,
        matches: Matcher | None = None,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
    ) -> None:
        self.name = name
        self.function_arn = function_arn
        self.settings = settings
        self._source_factory = source_factory
        self._invoker = invoker
        self._destination = destination
        self._matches = matches
        self._reconnect_backoff = reconnect_backoff
        self._stopping = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._lanes: dict[Hashable, Lane] = {}
        self.state = MappingState.CONNECTING
        self.state_reason = ""
        self._log = structlog.get_logger("bridge.mapping").bind(mapping=name)

    def stop(self) -> None:
        """Stop reading; lanes finish the batch they are delivering and take no new one."""
        self._stopping.set()
        if self._reader is not None:
            self._reader.cancel()
        for lane in self._lanes.values():
            lane.wake()

    def _set_state(self, state: MappingState, reason: str = "") -> None:
        self.state, self.state_reason = state, reason

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            source = self._source_factory()
            started = time.monotonic()
            try:
                self._set_state(MappingState.CONNECTING)
                await source.open()
                self._set_state(MappingState.ENABLED)
                self._log.info("mapping.started", ordered=source.ordered)
                await self._session(source)
            except BridgeError as exc:
                if not exc.retriable:
                    self._set_state(MappingState.FAILED, str(exc))
                    self._log.error("mapping.failed", error=str(exc), error_type=type(exc).__name__)
                    return
                failures = self._note_failure(exc, started, failures)
            except Exception as exc:
                failures = self._note_failure(exc, started, failures)
            finally:
                await self._close(source)
            if not self._stopping.is_set():
                delay = self._reconnect_backoff.delay(failures)
                self._log.warning("mapping.reconnecting", attempt=failures, delay=round(delay, 3))
                await sleep_unless(self._stopping, delay)
        self._set_state(MappingState.STOPPED)
        self._log.info("mapping.stopped")

    def _note_failure(self, exc: Exception, started: float, failures: int) -> int:
        if time.monotonic() - started > HEALTHY_SESSION_SECONDS:
            failures = 0
        self._set_state(MappingState.CONNECTING, str(exc))
        self._log.error(
            "mapping.source_failed",
            error=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            exc_info=not isinstance(exc, BridgeError),
        )
        return failures + 1

    async def _close(self, source: Source) -> None:
        try:
            await source.close()
        except Exception as exc:
            self._log.warning("mapping.close_failed", error=str(exc))

    async def _session(self, source: Source) -> None:
        settings = self.settings
        tracker = PartitionTracker() if source.ordered else None

        async def settle(records: Sequence[Record]) -> None:
            checkpoints = tracker.settle(records) if tracker is not None else {}
            await source.settle(records, checkpoints)

        async def release(records: Sequence[Record]) -> None:
            if tracker is None and records:
                await source.release(records)

        dispatcher = Dispatcher(
            mapping=self.name,
            function_arn=self.function_arn,
            invoker=self._invoker,
            formatter=source.formatter,
            policy=settings.retry,
            settle=settle,
            release=release,
            destination=self._destination,
            stopping=self._stopping,
        )
        lanes_wanted = max(
            settings.parallelization_factor,
            settings.maximum_concurrency if not source.ordered else 1,
        )
        buffer = Buffer(settings.batch.max_records * READ_AHEAD_BATCHES * lanes_wanted)
        self._lanes = {}
        try:
            await self._run_lanes(
                source=source,
                tracker=tracker,
                buffer=buffer,
                dispatcher=dispatcher,
                settle=settle,
                release=release,
            )
        except BaseExceptionGroup as group:
            raise _first_error(group) from None

    async def _run_lanes(
        self,
        *,
        source: Source,
        tracker: PartitionTracker | None,
        buffer: Buffer,
        dispatcher: Dispatcher,
        settle: Callable[[Sequence[Record]], Awaitable[None]],
        release: Callable[[Sequence[Record]], Awaitable[None]],
    ) -> None:
        settings = self.settings
        policy = dataclasses.replace(settings.batch, envelope_bytes=source.formatter.envelope_bytes)
        async with asyncio.TaskGroup() as group:

            def lane_for(key: Hashable) -> Lane:
                lane = Lane(
                    key,
                    policy=policy,
                    dispatcher=dispatcher,
                    settle=settle,
                    release=release,
                    buffer=buffer,
                    stopping=self._stopping,
                    matches=self._matches,
                    ordered=source.ordered,
                    concurrency=1 if source.ordered else settings.maximum_concurrency,
                )
                self._lanes[key] = lane
                group.create_task(lane.run(), name=f"{self.name}:lane:{key}")
                return lane

            self._reader = group.create_task(
                self._read(source, tracker, buffer, lane_for), name=f"{self.name}:reader"
            )

    async def _read(
        self,
        source: Source,
        tracker: PartitionTracker | None,
        buffer: Buffer,
        lane_for: Callable[[Hashable], Lane],
    ) -> None:
        lanes = self._lanes
        try:
            while not self._stopping.is_set():
                records = await source.read()
                if not records:
                    continue
                if tracker is not None:
                    tracker.track(records)
                buffer.add(len(records))
                if not source.ordered:
                    (lanes.get(None) or lane_for(None)).put(list(records))
                else:
                    self._route(records, lane_for)
                await buffer.wait_for_space()
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise

    def _route(self, records: Sequence[Record], lane_for: Callable[[Hashable], Lane]) -> None:
        by_lane: dict[Hashable, list[Record]] = {}
        current: Hashable = object()
        append = None
        for record in records:
            if record.lane != current:
                current = record.lane
                chunk = by_lane.get(current)
                if chunk is None:
                    chunk = by_lane[current] = []
                append = chunk.append
            append(record)  # type: ignore[misc]
        lanes = self._lanes
        for key, chunk in by_lane.items():
            (lanes.get(key) or lane_for(key)).put(chunk)

    @property
    def lanes(self) -> dict[Hashable, Lane]:
        return self._lanes


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure in a task group, looking through nested groups."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]

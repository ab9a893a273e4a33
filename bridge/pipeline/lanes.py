"""Lanes: where records wait, are batched and are handed to the dispatcher.

Every record of a lane is delivered in order with at most one batch in flight, which is
how ordered sources keep each partition (or partition key) in order (architecture.md
section 3, rule 2). A `QUEUE` source uses one lane that runs up to
`maximum_concurrency` batches at once. Records cross from the reader to a lane in
chunks, so the hot path has no per-record await.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from typing import Any

import structlog

from bridge.pipeline.batching import BatchBuilder, BatchPolicy
from bridge.pipeline.dispatch import Dispatcher
from bridge.pipeline.windows import TumblingWindow
from bridge.protocols import DeliveryMode
from bridge.records import Record

Matcher = Callable[[Record], bool]

_log = structlog.get_logger("bridge.pipeline.lanes")
Settle = Callable[[Sequence[Record]], Awaitable[None]]


class Buffer:
    """Counts records read but not yet batched, so the reader waits when too many pile up."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self._space = asyncio.Event()
        self._space.set()

    def add(self, count: int) -> None:
        self.count += count
        if self.count >= self.capacity:
            self._space.clear()

    def remove(self, count: int) -> None:
        self.count -= count
        if self.count < self.capacity:
            self._space.set()

    async def wait_for_space(self) -> None:
        await self._space.wait()


class Inbox:
    """What every kind of lane keeps for the session's backpressure: how many records
    wait, `wait_for_room` until they are down to `low_water`, and `on_drained` to resume
    the partitions paused for it (`paused`)."""

    def __init__(
        self, capacity: int, on_drained: Callable[[Any], None] | None, concurrency: int
    ) -> None:
        self._queued = 0
        # Batches delivered in the background (at most `concurrency` at once), and the
        # first failure of one, which fails the lane.
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._failure: Exception | None = None
        self._arrived = asyncio.Event()
        # Set while the source is paused for this lane's partitions; `on_drained` is
        # called once the inbox is down to `low_water`.
        self.paused: frozenset[str] | None = None
        self.capacity = capacity
        self.low_water = capacity // 2
        self._on_drained = on_drained
        self._room = asyncio.Event()
        self._room.set()

    def wake(self) -> None:
        self._arrived.set()

    def pause_waiting(self) -> frozenset[str]:
        """The partitions of the records waiting here, now paused at the source for this
        lane until it drains (`on_drained`)."""
        self.paused = self.waiting_partitions()
        return self.paused

    def take_paused(self) -> frozenset[str]:
        """The partitions paused for this lane, to resume now."""
        partitions, self.paused = self.paused, None
        return partitions or frozenset()

    def forget_paused(self, partitions: set[str]) -> None:
        """These partitions are no longer ours: never resume them for this lane."""
        if self.paused is not None and self.paused & partitions:
            self.paused = self.paused - partitions or None

    def waiting_partitions(self) -> frozenset[str]:
        raise NotImplementedError

    def _deliver_in_background(
        self, delivery: Coroutine[Any, Any, Any], after: Callable[[], None] | None = None
    ) -> None:
        """Run a batch's delivery as a task holding a slot; `after` runs once it is done."""
        task = asyncio.create_task(self._delivering(delivery, after))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _delivering(
        self, delivery: Coroutine[Any, Any, Any], after: Callable[[], None] | None
    ) -> None:
        try:
            await delivery
        except Exception as exc:
            # Settling, releasing or giving up failed (the source is broken): fail the
            # lane, and with it the session, rather than lose the error in a task nobody
            # awaits.
            self._failure = exc
            self._arrived.set()
        finally:
            self._slots.release()
            if after is not None:
                after()

    async def _end_deliveries(self) -> None:
        """Wait for the batches in flight; raise the first failure of one."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._failure is not None:
            raise self._failure

    @property
    def waiting(self) -> int:
        return self._queued

    def _taken(self, count: int) -> None:
        """`count` records left the inbox for a batch."""
        self._queued -= count
        if self._queued <= self.low_water:
            self._room.set()
            if self.paused is not None and self._on_drained is not None:
                self._on_drained(self)

    async def wait_for_room(self, patience: float) -> bool:
        """Wait until the inbox is down to `low_water`; False if it is still full after
        `patience` seconds (the lane is stuck, not just busy)."""
        if self._queued < self.capacity:
            return True
        self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), patience)
        except TimeoutError:
            return False
        return True


class Lane(Inbox):
    """Batches the records routed to it and delivers them through the dispatcher."""

    def __init__(
        self,
        key: Hashable,
        *,
        policy: BatchPolicy,
        dispatcher: Dispatcher,
        settle: Settle,
        release: Settle,
        buffer: Buffer,
        stopping: asyncio.Event,
        mode: DeliveryMode,
        capacity: int,
        on_drained: Callable[[Any], None] | None = None,
        matches: Matcher | None = None,
        window: TumblingWindow | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity, on_drained, concurrency)
        self.key = key
        self._policy = policy
        self._dispatcher = dispatcher
        self._settle = settle
        self._release = release
        self._buffer = buffer
        self._stopping = stopping
        self._matches = matches
        self._ordered = mode.ordered
        self._redelivered = mode.acknowledged
        self._window = window
        self._clock = clock
        self._chunks: deque[list[Record]] = deque()
        self._busy = False

    def put(self, records: list[Record]) -> None:
        self._chunks.append(records)
        self._queued += len(records)
        self._arrived.set()

    @property
    def in_flight(self) -> int:
        """Batches being delivered right now."""
        return int(self._busy) if self._ordered else len(self._in_flight)

    async def run(self) -> None:
        builder = BatchBuilder(self._policy)
        try:
            while not self._stopping.is_set():
                if not self._ordered:
                    await self._slots.acquire()
                builder.open_window(self._clock())
                records = await self._collect(builder)
                if self._stopping.is_set():
                    if not self._ordered:
                        self._slots.release()
                        await self._release(records)
                    break
                if self._ordered:
                    self._busy = True
                    try:
                        await self._deliver_in_order(records)
                    finally:
                        self._busy = False
                else:
                    self._deliver_in_background(self._dispatcher.deliver_once(records))
        finally:
            await self._end_deliveries()

    async def _deliver_in_order(self, records: list[Record]) -> None:
        if self._window is not None:
            await self._window.deliver(records, self._dispatcher.deliver_in_order)
            return
        if not self._redelivered:
            await self._dispatcher.deliver_in_order(records)
            return
        # An ordered queue (SQS FIFO): a message group with a failure is blocked, so its
        # later messages waiting here go back too and come again after it (esm-reference.md 5.3).
        blocked = await self._dispatcher.deliver_once(records)
        if blocked:
            await self._release(self.drop(blocked))

    def _take(self, count: int) -> list[Record]:
        """Up to `count` records from the front of the inbox, in order."""
        chunks = self._chunks
        head = chunks[0]
        if len(head) <= count:
            chunks.popleft()
            taken = head
        else:
            taken = head[:count]
            chunks[0] = head[count:]
        self._taken(len(taken))
        return taken

    def waiting_partitions(self) -> frozenset[str]:
        """Partitions of the records waiting in the inbox."""
        return frozenset(record.partition for chunk in self._chunks for record in chunk)

    def drop(self, partitions: set[str]) -> list[Record]:
        """Take the waiting records of these partitions out of the inbox and return them."""
        dropped = [
            record for chunk in self._chunks for record in chunk if record.partition in partitions
        ]
        if dropped:
            kept = (
                [record for record in chunk if record.partition not in partitions]
                for chunk in self._chunks
            )
            self._chunks = deque(chunk for chunk in kept if chunk)
            self._queued -= len(dropped)
            self._buffer.remove(len(dropped))
        return dropped

    async def _collect(self, builder: BatchBuilder) -> list[Record]:
        """Fill `builder` from the inbox until the batch is due or the mapping stops."""
        matches = self._matches
        while True:
            if self._failure is not None:
                self._return(builder.take())
                raise self._failure
            now = self._clock()
            no_room = False
            while self._queued and not builder.full:
                candidates = self._take(builder.room)
                self._buffer.remove(len(candidates))
                if matches is not None:
                    kept: list[Record] = []
                    filtered: list[Record] = []
                    for record in candidates:
                        (kept if matches(record) else filtered).append(record)
                    if filtered:
                        # Filtered out: settled at once, never delivered (esm-reference.md 11.5).
                        candidates = kept
                        _log.debug(
                            "records.filtered",
                            mapping=self._dispatcher.mapping,
                            count=len(filtered),
                        )
                        await self._settle(filtered)
                if not candidates:
                    continue
                accepted = builder.add_many(candidates, now)
                if accepted == len(candidates):
                    continue
                if accepted == 0 and not builder.records:
                    self._return(candidates[1:])
                    oversized = self._dispatcher.oversized(candidates[0], self._policy.max_bytes)
                    await self._dispatcher.discard(oversized)
                    continue
                self._return(candidates[accepted:])
                no_room = True
                break
            if no_room or builder.due(now) or self._stopping.is_set():
                return builder.take()
            deadline = builder.deadline()
            timeout = None if deadline is None else max(deadline - now, 0.0)
            if not self._queued:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)

    def _return(self, records: list[Record]) -> None:
        """Put records that did not fit back at the front of the inbox."""
        if records:
            self._chunks.appendleft(records)
            self._queued += len(records)
            self._buffer.add(len(records))

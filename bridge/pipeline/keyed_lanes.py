"""A keyed lane: records stay in order per key, different keys never wait for each other.

This is how S3 notifications reach Lambda: every object's events are invoked on their own
and asynchronously (esm-reference.md 1.10, 12), so one object that keeps failing holds up
nothing but that object's later events. The lane runs up to `concurrency` batches at
once; a batch may hold records of several keys (batching many files into one event is
still possible with `batch_size` > 1), but a key with a batch in flight (being delivered
or retried) is not taken into another one until that batch is settled or given up, so each
key's records are delivered in order. Keys take turns in the order their records arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial
from typing import Any

import structlog

from bridge.pipeline.batching import BatchBuilder, BatchPolicy
from bridge.pipeline.dispatch import Dispatcher
from bridge.pipeline.lanes import Buffer, Inbox, Matcher
from bridge.records import Record

Settle = Callable[[Sequence[Record]], Awaitable[None]]
_log = structlog.get_logger("bridge.pipeline.lanes")


class KeyedLane(Inbox):
    def __init__(
        self,
        *,
        policy: BatchPolicy,
        dispatcher: Dispatcher,
        settle: Settle,
        buffer: Buffer,
        stopping: asyncio.Event,
        capacity: int,
        on_drained: Callable[[Any], None] | None = None,
        matches: Matcher | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity, on_drained, concurrency)
        self.key: Hashable = None
        self._policy = policy
        self._dispatcher = dispatcher
        self._settle = settle
        self._buffer = buffer
        self._stopping = stopping
        self._matches = matches
        self._clock = clock
        # Waiting records per key (never an empty queue), the keys that may go into the
        # next batch (waiting and not held by a batch in flight), and the held keys.
        self._queues: dict[Hashable, deque[Record]] = {}
        self._ready: dict[Hashable, None] = {}
        self._busy: set[Hashable] = set()

    # -- what the session sees ---------------------------------------------------------

    def put(self, records: list[Record]) -> None:
        queues, ready, busy = self._queues, self._ready, self._busy
        for record in records:
            key = record.lane
            queue = queues.get(key)
            if queue is None:
                queue = queues[key] = deque()
                if key not in busy:
                    ready[key] = None
            queue.append(record)
        self._queued += len(records)
        self._arrived.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def waiting_partitions(self) -> frozenset[str]:
        return frozenset(record.partition for queue in self._queues.values() for record in queue)

    def drop(self, partitions: set[str]) -> list[Record]:
        """Take the waiting records of these partitions out and return them."""
        dropped: list[Record] = []
        for key in list(self._queues):
            queue = self._queues[key]
            kept = deque(record for record in queue if record.partition not in partitions)
            if len(kept) == len(queue):
                continue
            dropped += [record for record in queue if record.partition in partitions]
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
                self._ready.pop(key, None)
        self._queued -= len(dropped)
        self._buffer.remove(len(dropped))
        return dropped

    # -- delivering --------------------------------------------------------------------

    async def run(self) -> None:
        builder = BatchBuilder(self._policy)
        try:
            while not self._stopping.is_set():
                await self._slots.acquire()
                builder.open_window(self._clock())
                records = await self._collect(builder)
                if self._stopping.is_set() or not records:
                    # Collected but not delivered: unsettled, so delivered after a restart.
                    self._slots.release()
                    self._release_keys({record.lane for record in records})
                    break
                self._deliver_in_background(
                    self._dispatcher.deliver_in_order(records),
                    partial(self._release_keys, {record.lane for record in records}),
                )
        finally:
            await self._end_deliveries()

    def _release_keys(self, keys: set[Hashable]) -> None:
        for key in keys:
            self._busy.discard(key)
            if key in self._queues:
                self._ready[key] = None
        self._arrived.set()

    def _take(self, key: Hashable, count: int) -> list[Record]:
        """Up to `count` records of `key`, oldest first; the key is then held."""
        queue = self._queues[key]
        taken = [queue.popleft() for _ in range(min(count, len(queue)))]
        if not queue:
            del self._queues[key]
        del self._ready[key]
        self._busy.add(key)
        self._taken(len(taken))
        self._buffer.remove(len(taken))
        return taken

    def _put_back(self, key: Hashable, records: list[Record]) -> None:
        """Records of `key` that did not fit go back to the front of its queue."""
        if not records:
            return
        queue = self._queues.setdefault(key, deque())
        queue.extendleft(reversed(records))
        self._queued += len(records)
        self._buffer.add(len(records))

    async def _collect(self, builder: BatchBuilder) -> list[Record]:
        """Fill `builder` from the ready keys until the batch is due or the mapping stops;
        the keys taken stay held until the batch is done."""
        matches = self._matches
        while True:
            if self._failure is not None:
                records = builder.take()
                self._release_keys({record.lane for record in records})
                raise self._failure
            now = self._clock()
            no_room = False
            while self._ready and not builder.full:
                key = next(iter(self._ready))
                candidates = self._take(key, builder.room)
                if matches is not None:
                    kept: list[Record] = []
                    filtered: list[Record] = []
                    for record in candidates:
                        (kept if matches(record) else filtered).append(record)
                    if filtered:
                        # Filtered out: settled at once, never delivered (esm-reference.md 11.5).
                        _log.debug(
                            "records.filtered",
                            mapping=self._dispatcher.mapping,
                            count=len(filtered),
                        )
                        await self._settle(filtered)
                        candidates = kept
                if not candidates:
                    self._release_keys({key})
                    continue
                accepted = builder.add_many(candidates, now)
                if accepted == len(candidates):
                    continue
                if accepted == 0 and not builder.records:
                    self._put_back(key, candidates[1:])
                    oversized = self._dispatcher.oversized(candidates[0], self._policy.max_bytes)
                    try:
                        await self._dispatcher.discard(oversized)
                    finally:
                        self._release_keys({key})
                    continue
                self._put_back(key, candidates[accepted:])
                if accepted == 0:
                    self._release_keys({key})
                no_room = True
                break
            if no_room or builder.due(now) or self._stopping.is_set():
                return builder.take()
            deadline = builder.deadline()
            timeout = None if deadline is None else max(deadline - now, 0.0)
            if not self._ready:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)

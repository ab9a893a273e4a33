"""Fakes shipped with the package: an in-memory source, invokers and a destination.

They implement the same protocols as the real connectors, so tests and benchmarks run
the real pipeline (lanes, batching, dispatch, tracking) without any service.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from operator import attrgetter
from typing import Any

from bridge.codec import loads
from bridge.failures import failure_document
from bridge.ops.health import BackgroundTaskFailed, Health, TaskOwner
from bridge.pipeline.events import RecordsEventFormatter
from bridge.protocols import DeliveryMode, EventFormatter, Ownership, Source
from bridge.records import Delivery, FailureRecord, InvokeResult, Record

_PARTITION = attrgetter("partition")


class StandaloneOwnership:
    """An Ownership for a source opened outside a mapping (tests, tools): it records
    revocations and reported problems and runs the source's background tasks, keeping
    the first failure of one in `task_failure`."""

    def __init__(self) -> None:
        self.revoked_partitions: list[list[str]] = []
        self.retention: float | None = None
        self.lost: list[str] = []
        self.leases_held: list[str] | None = None
        self.health = Health()
        self.task_failure: BackgroundTaskFailed | None = None
        self.tasks = TaskOwner(self._task_failed)

    def _task_failed(self, failure: BackgroundTaskFailed) -> None:
        if self.task_failure is None:
            self.task_failure = failure

    def revoked(self, partitions: Collection[str]) -> None:
        self.revoked_partitions.append(sorted(partitions))

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.tasks.spawn(work, name)

    def failed(self, component: str, reason: str) -> None:
        self.health.failed(component, reason)

    def recovered(self, component: str) -> None:
        self.health.recovered(component)

    def records_expire_after(self, seconds: float) -> None:
        self.retention = seconds

    def lost_to_retention(self, partition: str) -> None:
        self.lost.append(partition)

    def leases_changed(self, held: Collection[str], taken: int, lost: int) -> None:
        self.leases_held = sorted(held)


class MemoryEventFormatter(RecordsEventFormatter):
    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        return "MemoryBatchInfo", {
            "partitions": sorted({record.partition for record in records}),
            "startPosition": str(records[0].position),
            "endPosition": str(records[-1].position),
            "batchSize": len(records),
        }


def generate_records(
    count: int,
    *,
    partitions: int = 1,
    arrival: float = 0.0,
    payload: Callable[[int], dict[str, Any]] | None = None,
) -> Iterator[Record]:
    """`count` records spread round-robin over `partitions`, positions counting per partition."""
    build = payload or (lambda index: {"id": index})
    names = [f"p{number}" for number in range(partitions)]
    for index in range(count):
        partition = names[index % partitions]
        yield Record(partition, index // partitions, str(index), build(index), arrival, partition)


def memory_records(count: int, **options: Any) -> list[Record]:
    return list(generate_records(count, **options))


class MemorySource(Source):
    """Serves a fixed list of records in chunks and remembers how each was settled:
    `settled` holds the records acknowledged (queues) or, for a stream, every record
    up to each committed position, in order. With `keep=False` it only counts them (a
    stream's records must then have consecutive integer positions per partition)."""

    source_arn = ""

    def __init__(
        self,
        records: Iterable[Record],
        *,
        total: int | None = None,
        mode: DeliveryMode = DeliveryMode.STREAM,
        chunk: int = 1000,
        keep: bool = True,
        pausable: bool = False,
        redelivery_seconds: float | None = None,
    ) -> None:
        if total is None:
            records = list(records)
            total = len(records)
        self._pending = iter(records)
        self.total = total
        self.mode = mode
        self._chunk = chunk
        self._keep = keep
        self.formatter = MemoryEventFormatter()
        self.settled: list[Record] = []
        self.settled_count = 0
        self.served = 0
        self.released: list[Record] = []
        self.checkpoints: dict[str, Record] = {}
        self.all_settled = asyncio.Event()
        self.can_pause = pausable
        self._redelivery_seconds = redelivery_seconds
        # Per partition, the records served and not yet committed (streams).
        # Per partition, the records served (streams) and how many of them are committed.
        self._served: dict[str, list[Record]] = {}
        self._committed: dict[str, int] = {}
        self.paused: set[str] = set()
        self.pause_calls: list[frozenset[str]] = []
        self._held: list[Record] = []

    @property
    def redelivery_seconds(self) -> float | None:
        return self._redelivery_seconds

    async def open(self, ownership: Ownership) -> None:
        self.ownership = ownership

    def pause(self, partitions: Collection[str]) -> None:
        self.paused |= set(partitions)
        self.pause_calls.append(frozenset(partitions))

    def resume(self, partitions: Collection[str]) -> None:
        self.paused -= set(partitions)

    async def read(self) -> Sequence[Record]:
        """The next chunk; records of paused partitions are held back, in order, until
        their partition is resumed."""
        fresh = list(itertools.islice(self._pending, self._chunk))
        if not self.paused and not self._held:
            chunk = fresh
        else:
            candidates, self._held, chunk = self._held + fresh, [], []
            for record in candidates:
                (self._held if record.partition in self.paused else chunk).append(record)
        self.served += len(chunk)
        if self._keep and not self.mode.acknowledged:
            served = self._served
            for partition, run in itertools.groupby(chunk, _PARTITION):
                records = served.get(partition)
                if records is None:
                    served[partition] = list(run)
                else:
                    records.extend(run)
        if not chunk:
            await asyncio.sleep(0.01)
        return chunk

    async def acknowledge(self, records: Sequence[Record]) -> None:
        if self._keep:
            self.settled.extend(records)
        self._count(len(records))

    async def commit(self, positions: Mapping[str, Record]) -> None:
        if not self._keep:
            # Counted from the positions alone, consecutive integers per partition as
            # generate_records makes them: the benchmarks measure the pipeline, not this.
            committed = self._committed
            for partition, newest in positions.items():
                self._count(newest.position + 1 - committed.get(partition, 0))
                committed[partition] = newest.position + 1
            return
        for partition, newest in positions.items():
            served = self._served[partition]
            done = self._committed.get(partition, 0)
            end = served.index(newest, done) + 1
            if self._keep:
                self.settled.extend(served[done:end])
            self._count(end - done)
            if end > 4096 and end * 2 > len(served):
                del served[:end]
                end = 0
            self._committed[partition] = end
        if self._keep:
            self.checkpoints.update(positions)

    def _count(self, settled: int) -> None:
        self.settled_count += settled
        if self.settled_count >= self.total:
            self.all_settled.set()

    async def release(self, records: Sequence[Record]) -> None:
        self.released.extend(records)

    async def close(self) -> None:
        return None


Behaviour = Callable[[dict[str, Any], str], InvokeResult | Awaitable[InvokeResult]]


class ScriptedInvoker:
    """Answers each invocation with `behaviour(event, request_id)`; records every event."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self._behaviour = behaviour
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        document = loads(event)
        self.events.append(document)
        if self._behaviour is None:
            return InvokeResult(payload=b"null", request_id=request_id)
        answer = self._behaviour(document, request_id)
        if isinstance(answer, InvokeResult):
            return answer
        return await answer

    async def close(self) -> None:
        return None


class NoopInvoker:
    """Succeeds at once without reading the event: the cheapest possible function."""

    def __init__(self) -> None:
        self.invocations = 0

    async def start(self) -> None:
        return None

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        self.invocations += 1
        return InvokeResult(payload=b"null", request_id=request_id)

    async def close(self) -> None:
        return None


class MemoryDestination:
    """Keeps failure records and their AWS-shaped documents; can be told to fail."""

    def __init__(self) -> None:
        self.failures: list[FailureRecord] = []
        self.documents: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self.fail_next = 0

    async def start(self) -> None:
        return None

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        from bridge.codec import dumps
        from bridge.errors import DestinationError

        if self.fail_next > 0:
            self.fail_next -= 1
            raise DestinationError("destination unavailable (scripted)")
        self.failures.append(failure)
        self.documents.append(
            loads(dumps(failure_document(failure, formatter, include_payload=True)))
        )

    async def deliver(self, delivery: Delivery) -> None:
        from bridge.errors import DestinationError

        if self.fail_next > 0:
            self.fail_next -= 1
            raise DestinationError("destination unavailable (scripted)")
        self.deliveries.append(delivery)

    async def close(self) -> None:
        return None


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

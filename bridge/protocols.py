"""The pluggable boundaries. Each connector implements one of these; the core knows no SDK."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Collection, Coroutine, Hashable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from bridge.records import Delivery, FailureRecord, InvokeResult, Record


class EventFormatter(Protocol):
    """Builds the event a function receives from a batch of records (pure, no I/O)."""

    @property
    def envelope_bytes(self) -> int:
        """Upper bound of the bytes the event adds around the records' own JSON."""

    def encode_event(self, records: Sequence[Record]) -> bytes:
        """The event as JSON bytes, built from each record's cached encoding."""

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        """A `batchItemFailures[].itemIdentifier` as a record `item_id`; None if malformed."""

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """The `<Source>BatchInfo` key and body of a failure record for these records."""

    def stable_position(self, record: Record) -> Any:
        """The record's position as it will be when the record is delivered again after a
        restart (orderable within its partition), or None if it has none such."""


class Ownership(Protocol):
    """The mapping a source reads for: told about lost partitions, and the owner of the
    source's background work and of its failures (bridge.ops.health)."""

    def revoked(self, partitions: Collection[str]) -> None:
        """These partitions now belong to someone else: their queued records are dropped,
        retries of their records stop, and nothing of them is settled any more. Call this
        before committing what was settled for them."""

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a background task for the source (a committer, an acknowledger). The
        mapping owns it: if it raises or ends, the session ends with that error and the
        mapping reconnects with backoff. Cancel it in `close()`."""

    def failed(self, component: str, reason: str) -> None:
        """Background work of the source failed and will be tried again: the mapping is
        reported Degraded with the reason, and the failure counted."""

    def recovered(self, component: str) -> None:
        """The component that failed works again."""

    def records_expire_after(self, seconds: float) -> None:
        """The source deletes records this long after they arrived (a stream's retention
        period): a record still unsettled by then is given up as RecordAgeExceeded, even
        with unlimited retries and record age (esm-reference.md 6.1)."""

    def lost_to_retention(self, partition: str) -> None:
        """Records of `partition` expired from the source before they were read; reading
        goes on from the oldest record left. Counted, and logged by the source."""

    def leases_changed(self, held: Collection[str], taken: int, lost: int) -> None:
        """A source that leases its partitions (`LeaseTable`) holds `held` now, having
        just taken `taken` leases and lost `lost`: shown by /status and /metrics."""


class DeliveryMode(enum.Enum):
    """What a source is, in one value: it decides how the core batches, retries and
    settles the source's records (esm-reference.md 5).

    - `QUEUE` (SQS standard): no order; several batches at once; a failed record is left
      to the source, which delivers it again itself; settled records are acknowledged one
      by one (`Source.acknowledge`), unsettled ones handed back (`Source.release`).
    - `ORDERED_QUEUE` (SQS FIFO): in order per lane (message group), one batch at a time
      per lane; a failure blocks its group and is left to the source, as for `QUEUE`.
    - `STREAM` (Kafka, Kinesis, DynamoDB Streams, Redis Streams, a folder): in order per
      lane; the bridge retries a failed batch itself; a partition's position is committed
      once every record up to it is settled (`Source.commit`).
    """

    QUEUE = "queue"
    ORDERED_QUEUE = "ordered-queue"
    STREAM = "stream"

    @property
    def ordered(self) -> bool:
        return self is not DeliveryMode.QUEUE

    @property
    def acknowledged(self) -> bool:
        """Records are acknowledged one by one and failures left to the source."""
        return self is not DeliveryMode.STREAM


@runtime_checkable
class Source(Protocol):
    """Reads records and settles them once their outcome is known.

    A connector subclasses this protocol explicitly, sets `mode` and `formatter`, and
    implements `open`, `read`, `close` and the settling method its mode calls for:
    `acknowledge` (queues) or `commit` (streams). The other members are optional
    capabilities; their defaults here say what a source without them does.
    """

    mode: DeliveryMode
    formatter: EventFormatter

    async def open(self, ownership: Ownership) -> None:
        """Connect. Raise a retriable SourceError if the service is unreachable."""

    async def read(self) -> Sequence[Record]:
        """Return the next records, waiting a short while; an empty list when idle."""

    async def close(self) -> None:
        """Stop reading and let go of resources; unsettled records are not acknowledged."""

    # -- settling: the core calls the one that applies to `mode` -----------------------

    async def acknowledge(self, records: Sequence[Record]) -> None:
        """Queues: these records are settled (succeeded, filtered out, or given up to the
        on-failure destination); delete them from the queue."""
        raise TypeError(f"a {self.mode.value} source does not acknowledge records")

    async def commit(self, positions: Mapping[str, Record]) -> None:
        """Streams: partition -> its newest record such that it and every record read
        before it in that partition are settled; persist the position after it."""
        raise TypeError(f"a {self.mode.value} source does not commit positions")

    async def release(self, records: Sequence[Record]) -> None:
        """Queues: hand back records that were not settled, so the source delivers them
        again (without this, they come back when their visibility timeout ends)."""
        return None

    # -- optional capabilities -------------------------------------------------------

    can_pause: bool = False
    """True if `pause`/`resume` work, so one full lane does not stop all reading."""

    def pause(self, partitions: Collection[str]) -> None:
        """Stop fetching these partitions for now (their lane is full)."""
        return None

    def resume(self, partitions: Collection[str]) -> None:
        """Fetch these partitions again."""
        return None

    @property
    def redelivery_seconds(self) -> float | None:
        """Queues: how long a received, unsettled record stays with the bridge before
        the source would hand it out again (SQS: the visibility timeout). A batch that
        cannot be invoked (throttled, endpoint down) is retried that long, then released.
        None: retried until it is delivered or the mapping stops."""
        return None

    problem: str | None = None
    """Why the source cannot read right now while its client reconnects on its own
    (e.g. the broker is unreachable); None when it is healthy."""

    @property
    def source_arn(self) -> str:
        """The ARN of what is read, once known (a tumbling window's events carry it)."""
        return ""

    @property
    def progress(self) -> dict[str, int] | None:
        """While a source catches up at start: `{"done": n, "total": m}`; else None."""
        return None

    async def offset_lag(self) -> dict[str, int]:
        """Per partition, how many records the source holds beyond what was read."""
        return {}


class Invoker(Protocol):
    """Runs a function once with an event; the answer is a value, faults are TransportErrors."""

    async def start(self) -> None: ...

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult: ...

    async def close(self) -> None: ...


class Destination(Protocol):
    """Receives failure records of discarded batches (on-failure destination), and the
    records of asynchronous invocations (bridge.asyncinvoke)."""

    async def start(self) -> None: ...

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        """Write the failure durably before returning; raise DestinationError otherwise."""

    async def deliver(self, delivery: Delivery) -> None:
        """Write an already-built JSON document (with its message attributes, where the
        destination has such) durably before returning; raise DestinationError otherwise."""

    async def close(self) -> None: ...


class CheckpointStore(Protocol):
    """Durable positions per (namespace, partition). Values are opaque strings.

    Staged positions are written in the background; a write that fails is kept and tried
    again with backoff, and `problem` says why meanwhile (the mappings that checkpoint here
    are reported Degraded), `write_failures` counts such failures."""

    @property
    def problem(self) -> str | None: ...

    @property
    def write_failures(self) -> int: ...

    async def open(self) -> None: ...

    async def load(self, namespace: str) -> dict[str, str]: ...

    async def save(self, namespace: str, updates: Mapping[str, str | None]) -> None:
        """Stage updates (None deletes a partition); they are durable after `flush`."""

    async def flush(self) -> None: ...

    async def clear(self, namespace_prefix: str) -> int:
        """Delete every position of the namespaces starting with the prefix; return how many."""

    async def close(self) -> None: ...

    def lease_table(self, namespace: str) -> LeaseTable | None:
        """Partition leases in this store (several daemons sharing a stream's shards), or
        None if the store cannot lease: then one daemon at a time reads the namespace."""
        return None


class Lease(NamedTuple):
    """One partition's lease in a `LeaseTable`, as last read. `counter` goes up with
    every change of the lease (taken, renewed, released), so a take conditional on it
    fails if anything happened since it was read."""

    partition: str
    owner: str | None
    counter: int
    checkpoint: str | None


class LeaseTable(Protocol):
    """Leases on the partitions of one namespace of a checkpoint store, kept as the Kinesis
    Client Library keeps its lease table: the lease and the checkpoint of a partition are
    one row, every change is one atomic write conditional on the row as read, and a
    checkpoint is written only while its writer holds the lease (fenced), so a daemon that
    lost a lease can never overwrite the new owner's position.

    Who takes which lease, and when a lease counts as expired (its counter unchanged for
    `ttl_seconds` as seen by the reader's own clock, so clock skew does not matter), is the
    caller's policy."""

    owner: str
    """This daemon's name in the table: stable part, `#`, a token new at every start."""

    ttl_seconds: float

    async def list_leases(self) -> dict[str, Lease]:
        """Every lease of the namespace, read consistently."""

    async def create(self, checkpoints: Mapping[str, str | None]) -> None:
        """Add unowned leases for the partitions that have none, with these initial
        checkpoints (None: no position yet); existing leases are left as they are."""

    async def take(self, lease: Lease) -> Lease | None:
        """Become the owner if the lease is unchanged since read (same counter); the lease
        as it is now (with its current checkpoint), or None if someone was faster."""

    async def renew(self, partitions: Collection[str]) -> set[str]:
        """Renew these leases where they are still ours; return those that are."""

    async def release(self, partitions: Collection[str]) -> None:
        """Give these leases up where they are still ours (after `checkpoint` + flush)."""

    async def checkpoint(self, updates: Mapping[str, str]) -> None:
        """Stage positions of held partitions; the store's `flush` writes each one only if
        this daemon still holds its lease, and drops it otherwise."""

    def forget(self, partitions: Collection[str]) -> None:
        """Drop staged positions of partitions whose lease was lost."""

"""Reading the shards of one stream, shared by the Kinesis and DynamoDB Streams sources
(esm-reference.md 3, 6.1, 13 and 17).

Every shard is one partition: read in order, checkpointed at the sequence number of its
highest contiguous settled record. A shard born of a split or a merge starts only once
each parent it came from has been read to its end *and* every record of that parent is
settled; the parent is then saved as finished and never read again (`lineage`). Shards
are listed at open, periodically, and as soon as a shard ends, so children are found at
once.

Positions live in the checkpoint store under `<mapping>|<source_id>`, with the identity
of the stream they belong to (its ARN, and for Kinesis its creation time): positions of
a deleted and recreated stream, or of an older DynamoDB stream label, are discarded with
a prominent warning, never reused.

Records leave a stream after its retention period (Kinesis: the stream's, DynamoDB
Streams: 24 hours). The mapping is told, so a record still unsettled by then is given up
as RecordAgeExceeded even with unlimited retries, as Lambda moves a blocked shard on
(esm-reference.md 6.1). A saved position the stream has already trimmed (the daemon was
down longer than the retention, or a shard expired altogether) resumes at the oldest
record still there: what expired in between cannot be read by anyone any more, so the
mapping goes on, with a warning (`stream.records_expired`) and a count
(`lambda_bridge_retention_gaps_total`), rather than stopping for good.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Collection, Mapping, Sequence

import structlog
from botocore.exceptions import ClientError

from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import CheckpointStore, DeliveryMode, Ownership, Source
from bridge.records import Record
from bridge.retry import Backoff
from connectors.aws.client import THROTTLING, error_code, is_retriable
from connectors.shardstreams.leasing import LeasedShards
from connectors.shardstreams.lineage import (
    AFTER_SEQUENCE_NUMBER,
    AT_TIMESTAMP,
    SHARD_END,
    TRIM_HORIZON,
    Fetched,
    Phase,
    Position,
    ShardInfo,
    ShardLineage,
    ShardState,
    arrived_since,
    check_identity,
)
from connectors.shardstreams.sdk import SDK_ERRORS, error_detail

# A shard that keeps delivering is polled again at once (esm-reference.md 3), but not
# sooner than this after the previous call: Kinesis allows five GetRecords per second.
MIN_POLL_GAP_SECONDS = 0.2
# read() returns empty-handed after at most this long, so a stopping mapping is seen.
IDLE_READ_SECONDS = 0.5
SHARD_BACKOFF = Backoff(initial=0.5, maximum=10.0)
# The service no longer accepts a position: an expired shard, a foreign sequence number.
REJECTED_POSITION = frozenset({"InvalidArgumentException", "ValidationException"})


class ShardedStreamSource(Source, abc.ABC):
    """A stream over the shards of one stream; subclasses talk to the service."""

    mode = DeliveryMode.STREAM
    can_pause = True

    def __init__(
        self,
        *,
        mapping: str,
        namespace: str,
        store: CheckpointStore,
        starting_position: str,
        starting_timestamp: float | None,
        poll_interval: float,
        discovery_interval: float,
        where: str,
        logger: str,
    ) -> None:
        self.mapping = mapping
        self._namespace = namespace
        self._store = store
        self._starting_position = starting_position
        self._lineage = ShardLineage(starting_position, starting_timestamp)
        self._shards = self._lineage.shards
        self._poll_interval = poll_interval
        self._discovery_interval = discovery_interval
        self.where = where
        self.problem: str | None = None
        self._paused: set[str] = set()
        self._ownership: Ownership | None = None
        self._next_discovery = 0.0
        self._discovery_failures = 0
        self._leasing: LeasedShards | None = None
        self._log = structlog.get_logger(logger).bind(mapping=mapping, stream=where)

    # -- what a subclass provides --------------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> str:
        """Open clients and find the stream; return its identity (ARN, creation, label)."""

    @abc.abstractmethod
    async def _list_shards(self) -> list[ShardInfo]: ...

    @abc.abstractmethod
    async def _shard_iterator(self, shard_id: str, position: Position) -> str: ...

    @abc.abstractmethod
    async def _fetch(self, shard_id: str, iterator: str) -> Fetched: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    async def _oldest_sequence(self, shard_id: str) -> str | None:
        """The sequence number of the oldest record still in the shard; None if empty."""

    @property
    @abc.abstractmethod
    def retention_seconds(self) -> float:
        """How long the stream keeps a record (known once connected)."""

    @abc.abstractmethod
    def _tip_marker(self, opened_at: float) -> Position:
        """What is saved for a shard a new mapping starts at LATEST."""

    # -- opening -------------------------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        self._ownership = ownership
        opened_at = time.time()
        identity = await self._connect()
        ownership.records_expire_after(self.retention_seconds)
        stored = await self._store.load(self._namespace)
        updates: dict[str, str | None] = {}
        fresh = check_identity(identity, stored, updates, self._log, self)
        shards = await self._listed("list the shards")
        listed = {info.shard_id for info in shards}
        for shard_id, value in stored.items():
            if shard_id in listed:
                continue
            if value != SHARD_END:
                # Same stream, shard gone: it expired with records nobody read.
                self._records_expired(shard_id, value, None)
            updates[shard_id] = None
        tip = self._tip_marker(opened_at)
        table = self._store.lease_table(self._namespace)
        initial: dict[str, str | None] = {}
        for info in shards:
            try:
                saved = self._lineage.add(info, stored.get(info.shard_id), fresh, tip)
            except ValueError as exc:
                raise PermanentSourceError(self.reset_advice(str(exc))) from None
            if saved is not None:
                (initial if table is not None else updates)[info.shard_id] = saved
        await self._store.save(self._namespace, updates)
        if table is not None:
            # Read only what our leases allow (connectors.shardstreams.leasing).
            self._shards.clear()
            self._leasing = LeasedShards(self, table, ownership)
            await self._leasing.start(shards, {info.shard_id: None for info in shards} | initial)
        self._start_ready()
        self._next_discovery = time.monotonic() + self._discovery_interval
        self._log.info(
            "stream.reading",
            shards=len(shards),
            reading=sorted(
                shard_id for shard_id, state in self._shards.items() if state.phase is Phase.READING
            ),
            resumed=not fresh,
        )

    def _start_ready(self) -> None:
        for state in self._lineage.start_ready():
            self._log.info("shard.started", shard=state.shard_id, parents=list(state.parents))

    def reset_advice(self, reason: str) -> str:
        return (
            f"{self.where}: {reason}. Nothing was skipped; to read the stream again from "
            f"starting_position {self._starting_position}, run "
            f"`lambda-bridge reset-checkpoints --config CONFIG_FILE {self.mapping}`"
        )

    async def _listed(self, doing: str) -> list[ShardInfo]:
        try:
            return await self._list_shards()
        except SDK_ERRORS as exc:
            kind = SourceError if is_retriable(exc) else PermanentSourceError
            raise kind(f"{self.where}: {doing} failed: {error_detail(exc)}") from exc

    # -- reading -------------------------------------------------------------------------

    async def read(self) -> Sequence[Record]:
        now = time.monotonic()
        if now >= self._next_discovery:
            await self._discover()
        due: list[ShardState] = []
        wake = self._next_discovery
        leasing = self._leasing
        for state in self._shards.values():
            if state.phase is not Phase.READING or state.shard_id in self._paused:
                continue
            if leasing is not None and not leasing.readable(state.shard_id, now):
                continue
            if state.next_poll <= now:
                due.append(state)
            else:
                wake = min(wake, state.next_poll)
        if not due:
            await asyncio.sleep(min(max(wake - now, 0.001), IDLE_READ_SECONDS))
            return []
        if len(due) == 1:
            return await self._poll(due[0])
        results = await asyncio.gather(*map(self._poll, due), return_exceptions=True)
        records: list[Record] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            records += result
        return records

    async def _poll(self, state: ShardState) -> list[Record]:
        started = time.monotonic()
        try:
            if state.iterator is None:
                state.iterator = await self._iterator_for(state)
            fetched = await self._fetch(state.shard_id, state.iterator)
        except SDK_ERRORS as exc:
            self._fetch_failed(state, exc, started)
            return []
        if self._shards.get(state.shard_id) is not state:
            return []  # its lease was lost while the call was under way
        if state.failures or self.problem:
            state.failures = 0
            if self.problem:
                self.problem = None
                self._log.info("stream.reachable")
        records = fetched.records
        if records and state.last_read is None and state.start.kind == AT_TIMESTAMP:
            records = arrived_since(records, state.start.timestamp or 0.0)
        if records:
            state.last_read = records[-1].item_id  # type: ignore[assignment]
        state.iterator = fetched.next_iterator
        if fetched.next_iterator is None or (not records and state.past_end()):
            state.phase = Phase.DRAINED
            # Its children are listed by now: look for them at once.
            self._next_discovery = 0.0
            self._log.info("shard.ended", shard=state.shard_id, last_sequence=state.last_read)
            if state.last_read == state.settled:
                await self._finish(state)
        gap = MIN_POLL_GAP_SECONDS if records or fetched.behind else self._poll_interval
        state.next_poll = started + gap
        return records

    async def _iterator_for(self, state: ShardState) -> str:
        position = state.resume_position()
        try:
            if position.kind == AFTER_SEQUENCE_NUMBER and position == state.start:
                # Resuming from a saved position, with nothing read since. Kinesis would
                # take a trimmed sequence number and go on from the oldest record left,
                # so compare the two instead of trusting it.
                oldest = await self._oldest_sequence(state.shard_id)
                if oldest is not None and int(oldest) > int(position.sequence or 0):
                    position = self._resume_at_oldest(state, oldest)
            return await self._shard_iterator(state.shard_id, position)
        except ClientError as exc:
            code = error_code(exc)
            if position.kind == AFTER_SEQUENCE_NUMBER and code == "TrimmedDataAccessException":
                # DynamoDB Streams says so itself.
                position = self._resume_at_oldest(state, None)
                return await self._shard_iterator(state.shard_id, position)
            if position.kind == AFTER_SEQUENCE_NUMBER and (
                code in REJECTED_POSITION or code == "ResourceNotFoundException"
            ):
                raise PermanentSourceError(
                    self.reset_advice(
                        f"shard {state.shard_id} rejects the position after sequence number "
                        f"{position.sequence} (expired or reset): {error_detail(exc)}"
                    )
                ) from exc
            raise

    def _resume_at_oldest(self, state: ShardState, oldest: str | None) -> Position:
        """Records after the saved position have expired: read on from the oldest left."""
        self._records_expired(state.shard_id, state.start.stored(), oldest)
        state.start = Position(TRIM_HORIZON)
        state.last_read = state.settled = None
        return state.start

    def _records_expired(self, shard_id: str, saved: str, oldest: str | None) -> None:
        assert self._ownership is not None
        self._ownership.lost_to_retention(shard_id)
        message = f"RECORDS EXPIRED: records of shard {shard_id} after the saved position "
        message += f"{saved} left the stream (retention) unread; reading goes on from the oldest"
        self._log.warning(
            "stream.records_expired",
            shard=shard_id,
            saved_position=saved,
            oldest_sequence=oldest,
            message=message,
        )

    def _fetch_failed(self, state: ShardState, exc: BaseException, started: float) -> None:
        """Expired iterators are renewed, throttling and outages backed off per shard;
        anything else stops the mapping."""
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        if code == "ExpiredIteratorException":
            state.iterator = None
            self._log.debug("shard.iterator_expired", shard=state.shard_id)
            return
        if not is_retriable(exc):
            raise PermanentSourceError(
                f"{self.where}: reading shard {state.shard_id} failed: {error_detail(exc)}"
            ) from exc
        state.failures += 1
        delay = SHARD_BACKOFF.delay(state.failures)
        state.next_poll = started + delay
        if code in THROTTLING:
            # Over the shard's read limit: wait, as Lambda does; not a failure.
            if state.failures == 1:
                self._log.info("shard.throttled", shard=state.shard_id, error=code)
            return
        self.problem = f"{self.where}: {error_detail(exc)}"
        self._log.warning(
            "shard.read_failed",
            shard=state.shard_id,
            error=error_detail(exc),
            attempt=state.failures,
            delay=round(delay, 3),
        )

    async def _discover(self) -> None:
        try:
            shards = await self._list_shards()
        except SDK_ERRORS as exc:
            if not is_retriable(exc):
                raise PermanentSourceError(
                    f"{self.where}: listing the shards failed: {error_detail(exc)}"
                ) from exc
            self._discovery_failures += 1
            self._next_discovery = time.monotonic() + SHARD_BACKOFF.ceiling(
                self._discovery_failures
            )
            self._log.warning("stream.list_failed", error=error_detail(exc))
            return
        self._discovery_failures = 0
        self._next_discovery = time.monotonic() + self._discovery_interval
        if self._leasing is not None:
            self._leasing.listed(shards)
        for info in shards:
            state = self._shards.get(info.shard_id)
            if state is None and self._leasing is not None:
                continue  # taken through its lease once its parents are finished
            if state is None:
                self._lineage.add(info, None, False, self._tip_marker(time.time()))
                self._log.info("shard.discovered", shard=info.shard_id, parents=list(info.parents))
            elif state.ending is None and info.ending is not None:
                state.ending = info.ending
        self._start_ready()

    async def _finish(self, state: ShardState) -> None:
        self._lineage.finish(state)
        self._start_ready()
        await self._save({state.shard_id: SHARD_END})
        if self._leasing is not None:
            self._leasing.wake()  # its lease goes, its children can be taken
        self._log.info("shard.finished", shard=state.shard_id)

    async def _save(self, updates: dict[str, str]) -> None:
        if self._leasing is None:
            await self._store.save(self._namespace, dict(updates))
        else:
            await self._leasing.table.checkpoint(updates)

    # -- settling ------------------------------------------------------------------------

    async def commit(self, positions: Mapping[str, Record]) -> None:
        updates: dict[str, str] = {}
        finished: list[ShardState] = []
        for shard_id, record in positions.items():
            sequence: str = record.item_id  # type: ignore[assignment]
            state = self._shards.get(shard_id)
            if state is None and self._leasing is not None:
                continue  # lost: the new owner's position stands
            if state is not None:
                state.settled = sequence
                if state.phase is Phase.DRAINED and sequence == state.last_read:
                    finished.append(state)
                    continue
            updates[shard_id] = sequence
        if updates:
            await self._save(updates)
        for state in finished:
            await self._finish(state)

    def pause(self, partitions: Collection[str]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Collection[str]) -> None:
        self._paused.difference_update(partitions)

    async def close(self) -> None:
        if self._leasing is not None:
            await self._leasing.close()
            self._leasing = None
        await self._disconnect()

    def phases(self) -> dict[str, Phase]:
        """Each shard's phase, for logs and tests."""
        return {shard_id: state.phase for shard_id, state in self._shards.items()}

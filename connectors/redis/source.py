"""The `redis-streams` source: stream entries through a consumer group, one reader per
stream at a time, in order.

A stream plays the part of a Kinesis shard (esm-reference.md 6.1, 17): its entries are
delivered in order, one batch at a time, and a failing batch blocks the stream while
the others go on.

Each stream this consumer holds the lease of (see `leases`) goes through three phases:

1. claiming: entries pending for other consumers (a former owner that died or handed
   the stream over) come first, so nothing is read until every one of them has been
   idle `claim_idle_after_seconds` and been claimed (XAUTOCLAIM) to us;
2. backlog: our own pending list is read from id 0 in order (after our own restart, or
   what was just claimed), page by page;
3. live: new entries (`>`).

Reading and lease upkeep run in the one task that calls `read()`, never concurrently:
a stream is given up only between two reads, so no read can be under way for a
stream whose lease we are releasing. A read that ended after a lease changed hands
could otherwise put entries into our pending list that the new owner, already past its
claiming phase, would never see. Leases are therefore renewed only while the mapping
reads: while a stopping mapping drains they may lapse, and the next owner still waits
for the entries we have pending (delivered, not yet acknowledged) to go idle.

Settling acknowledges each settled entry (XACK). Entries of a stream we have lost are
acknowledged too when their batch completes after the revocation: XACK removes an entry
from the group's pending list whoever holds it, it cannot move anything backwards, and
the entry was handled, so it only spares the new owner a duplicate.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import socket
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError

from bridge.config.plugins import SourceContext
from bridge.errors import SourceError
from bridge.ops.health import cancel_and_wait
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from connectors.redis.acks import Acknowledger
from connectors.redis.client import connect, source_errors
from connectors.redis.config import RedisStreamsSourceConfig, server_arn
from connectors.redis.events import EntryRecords, RedisStreamsFormatter
from connectors.redis.leases import StreamLeases

# Extra seconds a reply may take beyond the longest BLOCK before the connection is
# considered dead.
REPLY_GRACE_SECONDS = 10.0
# How long close() may spend handing its streams back.
LEAVE_TIMEOUT_SECONDS = 3.0
START_IDS = {"TRIM_HORIZON": "0", "LATEST": "$"}
NO_ENTRY = b"0-0"


def default_consumer(state_dir: Path) -> str:
    """`<hostname>-<8 hex>`: stable across restarts, and different for two daemons on
    one host with different state folders."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Phase(enum.Enum):
    CLAIMING = "claiming"
    BACKLOG = "backlog"
    LIVE = "live"


class _Stream:
    __slots__ = ("claim_cursor", "cursor", "name", "next_claim", "phase", "waiting_reported")

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase = Phase.CLAIMING
        # XAUTOCLAIM resumes here; the sweep starts again from 0-0 once it wrapped.
        self.claim_cursor = NO_ENTRY
        self.next_claim = 0.0
        self.waiting_reported = False
        # Backlog phase: the last entry id read from our own pending list.
        self.cursor: bytes = b"0"


class RedisStreamsSource(Source):
    """A stream: each stream in order; an entry is acknowledged (XACK) once it and every
    entry read before it from its stream are settled. `problem` is never set: a
    connection error is not retried in here but ends the session (SourceError), so the
    mapping itself reports it while it reconnects."""

    mode = DeliveryMode.STREAM
    can_pause = True

    def __init__(self, config: RedisStreamsSourceConfig, context: SourceContext) -> None:
        self.config = config
        url = config.url.get_secret_value()
        self.group = config.group or f"lambda-bridge-{context.mapping}"
        self.consumer = config.consumer or default_consumer(context.state_dir)
        self._where = config.redacted_url()
        self._entries = EntryRecords(server_arn=server_arn(url), region=context.identity.region)
        self.formatter: RedisStreamsFormatter = self._entries.formatter(self.group)
        self._client = connect(url, reply_timeout=config.block_seconds + REPLY_GRACE_SECONDS)
        self._leases = StreamLeases(
            self._client,
            group=self.group,
            consumer=self.consumer,
            streams=config.streams,
            ttl_seconds=config.lease_ttl_seconds,
        )
        self._upkeep_interval = config.lease_ttl_seconds / 3
        self._next_upkeep = 0.0
        self._claim_idle_ms = int(config.claim_idle_after_seconds * 1000)
        self._claim_retry = min(max(config.claim_idle_after_seconds / 4, 0.05), 1.0)
        self._streams: dict[str, _Stream] = {}
        self._paused: set[str] = set()
        self._acks = Acknowledger(self._client, self.group, self._where)
        self._acker: asyncio.Task[None] | None = None
        self._ownership: Ownership | None = None
        self._joined = False
        self._log = structlog.get_logger("connectors.redis").bind(
            mapping=context.mapping, url=self._where, group=self.group, consumer=self.consumer
        )

    @property
    def owned(self) -> frozenset[str]:
        """The streams this consumer holds and reads (in whichever phase)."""
        return frozenset(self._streams)

    def phase_of(self, stream: str) -> Phase | None:
        state = self._streams.get(stream)
        return state.phase if state is not None else None

    # -- opening and upkeep ----------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        self._ownership = ownership
        start_id = START_IDS[self.config.starting_position]
        with source_errors(self._where, "connect"):
            await self._client.ping()
        with source_errors(self._where, "XGROUP CREATE"):
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in self.config.streams:
                    pipe.xgroup_create(stream, self.group, id=start_id, mkstream=True)
                replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, ResponseError) and str(reply).startswith("BUSYGROUP"):
                    continue
                if isinstance(reply, Exception):
                    raise reply
        self._joined = True
        self._acker = ownership.spawn(self._acks.run(ownership), "xack")
        await self._upkeep()
        self._log.info(
            "redis.reading",
            streams=len(self.config.streams),
            owned=sorted(self._streams),
            members=len(self._leases.members),
        )

    async def _upkeep(self) -> None:
        """Renew membership and leases; give up lost streams, start on gained ones."""
        started = time.monotonic()
        with source_errors(self._where, "lease upkeep"):
            gained, lost = await self._leases.rebalance()
        self._next_upkeep = started + self._upkeep_interval
        if lost:
            assert self._ownership is not None
            # The mapping drops their waiting records and retries before anyone else
            # may read them: first revoke, then stop reading, then release.
            self._ownership.revoked(lost)
            for stream in lost:
                self._streams.pop(stream, None)
                self._paused.discard(stream)
                self._acks.forget(stream)
            with source_errors(self._where, "lease release"):
                await self._leases.release(lost)
            self._log.info("redis.streams_released", streams=sorted(lost))
        for stream in gained:
            self._streams[stream] = _Stream(stream)
        if gained:
            self._log.info("redis.streams_acquired", streams=sorted(gained))

    # -- reading ---------------------------------------------------------------------

    async def read(self) -> Sequence[Record]:
        now = time.monotonic()
        if now >= self._next_upkeep:
            await self._upkeep()
            now = time.monotonic()
        ready = [
            state
            for name, state in self._streams.items()
            if name not in self._paused and self._leases.readable(name, now)
        ]
        wake = self._next_upkeep
        for state in ready:
            if state.phase is Phase.CLAIMING:
                if now >= state.next_claim:
                    await self._claim(state)
                if state.phase is Phase.CLAIMING:
                    wake = min(wake, state.next_claim)
        requests: dict[str, bytes | str] = {}
        history = False
        for state in ready:
            if state.phase is Phase.BACKLOG:
                requests[state.name] = state.cursor
                history = True
            elif state.phase is Phase.LIVE:
                requests[state.name] = ">"
        wait = max(min(self.config.block_seconds, wake - time.monotonic()), 0.001)
        if not requests:
            await asyncio.sleep(wait)
            return []
        with source_errors(self._where, "XREADGROUP"):
            reply = await self._client.xreadgroup(
                self.group,
                self.consumer,
                requests,  # type: ignore[arg-type]
                count=self.config.read_count,
                # Reading a pending list never blocks; BLOCK 0 would wait forever.
                block=None if history else max(int(wait * 1000), 1),
            )
        return await self._records_of(reply)

    async def _records_of(self, reply: Any) -> list[Record]:
        records: list[Record] = []
        trimmed: dict[str, list[bytes]] = {}
        build = self._entries.record
        for raw_stream, entries in reply or ():
            stream = raw_stream.decode()
            state = self._streams[stream]
            if state.phase is Phase.BACKLOG:
                if not entries:
                    state.phase = Phase.LIVE
                    self._log.debug("redis.backlog_done", stream=stream)
                    continue
                state.cursor = entries[-1][0]
            built = []
            for entry_id, fields in entries:
                if fields is None:
                    trimmed.setdefault(stream, []).append(entry_id)
                else:
                    built.append(build(stream, entry_id.decode(), fields))
            self._acks.read(stream, built)
            records += built
        if trimmed:
            for stream, ids in trimmed.items():
                self._log.warning(
                    "redis.entries_trimmed",
                    stream=stream,
                    count=len(ids),
                    first=ids[0].decode(),
                    reason="pending entries whose data is gone (XTRIM/XDEL); acknowledged",
                )
            await self._acks.ack(trimmed)
        return records

    async def _claim(self, state: _Stream) -> None:
        """One step of taking over what former owners left pending: claim one page; once
        nothing is pending elsewhere any more, go on to the backlog."""
        stream = state.name
        with source_errors(self._where, "XAUTOCLAIM"):
            if state.claim_cursor == NO_ENTRY:
                elsewhere = await self._pending_elsewhere(stream)
                if not elsewhere:
                    self._start_backlog(state)
                    return
                if not state.waiting_reported:
                    state.waiting_reported = True
                    self._log.info(
                        "redis.claiming",
                        stream=stream,
                        pending=elsewhere,
                        idle_seconds=self.config.claim_idle_after_seconds,
                    )
            reply = await self._client.xautoclaim(
                stream,
                self.group,
                self.consumer,
                self._claim_idle_ms,
                state.claim_cursor,
                count=self.config.read_count,
                justid=True,
            )
            state.claim_cursor, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            swept = state.claim_cursor == NO_ENTRY
            if swept and not await self._pending_elsewhere(stream):
                self._start_backlog(state)
        if claimed:
            self._log.info("redis.claimed", stream=stream, count=len(claimed))
        if deleted:
            # XAUTOCLAIM has already dropped them from the pending list.
            self._log.warning(
                "redis.entries_trimmed",
                stream=stream,
                count=len(deleted),
                first=deleted[0].decode(),
                reason="pending entries whose data is gone (XTRIM/XDEL)",
            )
        if swept and state.phase is Phase.CLAIMING:
            # Some are not idle long enough yet: sweep again a little later.
            state.next_claim = time.monotonic() + self._claim_retry

    def _start_backlog(self, state: _Stream) -> None:
        state.phase = Phase.BACKLOG
        state.cursor = b"0"
        self._log.debug("redis.stream_started", stream=state.name)

    async def _pending_elsewhere(self, stream: str) -> int:
        """How many entries of `stream` are pending for consumers other than us."""
        summary = await self._client.xpending(stream, self.group)
        mine = self.consumer.encode()
        return sum(
            consumer["pending"]
            for consumer in summary.get("consumers") or ()
            if consumer["name"] != mine
        )

    # -- settling --------------------------------------------------------------------

    async def commit(self, positions: Mapping[str, Record]) -> None:
        """XACK every entry read up to each position (in the background, connectors.redis.acks)."""
        self._acks.commit(positions)

    def pause(self, partitions: Collection[str]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Collection[str]) -> None:
        self._paused.difference_update(partitions)

    async def close(self) -> None:
        """Hand the leases back and leave the group's members (best effort), so other
        consumers take over at once; unacknowledged entries stay pending for them."""
        if self._acker is not None:
            await cancel_and_wait([self._acker])
        try:
            if self._joined:
                async with asyncio.timeout(LEAVE_TIMEOUT_SECONDS):
                    await self._acks.flush()
                    await self._leases.leave()
        except (RedisError, OSError, SourceError, TimeoutError) as exc:
            self._log.warning("redis.leave_failed", error=str(exc) or type(exc).__name__)
        finally:
            self._streams.clear()
            await self._client.aclose()

"""Acknowledging Redis Streams entries once the mapping commits them.

The mapping commits a stream's position once every entry read up to it is settled
(bridge.protocols.DeliveryMode.STREAM). Redis keeps a pending entry per id rather than
a position, so each entry read is remembered, in order, until a commit covers it; then
it is queued for XACK. A background task acknowledges whatever was queued while its
previous XACK was under way, in one pipeline, so a lane never waits for Redis. An
acknowledgement lost to a crash only means the entry is delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

import structlog
from redis.asyncio import Redis

from bridge.errors import SourceError
from bridge.protocols import Ownership
from bridge.records import Record
from bridge.retry import Backoff
from connectors.redis.client import source_errors

ACK_BACKOFF = Backoff(initial=0.1, maximum=5.0)
_ITEM_ID = attrgetter("item_id")


class Acknowledger:
    def __init__(self, client: Redis, group: str, where: str) -> None:
        self._client = client
        self._group = group
        self._where = where
        # Per stream, the entries read in order, and how many of them are committed.
        self._read: dict[str, list[Record]] = {}
        self._committed: dict[str, int] = {}
        self._to_ack: dict[str, list[Any]] = {}
        self._due = asyncio.Event()
        self._log = structlog.get_logger("connectors.redis")

    def read(self, stream: str, records: Sequence[Record]) -> None:
        read = self._read.get(stream)
        if read is None:
            self._read[stream] = list(records)
        else:
            read += records

    def forget(self, stream: str) -> None:
        """The stream went to another consumer: its entries are not ours to acknowledge."""
        self._read.pop(stream, None)
        self._committed.pop(stream, None)

    def commit(self, positions: Mapping[str, Record]) -> None:
        queued = self._to_ack
        for stream, newest in positions.items():
            read = self._read.get(stream)
            if not read:
                continue
            done = self._committed.get(stream, 0)
            try:
                end = read.index(newest, done) + 1
            except ValueError:
                continue  # not read here (the stream was lost and taken again)
            stream_ids = queued.get(stream)
            if stream_ids is None:
                stream_ids = queued[stream] = []
            stream_ids += map(_ITEM_ID, read[done:end])
            if end * 2 > len(read):
                del read[:end]
                end = 0
            self._committed[stream] = end
        self._due.set()

    async def run(self, ownership: Ownership) -> None:
        """XACK what was committed. A failed XACK keeps its ids for the next attempt, with
        backoff, and reports the mapping Degraded meanwhile (if the connection is gone,
        read() fails the session too and the entries stay pending, to be delivered
        again); anything else ends the task, and with it the session (bridge.ops.health)."""
        failures = 0
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                await self.flush()
            except SourceError as exc:
                if not exc.retriable:
                    raise
                failures += 1
                ownership.failed("xack", str(exc))
                self._log.warning("redis.xack_failed", error=str(exc), attempt=failures)
                self._due.set()
                await asyncio.sleep(ACK_BACKOFF.delay(failures))
                continue
            if failures:
                failures = 0
                ownership.recovered("xack")

    async def flush(self) -> None:
        if not self._to_ack:
            return
        batch, self._to_ack = self._to_ack, {}
        try:
            await self.ack(batch)
        except BaseException:
            # Keep them for the next attempt, ahead of what was committed since.
            for stream, ids in batch.items():
                self._to_ack.setdefault(stream, [])[:0] = ids
            raise

    async def ack(self, ids: Mapping[str, Sequence[Any]]) -> None:
        with source_errors(self._where, "XACK"):
            if len(ids) == 1:
                [(stream, entry_ids)] = ids.items()
                await self._client.xack(stream, self._group, *entry_ids)
                return
            async with self._client.pipeline(transaction=False) as pipe:
                for stream, entry_ids in ids.items():
                    pipe.xack(stream, self._group, *entry_ids)
                await pipe.execute()

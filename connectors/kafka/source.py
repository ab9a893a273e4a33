"""The `kafka` source: a consumer group, ordered per partition (esm-reference.md 1.6, 7).

Offsets are committed to the group only up to the highest contiguous settled record
(its offset + 1, as Kafka expects), a moment after settling so that busy partitions do
not pay one commit per batch. On a rebalance, revoked partitions are handed back to the
mapping first (their waiting records are dropped, their retries stop), then what was
settled for them is committed; newly assigned partitions resume from the group's
committed offset. `starting_position` only matters for a group without committed
offsets, as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from bridge.cancellation import cancelled_from_outside
from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from bridge.retry import Backoff
from connectors.kafka.client import client_settings
from connectors.kafka.config import KafkaSourceConfig
from connectors.kafka.events import KafkaEventFormatter

# How long read() waits for messages before returning an empty list.
POLL_MS = 500
MAX_RECORDS_PER_READ = 1000
# Settled offsets are committed at most this often.
COMMIT_INTERVAL_SECONDS = 0.1
COMMIT_BACKOFF = Backoff(initial=0.2, maximum=5.0)
# A commit refused for one of these will not succeed by trying again.
REFUSED = (
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
# aiokafka reconnects by itself and does not tell; this is how often reachability is checked.
HEALTH_INTERVAL_SECONDS = 2.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source.partitions_assigned(assigned)


class KafkaSource(Source):
    """A stream: each partition in order, its offset committed once settled."""

    mode = DeliveryMode.STREAM
    can_pause = True

    def __init__(self, config: KafkaSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.group_id = config.consumer_group_id or f"lambda-bridge-{context.mapping}"
        self.formatter = KafkaEventFormatter(config.servers_text, config.msk_cluster_arn)
        self._consumer: AIOKafkaConsumer | None = None
        self._ownership: Ownership | None = None
        self._to_commit: dict[TopicPartition, int] = {}
        # The next offset to settle per partition, for the offset lag.
        self._settled: dict[TopicPartition, int] = {}
        self._commit_due = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        # AT_TIMESTAMP partitions still looking for their first record at or after the
        # time (ms): earlier records are skipped, whatever offset the broker pointed at.
        self._seeking: dict[TopicPartition, int] = {}
        self._health: asyncio.Task[None] | None = None
        self.problem: str | None = None
        self._log = structlog.get_logger("connectors.kafka").bind(
            mapping=context.mapping, group=self.group_id
        )

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "open() was not called"
        return self._consumer

    async def open(self, ownership: Ownership) -> None:
        self._ownership = ownership
        reset = "latest" if self.config.starting_position == "LATEST" else "earliest"
        consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=reset,
            session_timeout_ms=int(self.config.session_timeout_seconds * 1000),
            fetch_max_wait_ms=int(self.config.fetch_max_wait_seconds * 1000),
            heartbeat_interval_ms=int(self.config.heartbeat_interval_seconds * 1000),
            **client_settings(self.config),
        )
        consumer.subscribe(topics=self.config.topics, listener=_Rebalance(self))
        # Set before start(): the first assignment arrives while start() is running.
        self._consumer = consumer
        # A bootstrap server that answers while the broker it advertises does not leaves
        # aiokafka waiting for ever: give up and let the mapping retry with backoff.
        join_timeout = max(30.0, 3 * self.config.session_timeout_seconds)
        try:
            await asyncio.wait_for(consumer.start(), join_timeout)
        except (KafkaError, TimeoutError) as exc:
            self._consumer = None
            await self._stop_consumer(consumer)
            reason = str(exc) or f"no answer within {join_timeout:.0f} s"
            raise SourceError(
                f"cannot join group {self.group_id} at {self.config.servers_text}: {reason}"
            ) from exc
        self._committer = ownership.spawn(self._commit_periodically(), "commits")
        self._health = ownership.spawn(self._watch_brokers(), "broker-health")
        self._log.info(
            "kafka.consuming", topics=self.config.topics, servers=self.config.servers_text
        )

    async def read(self) -> Sequence[Record]:
        try:
            batches = await self.consumer.getmany(
                timeout_ms=POLL_MS, max_records=MAX_RECORDS_PER_READ
            )
        except KafkaError as exc:
            raise SourceError(f"reading from {self.config.servers_text} failed: {exc}") from exc
        if self._seeking:
            batches = {tp: self._from_start_time(tp, messages) for tp, messages in batches.items()}
        records: list[Record] = []
        for tp, messages in batches.items():
            records += self.formatter.records(tp.topic, tp.partition, messages)
        return records

    def _from_start_time(self, tp: TopicPartition, messages: list[Any]) -> list[Any]:
        start = self._seeking.get(tp)
        if start is None:
            return messages
        for index, message in enumerate(messages):
            if message.timestamp >= start:
                del self._seeking[tp]
                return messages[index:]
        return []

    async def commit(self, positions: Mapping[str, Record]) -> None:
        for record in positions.values():
            topic, partition = record.handle
            tp = TopicPartition(topic, partition)
            self._to_commit[tp] = self._settled[tp] = record.position + 1
        self._commit_due.set()

    async def offset_lag(self) -> dict[str, int]:
        """Per assigned partition: records between what this consumer has settled and the
        end of the partition (Lambda's OffsetLag)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            done = self._settled.get(tp)
            if done is None:
                done = await consumer.committed(tp)
            if end is not None and done is not None:
                lag[f"{tp.topic}-{tp.partition}"] = max(end - done, 0)
        return lag

    def pause(self, partitions: Collection[str]) -> None:
        self.consumer.pause(*self._assigned(partitions))

    def resume(self, partitions: Collection[str]) -> None:
        self.consumer.resume(*self._assigned(partitions))

    def _assigned(self, partitions: Collection[str]) -> list[TopicPartition]:
        wanted = set(partitions)
        return [tp for tp in self.consumer.assignment() if f"{tp.topic}-{tp.partition}" in wanted]

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        self._log.info(
            "kafka.partitions_revoked",
            partitions=sorted(f"{tp.topic}-{tp.partition}" for tp in revoked),
        )
        if self._ownership is not None:
            self._ownership.revoked([f"{tp.topic}-{tp.partition}" for tp in revoked])
        try:
            await self._commit(only=revoked)
        except KafkaError as exc:
            self._log.warning("kafka.commit_failed", error=str(exc), during="rebalance")
        for tp in revoked:
            self._to_commit.pop(tp, None)
            self._settled.pop(tp, None)
            self._seeking.pop(tp, None)

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._log.info(
            "kafka.partitions_assigned",
            partitions=sorted(f"{tp.topic}-{tp.partition}" for tp in assigned),
        )
        timestamp = self.config.starting_position_timestamp
        if self.config.starting_position != "AT_TIMESTAMP" or timestamp is None:
            return
        consumer = self.consumer
        start = int(timestamp * 1000)
        for tp in assigned:
            if await consumer.committed(tp) is not None:
                continue
            found = await consumer.offsets_for_times({tp: start})
            position = found.get(tp)
            if position is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, position.offset)
                # Some Kafka-compatible brokers answer this lookup loosely; skip what is early.
                self._seeking[tp] = start

    async def _commit(self, only: Collection[TopicPartition] | None = None) -> None:
        assignment = self.consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._to_commit.items()
            if tp in assignment and (only is None or tp in only)
        }
        if not offsets:
            return
        await self.consumer.commit(offsets)
        for tp, offset in offsets.items():
            if self._to_commit.get(tp) == offset:
                del self._to_commit[tp]

    async def _commit_periodically(self) -> None:
        """Commit what was settled, at most every COMMIT_INTERVAL_SECONDS. A commit the
        broker refuses for now (a rebalance under way, the broker away) keeps its offsets
        and is tried again with backoff, the mapping reported Degraded meanwhile; any
        other error ends the task, and with it the session (bridge.ops.health)."""
        failures = 0
        while True:
            await self._commit_due.wait()
            self._commit_due.clear()
            try:
                await self._commit()
            except KafkaError as exc:
                if isinstance(exc, REFUSED):
                    raise PermanentSourceError(
                        f"committing offsets of group {self.group_id} refused: {exc}"
                    ) from exc
                failures += 1
                reason = f"committing offsets failed: {exc or type(exc).__name__}"
                assert self._ownership is not None
                self._ownership.failed("commits", reason)
                self._log.warning("kafka.commit_failed", error=str(exc), attempt=failures)
                self._commit_due.set()
                await asyncio.sleep(COMMIT_BACKOFF.delay(failures) + COMMIT_INTERVAL_SECONDS)
                continue
            if failures:
                failures = 0
                assert self._ownership is not None
                self._ownership.recovered("commits")
            await asyncio.sleep(COMMIT_INTERVAL_SECONDS)

    async def _watch_brokers(self) -> None:
        """Report the source unhealthy while no bootstrap server accepts connections."""
        while True:
            reachable = await _any_reachable(self.config.bootstrap_servers)
            if not reachable and self.problem is None:
                self.problem = f"no bootstrap server reachable ({self.config.servers_text})"
                self._log.warning("kafka.unreachable", servers=self.config.servers_text)
            elif reachable and self.problem is not None:
                self.problem = None
                self._log.info("kafka.reachable", servers=self.config.servers_text)
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    async def close(self) -> None:
        for task in (self._committer, self._health):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._consumer is not None:
            try:
                await asyncio.wait_for(self._commit(), 5)
            except (KafkaError, TimeoutError) as exc:
                self._log.warning("kafka.commit_failed", error=str(exc), during="close")
            await self._stop_consumer(self._consumer)

    async def _stop_consumer(self, consumer: AIOKafkaConsumer) -> None:
        """Stop the client; aiokafka's fetcher re-raises the CancelledError of its own
        cancelled fetch task from stop(), which is not a cancellation of this close."""
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
            self._log.debug("kafka.stop_interrupted")
        except Exception as exc:  # the client is gone either way; close goes on
            self._log.debug("kafka.stop_failed", error=str(exc))


async def _any_reachable(servers: list[str]) -> bool:
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            connecting = asyncio.open_connection(host.strip("[]"), int(port))
            _, writer = await asyncio.wait_for(connecting, HEALTH_INTERVAL_SECONDS)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False

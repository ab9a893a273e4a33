"""The `rabbitmq` source: one consumer on one queue, acknowledged once a batch is settled.

As Lambda does for Amazon MQ (esm-reference.md 8), a message is acknowledged (basic.ack)
only after the invocation of its batch succeeded, or when a filter leaves it out (11.5).
A failed batch is handed back whole (basic.nack with requeue), after
`requeue_delay_seconds`, so the broker delivers it again with `redelivered: true`;
retries end only when the batch succeeds or the broker lets the messages expire.

The broker hands the bridge at most `prefetch_count` unacknowledged messages (by default
batch size x concurrency: one full batch per concurrent invocation, esm-reference.md
13). Nothing is ever acknowledged on closing: whatever the bridge holds when its channel
or connection closes (a reload, a stop, a crash, a lost connection) is redelivered by the
broker. A delivery tag belongs to its channel, so a source settles only on the channel it
read from; after a lost connection the mapping opens a new source and the broker
delivers again what the old one had not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aiormq.abc import DeliveredMessage

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from bridge.redaction import describe_error
from connectors.rabbitmq.config import MAX_PREFETCH, RabbitMqSourceConfig
from connectors.rabbitmq.events import QueueRecords, RabbitMqEventFormatter

# read() waits this long for a first message before returning [] (a stopping mapping
# is noticed meanwhile).
READ_WAIT_SECONDS = 0.5
# Refusals that retrying cannot help with: credentials, permissions, no such queue or
# virtual host.
_PERMANENT = (
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ConnectionNotAllowed,
)


class RabbitMqSource(Source):
    """A queue (DeliveryMode.QUEUE): batches run side by side up to the mapping's
    concurrency, failures are left to the broker."""

    mode = DeliveryMode.QUEUE

    def __init__(self, config: RabbitMqSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.formatter = RabbitMqEventFormatter(config.arn_for(context.identity))
        self.problem: str | None = None
        self._records = QueueRecords(config.queue, config.vhost)
        concurrency = max(context.maximum_concurrency, 1)
        self._prefetch = config.prefetch_count or min(
            context.batch_size * concurrency, MAX_PREFETCH
        )
        self._where = f"rabbitmq queue {config.queue!r} on {config.redacted_url()}"
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._closing: asyncio.Future[Any] | None = None
        self._delivered: list[DeliveredMessage] = []
        self._arrived = asyncio.Event()
        # Delivery tags received and neither acknowledged nor handed back, in order.
        self._unsettled: dict[int, None] = {}
        # (when, tags) of failed batches waiting for requeue_delay_seconds.
        self._requeues: deque[tuple[float, list[int]]] = deque()
        self._requeue_due = asyncio.Event()
        self._requeuer: asyncio.Task[None] | None = None
        self._consumer_tag: str | None = None
        self._cancelled = False
        self._closed = False
        self._log = structlog.get_logger("connectors.rabbitmq").bind(
            mapping=context.mapping, queue=config.queue, vhost=config.vhost
        )

    @property
    def source_arn(self) -> str:
        return self.formatter.broker_arn

    @property
    def unsettled(self) -> int:
        """Messages received and neither acknowledged nor handed back yet."""
        return len(self._unsettled)

    # -- opening ---------------------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        """Connect, set the prefetch and start consuming. An unknown queue or virtual
        host and refused credentials fail the mapping; anything else is retried."""
        config = self.config
        self._log.info("rabbitmq.connecting", url=config.redacted_url())
        try:
            self._connection = await aio_pika.connect(
                config.connection_url(), timeout=config.connect_timeout_seconds
            )
            wrapper = await self._connection.channel(publisher_confirms=False)
            channel = await wrapper.get_underlay_channel()
            self._channel = channel
            self._closing = channel.closing
            await channel.basic_qos(prefetch_count=self._prefetch)
            await channel.queue_declare(config.queue, passive=True)
            channel.on_consumer_cancel_callbacks.add(self._on_cancel)
            consuming = await channel.basic_consume(config.queue, self._on_message, no_ack=False)
            self._consumer_tag = consuming.consumer_tag
        except _PERMANENT as exc:
            await self.close()
            raise PermanentSourceError(f"{self._where}: {describe_error(exc)}") from None
        except aiormq.exceptions.InvalidFrameError as exc:
            await self.close()
            if "Connection.Close" not in str(exc):
                raise SourceError(f"{self._where}: cannot consume: {describe_error(exc)}") from None
            # aiormq reports the broker closing the connection in answer to
            # Connection.Open as an unexpected frame, without its reply code: RabbitMQ
            # does that for a virtual host that does not exist or the user may not use.
            raise PermanentSourceError(
                f"{self._where}: the broker refused virtual host {config.vhost!r} (it does "
                "not exist, or the user has no access to it)"
            ) from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            await self.close()
            raise SourceError(f"{self._where}: cannot consume: {describe_error(exc)}") from None
        self._requeuer = ownership.spawn(self._requeue_when_due(), "requeue")
        self._log.info("rabbitmq.reading", prefetch_count=self._prefetch)

    async def _on_message(self, message: DeliveredMessage) -> None:
        self._delivered.append(message)
        self._arrived.set()

    def _on_cancel(self, frame: Any) -> None:
        if frame.consumer_tag == self._consumer_tag:
            self._cancelled = True
            self._arrived.set()

    # -- reading ---------------------------------------------------------------------

    async def read(self) -> Sequence[Record]:
        """What the broker delivered since the last read, waiting up to half a second
        for the first message; raises SourceError once the channel is closed."""
        if not self._delivered:
            self._arrived.clear()
            closing = self._closing
            assert closing is not None, "open() was not called"
            if closing.done():
                raise self._lost(closing)
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait(
                    (arrived, closing), timeout=READ_WAIT_SECONDS, return_when="FIRST_COMPLETED"
                )
            finally:
                arrived.cancel()
            if not self._delivered:
                if closing.done():
                    raise self._lost(closing)
                if self._cancelled:
                    # The broker cancelled the consumer (the queue was deleted, ...): a new
                    # session finds out why, or consumes again.
                    raise SourceError(f"{self._where}: the broker cancelled the consumer")
                return []
        delivered, self._delivered = self._delivered, []
        now = time.time()
        build = self._records.record
        unsettled = self._unsettled
        records = []
        for message in delivered:
            tag = message.delivery_tag
            assert tag is not None, "a consumer's delivery has a tag"
            unsettled[tag] = None
            properties = message.header.properties
            redelivered = bool(message.redelivered)
            records.append(build(tag, properties, message.body, redelivered, now))
        return records

    def _lost(self, closing: asyncio.Future[Any]) -> SourceError:
        reason = "closed"
        if not closing.cancelled() and closing.exception() is not None:
            reason = describe_error(closing.exception())  # type: ignore[arg-type]
        self.problem = f"{self._where}: channel lost: {reason}"
        return SourceError(
            f"{self._where}: the channel closed ({reason}); unacknowledged "
            "messages are redelivered by the broker"
        )

    # -- settling --------------------------------------------------------------------

    async def acknowledge(self, records: Sequence[Record]) -> None:
        """basic.ack: one frame for a run of settled deliveries, else one per message."""
        await self._settle([record.handle for record in records], "ack")

    async def release(self, records: Sequence[Record]) -> None:
        """Hand the batch back to the broker (basic.nack, requeue) after the delay."""
        tags = [record.handle for record in records]
        if not tags:
            return
        delay = self.config.requeue_delay_seconds
        if delay <= 0:
            await self._settle(tags, "nack")
            return
        self._requeues.append((time.monotonic() + delay, tags))
        self._requeue_due.set()

    async def _requeue_when_due(self) -> None:
        requeues = self._requeues
        while True:
            if not requeues:
                self._requeue_due.clear()
                await self._requeue_due.wait()
                continue
            due, tags = requeues[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            requeues.popleft()
            await self._settle(tags, "nack")

    async def _settle(self, tags: Iterable[int], how: str) -> None:
        """Send acks or nacks for `tags`. When every delivery up to the newest of them is
        settled, one frame with `multiple` covers them all. On a closed channel nothing
        can be settled: the broker has taken the messages back and delivers them again."""
        unsettled = self._unsettled
        settled = []
        for tag in tags:
            if tag in unsettled:
                del unsettled[tag]
                settled.append(tag)
        if not settled:
            return
        channel = self._channel
        if channel is None or channel.is_closed or self._closed:
            self._log.warning(
                "rabbitmq.settle_lost",
                how=how,
                messages=len(settled),
                consequence="the broker delivers them again",
            )
            return
        newest = max(settled)
        oldest_open = next(iter(unsettled), None)
        try:
            if oldest_open is None or oldest_open > newest:
                await self._send(channel, how, newest, multiple=True)
            else:
                for tag in settled:
                    await self._send(channel, how, tag, multiple=False)
        except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
            self._log.warning(
                "rabbitmq.settle_failed",
                how=how,
                messages=len(settled),
                error=describe_error(exc),
                consequence="the broker delivers them again",
            )

    @staticmethod
    async def _send(
        channel: aiormq.abc.AbstractChannel, how: str, tag: int, multiple: bool
    ) -> None:
        if how == "ack":
            await channel.basic_ack(tag, multiple=multiple)
        else:
            await channel.basic_nack(tag, multiple=multiple, requeue=True)

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection without settling anything: the broker requeues every
        message not acknowledged yet."""
        if self._closed:
            return
        self._closed = True
        if self._requeuer is not None:
            self._requeuer.cancel()
            await asyncio.gather(self._requeuer, return_exceptions=True)
        self._requeues.clear()
        self._unsettled.clear()
        self._delivered.clear()
        if self._closing is not None:
            # Only the observer of the channel's closing: what it would say is not needed.
            self._closing.cancel()
        connection, self._connection = self._connection, None
        self._channel = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

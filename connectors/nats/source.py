"""The `nats` source: pull requests on a durable JetStream consumer, acknowledgements
once a message is settled.

As Lambda does with a queue (esm-reference.md 5.1), a message is acknowledged only
after its batch succeeded, it was filtered out (11.5), or, with ReportBatchItemFailures,
when it is not among the reported failures (5.2). A failed message is negatively
acknowledged (`nak`, after the configured delay) and the server delivers it again with
its delivery count grown, until the consumer's `max_deliver`: retries belong to the
consumer, as they belong to an SQS queue's redrive policy, and the mapping has no
on-failure destination for them (5.1, 8).

While a message is with the bridge (waiting for its batch, or being invoked), a
background task tells the server it is in progress (`+WPI`) once half of the consumer's
ack wait has passed, so a slow batch is not delivered a second time, as the SQS source
extends a message's visibility. A settled or released message is no longer kept.

With `ordered_by_subject` the source is an ordered queue: each subject is a message
group, delivered through one lane, one batch at a time (5.3); `SubjectOrder` keeps a
subject's later messages back while one handed back is still to come again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bridge.config.plugins import SourceContext
from bridge.errors import BridgeError, PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from bridge.redaction import describe_error
from connectors.nats.client import (
    API_TIMEOUT_SECONDS,
    ConnectionEvents,
    ConsumerSettings,
    connect,
    ensure_consumer,
    ensure_stream,
    logger,
    nats_errors,
    settle_quietly,
)
from connectors.nats.config import NatsSourceConfig
from connectors.nats.events import JetStreamRecords
from connectors.nats.ordering import SubjectOrder

# In-progress acknowledgements are checked four times per ack wait, and at least this often.
LONGEST_PROGRESS_CHECK_SECONDS = 5.0
# Settling requests are confirmed (a round trip after them) within this long.
FLUSH_TIMEOUT_SECONDS = 5
# How often the source checks that its consumer still exists.
CONSUMER_CHECK_SECONDS = 30.0
# Lanes of an ordered source when the mapping sets no maximum_concurrency.
DEFAULT_ORDERED_LANES = 5


class NatsSource(Source):
    """A durable pull consumer; ordered by subject, an ordered queue (esm-reference.md 5)."""

    def __init__(self, config: NatsSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.mode = DeliveryMode.ORDERED_QUEUE if config.ordered_by_subject else DeliveryMode.QUEUE
        self.problem: str | None = None
        self._mapping = context.mapping
        self._consumer = config.consumer_name(context.mapping)
        self._where = f"nats stream {config.stream} at {config.redacted_url()}"
        self._lanes = context.maximum_concurrency or DEFAULT_ORDERED_LANES
        self._records = JetStreamRecords(
            server=config.server_address(),
            stream=config.stream,
            consumer=self._consumer,
            region=context.identity.region,
            ordered=config.ordered_by_subject,
            lanes=self._lanes,
        )
        self.formatter = self._records.formatter()
        self._fetch_size = max(context.batch_size, 1)
        # What can be with the bridge at once: batch size times concurrency, as Lambda bounds
        # an Amazon MQ mapping's prefetch (esm-reference.md 13).
        self._max_ack_pending = max(context.batch_size * max(context.maximum_concurrency, 1), 1)
        self._client: Client | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._consumer_settings: ConsumerSettings | None = None
        # Reply subject of a delivery -> (its message, when its ack wait ends: monotonic).
        self._in_flight: dict[str, tuple[Msg, float]] = {}
        self._order: SubjectOrder[Msg] | None = None
        self._first_fetch_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._js: JetStreamContext | None = None
        self._ownership: Ownership | None = None
        self._fatal: BridgeError | None = None
        self._closing = False
        # Messages handed back at the consumer's max_deliver: never delivered again.
        self.max_deliver_reached = 0
        self._log = logger(context.mapping, self._where)

    @property
    def redelivery_seconds(self) -> float | None:
        """The consumer's ack wait, once it is known."""
        settings = self._consumer_settings
        return settings.ack_wait if settings is not None else None

    @property
    def source_arn(self) -> str:
        return self._records.source_arn

    @property
    def in_flight(self) -> int:
        """Messages read and neither settled nor released: kept in progress."""
        return len(self._in_flight)

    # -- opening ---------------------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        """Connect, check the stream and find or create the consumer."""
        self._log.info("nats.connecting", consumer=self._consumer)
        events = ConnectionEvents(self._set_problem, self._connection_closed)
        client = await connect(self.config, events, f"lambda-bridge {self._mapping}", self._where)
        self._client = client
        js = client.jetstream(timeout=API_TIMEOUT_SECONDS)
        await ensure_stream(js, self.config, self._where)
        settings = await ensure_consumer(
            js,
            self.config,
            name=self._consumer,
            max_ack_pending=self._max_ack_pending,
            where=self._where,
            warn=lambda message: self._log.warning("nats.consumer_differs", message=message),
        )
        self._consumer_settings = settings
        if settings.max_ack_pending > 0:
            self._max_ack_pending = settings.max_ack_pending
        with nats_errors(self._where, "subscribing to the consumer"):
            self._subscription = await js.pull_subscribe_bind(
                consumer=self._consumer, stream=self.config.stream
            )
        if self.mode.ordered:
            largest_delay = max(self.config.nak_delay_seconds, default=0.0)
            self._order = SubjectOrder[Msg](2 * settings.ack_wait + largest_delay)
            if settings.ack_pending:
                # Messages an earlier session left unacknowledged come back once their ack
                # wait has passed, and then before any newer message: wait for that, so a
                # subject's newer messages do not overtake them.
                self._first_fetch_at = time.monotonic() + settings.ack_wait
        self._ownership = ownership
        self._js = js
        self._tasks = [
            ownership.spawn(self._keep_in_progress(), "in-progress"),
            ownership.spawn(self._watch_consumer(), "consumer-watch"),
        ]
        self._log.info(
            "nats.reading",
            consumer=self._consumer,
            ordered=self.mode.ordered,
            ack_wait=settings.ack_wait,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
        )

    def _set_problem(self, problem: str | None) -> None:
        if self._closing:
            return
        self.problem = problem
        if problem is not None:
            self._log.warning("nats.disconnected", problem=problem)
        else:
            self._log.info("nats.reconnected")

    def _connection_closed(self) -> None:
        if not self._closing and self._fatal is None:
            self._fatal = SourceError(f"{self._where}: the connection was closed")

    # -- reading ---------------------------------------------------------------------

    async def read(self) -> Sequence[Record]:
        """One pull request for up to a batch of messages, waiting up to
        `fetch_wait_seconds`; [] when there are none."""
        if self._fatal is not None:
            raise self._fatal
        subscription = self._subscription
        assert subscription is not None, "open() was not called"
        wait = self.config.fetch_wait_seconds
        holding = self._first_fetch_at - time.monotonic()
        if holding > 0:
            await asyncio.sleep(min(holding, wait))
            return []
        # Messages held for their subject's order wait for a redelivery, which the
        # server hands out regardless of max_ack_pending: they take no room.
        held = self._order.held if self._order is not None else 0
        room = self._max_ack_pending - (len(self._in_flight) - held)
        if room <= 0:
            # The server hands out no more until some are settled.
            await asyncio.sleep(min(0.05, wait))
            return self._records_of([])
        try:
            messages = await subscription.fetch(min(self._fetch_size, room), timeout=wait)
        except TimeoutError:
            messages = []
        except Exception as exc:
            if self._fatal is not None:
                raise self._fatal from None
            raise SourceError(
                f"{self._where}: pull request failed: {describe_error(exc)}"
            ) from None
        return self._records_of(messages)

    def _records_of(self, messages: list[Msg]) -> list[Record]:
        """Records of the messages read; ordered by subject, those of a subject that waits
        for an earlier message to come back are held, and the held ones that no longer
        wait join in, in stream order."""
        settings = self._consumer_settings
        assert settings is not None
        kept_until = time.monotonic() + settings.ack_wait
        in_flight = self._in_flight
        for message in messages:
            in_flight[message.reply] = (message, kept_until)
        order = self._order
        if order is None:
            return [self._record(message) for message in messages]
        admitted = [
            (sequence, message)
            for message in messages
            if order.admit(message.subject, sequence := message.metadata.sequence.stream, message)
        ]
        admitted += order.ready()
        admitted.sort(key=lambda pair: pair[0])
        return [self._record(message) for _, message in admitted]

    def _record(self, message: Msg) -> Record:
        metadata = message.metadata
        return self._records.record(
            message.subject,
            message.data,
            message.headers,
            metadata.sequence.stream,
            metadata.sequence.consumer,
            metadata.num_delivered,
            metadata.num_pending,
            int(metadata.timestamp.timestamp() * 1000),
            message,
        )

    # -- settling --------------------------------------------------------------------

    async def acknowledge(self, records: Sequence[Record]) -> None:
        """Acknowledge the messages, then wait for the server to have them (a round trip):
        settled means acknowledged. One whose acknowledgement is lost comes again after
        the ack wait: delivered twice, never lost."""
        if not records:
            return
        in_flight = self._in_flight
        client = self._client
        if client is None:
            return
        messages: list[Msg] = [record.handle for record in records]
        for message in messages:
            in_flight.pop(message.reply, None)

        async def ack_all() -> None:
            for message in messages:
                await message.ack()
            await client.flush(FLUSH_TIMEOUT_SECONDS)

        await settle_quietly(
            ack_all(),
            self._log,
            "nats.ack_unconfirmed",
            len(messages),
            "delivered again after the ack wait if the acknowledgement was lost",
        )

    async def release(self, records: Sequence[Record]) -> None:
        """Hand the messages back: `nak`, after the delay `nak_delay_seconds` gives for
        their delivery count, and the server delivers them again (5.1)."""
        if not records:
            return
        messages: list[Msg] = [record.handle for record in records]
        for message in messages:
            self._in_flight.pop(message.reply, None)
        await self._nak(messages, delayed=True)

    async def _nak(
        self, messages: Sequence[Msg], *, delayed: bool, client: Client | None = None
    ) -> None:
        client = client or self._client
        if client is None:
            return
        settings = self._consumer_settings
        assert settings is not None
        order = self._order

        async def nak_all() -> None:
            for message in messages:
                delivered = message.metadata.num_delivered
                last = 0 < settings.max_deliver <= delivered
                if last:
                    self._given_up(message, delivered)
                elif order is not None:
                    order.handed_back(message.subject, message.metadata.sequence.stream)
                delay = self.config.nak_delay(delivered) if delayed else None
                await message.nak(delay)
            await client.flush(FLUSH_TIMEOUT_SECONDS)

        await settle_quietly(
            nak_all(),
            self._log,
            "nats.nak_unconfirmed",
            len(messages),
            "delivered again after the ack wait",
        )

    def _given_up(self, message: Msg, delivered: int) -> None:
        """The server delivers a message handed back at `max_deliver` no more (it only
        sends its MAX_DELIVERIES advisory): say so, without the payload."""
        self.max_deliver_reached += 1
        self._log.warning(
            "nats.max_deliver_reached",
            message_id=message.metadata.sequence.stream,
            subject=message.subject,
            deliveries=delivered,
        )

    # -- keeping messages in progress -----------------------------------------------

    async def _keep_in_progress(self) -> None:
        """Mark every message past half of its ack wait as in progress, which restarts
        its ack wait on the server."""
        settings = self._consumer_settings
        assert settings is not None
        ack_wait = settings.ack_wait
        interval = min(ack_wait / 4, LONGEST_PROGRESS_CHECK_SECONDS)
        while True:
            await asyncio.sleep(interval)
            soon = time.monotonic() + ack_wait / 2
            due = [message for message, until in self._in_flight.values() if until <= soon]
            if due:
                await self._mark_in_progress(due, ack_wait)

    async def _mark_in_progress(self, messages: list[Msg], ack_wait: float) -> None:
        client = self._client
        ownership = self._ownership
        assert client is not None and ownership is not None
        asked = time.monotonic()
        try:
            for message in messages:
                await message.in_progress()
            await client.flush(FLUSH_TIMEOUT_SECONDS)
        except Exception as exc:
            # Tried again at the next check; a message whose ack wait passes meanwhile is
            # delivered again (twice, never lost).
            reason = f"marking messages in progress failed: {describe_error(exc)}"
            ownership.failed("in-progress", reason)
            self._log.warning("nats.in_progress_failed", error=reason, messages=len(messages))
            return
        ownership.recovered("in-progress")
        in_flight = self._in_flight
        for message in messages:
            if message.reply in in_flight:
                in_flight[message.reply] = (message, asked + ack_wait)

    async def _watch_consumer(self) -> None:
        """A pull request on a deleted consumer (or stream) just finds nothing, so look
        the consumer up now and then. Once it is gone, read() fails the mapping with the
        reason (a permanent error), rather than the source creating the consumer again
        and delivering the whole stream a second time. Other errors are left to the
        connection's own reporting."""
        js = self._js
        assert js is not None
        while self._fatal is None:
            await asyncio.sleep(CONSUMER_CHECK_SECONDS)
            try:
                await js.consumer_info(self.config.stream, self._consumer)
            except nats.js.errors.NotFoundError as exc:
                self._fatal = PermanentSourceError(
                    f"{self._where}: consumer {self._consumer!r} is gone from the server "
                    f"({describe_error(exc)}); restarting the mapping creates it again, starting "
                    f"at deliver_policy {self.config.deliver_policy}"
                )
            except Exception as exc:
                self._log.debug("nats.consumer_check_failed", error=describe_error(exc))
        # Ending would count as a failure of its own: wait to be cancelled by close().
        await asyncio.Event().wait()

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Stop keeping messages in progress and hand the unsettled ones back at once
        (nak, in stream order) so they are delivered again without waiting for their ack
        wait; then disconnect."""
        self._closing = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        unsettled = [message for message, _ in self._in_flight.values()]
        self._in_flight.clear()
        if unsettled and not client.is_closed:
            unsettled.sort(key=lambda message: message.metadata.sequence.stream)
            await self._nak(unsettled, delayed=False, client=client)
        try:
            await client.close()
        except Exception as exc:
            self._log.warning("nats.close_failed", error=describe_error(exc))
        self._subscription = None

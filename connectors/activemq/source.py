"""The `activemq` source: one queue of an ActiveMQ broker, read over STOMP 1.2.

Lambda consumes Amazon MQ for ActiveMQ as a JMS client (esm-reference.md 1.7, 8): a
message is acknowledged once its batch succeeded or a filter left it out (11.5); after a
function error the whole batch is retried until it succeeds or its messages expire,
under ActiveMQ's default redelivery policy (a redelivery 1 s after the failure, no
back-off), and a message redelivered `maximumRedeliveries` times that fails again is
returned to the broker as a poison message, which the broker's dead-letter strategy
moves to the dead-letter queue. That policy is a JMS client's: the broker redelivers a
message by itself only when the consumer's connection ends.

This source does the same over STOMP: it subscribes with `client-individual`
acknowledgement, so each message is acknowledged alone (ACK); a released message stays
unacknowledged, so the broker keeps it for this consumer, and comes again after
`redelivery_delay_seconds`, marked `redelivered`; past `maximum_redeliveries` it is
refused with NACK, which ActiveMQ takes as a poison acknowledgement (dead-letter queue;
by default only persistent messages are kept there, non-persistent ones are dropped).
STOMP does not carry the broker's redelivery counter, only its `redelivered` flag, so a
message the broker redelivers after a reconnect counts as redelivered once.

Nothing is acknowledged early: when the connection ends (closed, crashed, lost), the
broker hands every unacknowledged message out again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Sequence

import structlog

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from bridge.redaction import describe_error
from connectors.activemq.client import ConnectionLost, Refused, StompClient
from connectors.activemq.config import ActiveMQSourceConfig
from connectors.activemq.events import ActiveMQEventFormatter, Delivery, MessageRecords
from connectors.activemq.stomp import Frame, encode

SUBSCRIPTION = "1"
# read() waits at most this long for a message.
READ_WAIT_SECONDS = 0.25
# Messages taken from the connection per read().
MAX_PER_READ = 1000


class ActiveMQSource(Source):
    """A queue: unordered, several batches at once, failures left to redelivery."""

    mode = DeliveryMode.QUEUE

    def __init__(self, config: ActiveMQSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.formatter = ActiveMQEventFormatter(config.arn(context.identity))
        self.problem: str | None = None
        self._records = MessageRecords(config.queue)
        self._prefetch = config.prefetch or context.batch_size * (context.maximum_concurrency + 1)
        self._where = f"activemq {config.redacted_url} queue {config.queue}"
        self._client: StompClient | None = None
        self._reader: asyncio.Task[None] | None = None
        # Connections made by this source; a delivery is settled on the one it came on.
        self._connection = 0
        # Released messages waiting to come again: (due, tie-breaker, delivery).
        self._due: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self.dropped_too_large = 0
        self._log = structlog.get_logger("connectors.activemq").bind(
            mapping=context.mapping, broker=config.redacted_url, queue=config.queue
        )

    @property
    def source_arn(self) -> str:
        return self.formatter.broker_arn

    # -- opening ---------------------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        config = self.config
        host, port = config.address
        login, passcode = config.credentials
        client = StompClient(
            host,
            port,
            tls=config.tls,
            login=login,
            passcode=passcode,
            heartbeat_seconds=config.heartbeat_seconds,
            max_body=config.max_message_bytes,
        )
        try:
            async with asyncio.timeout(config.connect_timeout_seconds):
                await client.connect()
        except Refused as exc:
            # The broker answered CONNECT with an ERROR (bad login, no permission):
            # Lambda's EVENT_SOURCE_AUTHN_ERROR; trying again cannot help.
            raise PermanentSourceError(f"{self._where}: {self._safe(exc)}") from None
        except (ConnectionLost, OSError, TimeoutError) as exc:
            # Closed or cut during the handshake (a broker restarting, at its
            # maximumConnections, failing over): the mapping tries again.
            raise SourceError(f"{self._where}: cannot connect: {self._safe(exc)}") from None
        self._connection += 1
        self._client = client
        self._reader = ownership.spawn(self._run(client), "stomp")
        try:
            await client.subscribe(
                SUBSCRIPTION,
                f"/queue/{config.queue}",
                {"ack": "client-individual", "activemq.prefetchSize": str(self._prefetch)},
            )
        except (ConnectionLost, TimeoutError) as exc:
            raise SourceError(f"{self._where}: subscribing failed: {self._safe(exc)}") from None
        self.problem = None
        self._log.info("activemq.reading", server=client.server, prefetch=self._prefetch)

    def _safe(self, error: BaseException) -> str:
        text = describe_error(error)
        password = self.config.credentials[1]
        return text.replace(password, "***") if password else text

    async def _run(self, client: StompClient) -> None:
        try:
            await client.run()
        except ConnectionLost as exc:
            if self._client is not client:
                # Closed on purpose: the task ends as cancelled, which is no failure.
                raise asyncio.CancelledError from None
            self.problem = f"{self._where}: connection lost: {self._safe(exc)}"
            raise SourceError(self.problem) from None

    # -- reading ---------------------------------------------------------------------

    def _alive(self) -> StompClient:
        client = self._client
        if client is None:
            raise SourceError(f"{self._where}: the source is not open")
        if client.closed is not None:
            raise SourceError(f"{self._where}: connection lost: {self._safe(client.closed)}")
        return client

    async def read(self) -> Sequence[Record]:
        """Messages received, and released ones whose redelivery delay has passed."""
        client = self._alive()
        records = self._due_again()
        messages = client.messages
        if not records and messages.empty():
            wait = READ_WAIT_SECONDS
            if self._due:
                wait = min(wait, max(self._due[0][0] - time.monotonic(), 0))
            # An event rather than wait_for(get()): on Python 3.11 wait_for can swallow
            # the cancellation of a stopping mapping.
            arrived = client.arrived
            arrived.clear()
            wake = asyncio.get_running_loop().call_later(wait, arrived.set)
            try:
                await arrived.wait()
            finally:
                wake.cancel()
            client = self._alive()
            records = self._due_again()
        too_large: list[Delivery] = []
        while not messages.empty() and len(records) < MAX_PER_READ:
            self._take(messages.get_nowait(), records, too_large)
        if too_large:
            await self._drop_too_large(too_large)
        return records

    def _due_again(self) -> list[Record]:
        due = self._due
        now = time.monotonic()
        records = []
        while due and due[0][0] <= now:
            records.append(self._records.record(heapq.heappop(due)[2]))
        return records

    def _take(self, frame: Frame, records: list[Record], too_large: list[Delivery]) -> None:
        headers = frame.headers
        if headers.get("subscription") != SUBSCRIPTION:
            return
        # STOMP carries the broker's redelivered flag, not its counter: a message the
        # broker hands out again counts as redelivered once.
        redeliveries = 1 if headers.get("redelivered") == "true" else 0
        delivery = Delivery(
            self._connection, headers.get("ack", ""), redeliveries, frame, int(time.time() * 1000)
        )
        if frame.truncated:
            too_large.append(delivery)
            return
        records.append(self._records.record(delivery))

    async def _drop_too_large(self, deliveries: list[Delivery]) -> None:
        """A body over max_message_bytes is never read whole: acknowledged and counted, as
        Lambda drops a message over its payload limit (esm-reference.md 3.1, 8)."""
        self.dropped_too_large += len(deliveries)
        for delivery in deliveries:
            self._log.warning(
                "activemq.message_dropped",
                message_id=delivery.frame.headers.get("message-id"),
                reason=f"body over max_message_bytes ({self.config.max_message_bytes})",
            )
        await self._send("ACK", deliveries)

    # -- settling --------------------------------------------------------------------

    async def acknowledge(self, records: Sequence[Record]) -> None:
        """ACK each message on the connection it came on."""
        await self._send("ACK", [record.handle for record in records])

    async def release(self, records: Sequence[Record]) -> None:
        """A failed batch: each message comes again after the redelivery delay, or, past
        `maximum_redeliveries`, is refused (NACK) into the dead-letter queue (8)."""
        limit = self.config.maximum_redeliveries
        due_at = time.monotonic() + self.config.redelivery_delay_seconds
        refused: list[Delivery] = []
        for record in records:
            delivery: Delivery = record.handle
            if delivery.connection != self._connection:
                continue  # the broker already hands it out again
            delivery.redeliveries += 1
            if limit != -1 and delivery.redeliveries > limit:
                refused.append(delivery)
            else:
                heapq.heappush(self._due, (due_at, next(self._order), delivery))
        if refused:
            self._log.warning(
                "activemq.dead_lettered",
                message_ids=[delivery.frame.headers.get("message-id") for delivery in refused],
                redeliveries=limit,
            )
            await self._send("NACK", refused)

    async def _send(self, command: str, deliveries: Sequence[Delivery]) -> None:
        client = self._client
        current = self._connection
        frames = [
            encode(command, {"id": delivery.ack})
            for delivery in deliveries
            if delivery.connection == current
        ]
        if not frames or client is None or client.closed is not None:
            return
        try:
            await client.send_frames(frames)
        except ConnectionLost as exc:
            # Unacknowledged, so the broker delivers these messages again.
            self._log.warning(
                f"activemq.{command.lower()}_lost", messages=len(frames), error=self._safe(exc)
            )

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Disconnect once the broker has processed every ACK sent; what is unsettled
        (including messages waiting for their redelivery) the broker hands out again."""
        client, self._client = self._client, None
        reader, self._reader = self._reader, None
        self._due.clear()
        if client is not None:
            if reader is not None and not reader.done():
                await client.disconnect()
            else:
                client.abort()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

"""The `mqtt` source: the messages of a persistent MQTT 5 session, acknowledged once settled.

The session (named by `client_id`) is one partition, read in the order the broker sent
it, and each message's PUBACK waits until it and every message received before it are
settled: the order MQTT requires acknowledgements in (MQTT 5.0, 4.6), and the stream
rule of a partition's checkpoint (esm-reference.md 6.1, 17). So:

- a message whose outcome is not settled is never acknowledged; the broker keeps it in
  the session and sends it again (DUP set) on the next connection with Clean Start off,
  after a crash, a lost connection or a stop;
- messages published while the daemon is away are queued by the broker in the session
  (for `session_expiry_seconds`) and delivered when it connects again;
- a broker resends nothing within a connection, and MQTT has no negative
  acknowledgement, so a failed batch is retried by the bridge, in order, up to
  `maximum_retry_attempts`, then handed to the on-failure destination and acknowledged
  (the stream family's rules, esm-reference.md 6.1-6.4, 10.1).

A lost connection ends the session (SourceError): the mapping reconnects with backoff,
and what the old connection delivered but did not acknowledge comes again on the new
one. Records of the old connection are never acknowledged on the new one, whose
packet identifiers mean other messages: each connection is its own Source.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as paho
import structlog

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.ops.health import cancel_and_wait
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from connectors.mqtt.client import KEEPALIVE_TICK_SECONDS, Connection, ConnectRefused
from connectors.mqtt.config import MqttSourceConfig
from connectors.mqtt.events import Message, MessageRecords

CONNECT_TIMEOUT_SECONDS = 10.0
# How long one read waits for a message.
READ_WAIT_SECONDS = 0.5
# Messages turned into records per read, so a backlog reaches the lanes in chunks.
MAX_RECORDS_PER_READ = 2000
# QoS 0 messages dropped for a full buffer are logged at most this often.
DROPS_LOGGED_EVERY_SECONDS = 10.0

# MQTT 5 PUBLISH properties (MQTT 5.0, 3.3.2.3) and their names in the event.
_PROPERTY_NAMES = (
    ("PayloadFormatIndicator", "payloadFormatIndicator"),
    ("MessageExpiryInterval", "messageExpiryInterval"),
    ("ContentType", "contentType"),
    ("ResponseTopic", "responseTopic"),
)


def message_of(raw: paho.MQTTMessage) -> Message:
    try:
        topic = raw.topic
    except UnicodeDecodeError:
        # A conforming broker never sends one (MQTT 5.0, 1.5.4).
        topic = "\ufffd"

    return Message(topic, raw.payload, raw.qos, bool(raw.retain), bool(raw.dup), properties_of(raw))


def properties_of(raw: paho.MQTTMessage) -> dict[str, Any]:
    properties = getattr(raw, "properties", None)
    found: dict[str, Any] = {}
    if properties is None:
        return found
    for attribute, name in _PROPERTY_NAMES:
        value = getattr(properties, attribute, None)
        if value is not None:
            found[name] = value
    correlation = getattr(properties, "CorrelationData", None)
    if correlation is not None:
        found["correlationData"] = base64.b64encode(correlation).decode("ascii")
    user = getattr(properties, "UserProperty", None)
    if user:
        found["userProperties"] = [{"key": key, "value": value} for key, value in user]
    return found


class MqttSource(Source):
    """One connection of the session; see the module's docstring."""

    mode = DeliveryMode.STREAM

    def __init__(self, config: MqttSourceConfig, context: SourceContext) -> None:
        self.config = config
        self._endpoint = config.endpoint()
        self._where = config.redacted_url()
        self._records = MessageRecords(
            broker=self._endpoint.address,
            client_id=config.client_id,
            connection=uuid.uuid4().hex[:12],
            parallelization_factor=context.parallelization_factor,
        )
        self.formatter = self._records.formatter(config.event_shape, config.topic_key)
        self._receive_maximum = config.effective_receive_maximum(
            context.batch_size, context.parallelization_factor
        )
        self._connection: Connection | None = None
        # (record position, packet id) of every QoS 1 message read and not yet
        # acknowledged, in the order received.
        self._unacked: deque[tuple[int, int]] = deque()
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False
        # QoS 0 messages dropped (a full buffer) that were logged, and when next to log.
        self._drops_logged = 0
        self._next_drops_log = 0.0
        self._log = structlog.get_logger("connectors.mqtt").bind(
            mapping=context.mapping, url=self._where, client_id=config.client_id
        )

    @property
    def source_arn(self) -> str:
        return self._endpoint.address

    @property
    def dropped(self) -> int:
        """QoS 0 messages dropped because `max_buffered_messages` were waiting."""
        return self._connection.dropped if self._connection is not None else 0

    async def open(self, ownership: Ownership) -> None:
        # Loading the certificate authorities reads files: not on the event loop.
        tls = await asyncio.to_thread(self._tls_context)
        connection = self._connection = Connection(
            self._endpoint,
            client_id=self.config.client_id,
            session_expiry_seconds=self.config.session_expiry_seconds,
            receive_maximum=self._receive_maximum,
            keepalive_seconds=self.config.keepalive_seconds,
            max_buffered=self.config.max_buffered_messages,
            max_packet_bytes=self.config.max_message_bytes,
            tls=tls,
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                session_present = await connection.connect()
                await connection.subscribe(self.config.topics, self.config.qos)
        except ConnectRefused as exc:
            connection.drop()
            error = PermanentSourceError if exc.permanent else SourceError
            raise error(f"{self._where}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            connection.drop()
            raise SourceError(f"{self._where}: connect: {exc or type(exc).__name__}") from None
        self._keepalive = ownership.spawn(self._keep_alive(connection), "mqtt-keepalive")
        if session_present:
            self._log.info("mqtt.connected", session="resumed", topics=self.config.topics)
        else:
            # The first start, or the broker no longer had the session (it expired or
            # the broker lost it): nothing published before now is waiting for us.
            self._log.warning("mqtt.connected", session="new", topics=self.config.topics)

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self._endpoint.tls:
            return None
        try:
            return ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise PermanentSourceError(f"{self._where}: ca_file: {exc}") from None

    async def _keep_alive(self, connection: Connection) -> None:
        while not connection.lost.done():
            await asyncio.sleep(KEEPALIVE_TICK_SECONDS)
            connection.keepalive()
            if time.monotonic() >= self._next_drops_log:
                self._log_drops(connection)

    def _log_drops(self, connection: Connection) -> None:
        """Say how many QoS 0 messages were dropped since last said, if any."""
        dropped = connection.dropped - self._drops_logged
        if not dropped:
            return
        self._drops_logged = connection.dropped
        self._next_drops_log = time.monotonic() + DROPS_LOGGED_EVERY_SECONDS
        self._log.warning(
            "mqtt.qos0_dropped",
            dropped=dropped,
            total=connection.dropped,
            reason=f"{self.config.max_buffered_messages} messages were waiting for the "
            "mapping (max_buffered_messages)",
        )

    async def read(self) -> Sequence[Record]:
        connection = self._connection
        if connection is None or self._closed:
            raise SourceError(f"{self._where}: the source is not open")
        messages = connection.messages
        if not messages:
            connection.arrived.clear()
            if not connection.lost.done():
                try:
                    async with asyncio.timeout(READ_WAIT_SECONDS):
                        await connection.arrived.wait()
                except TimeoutError:
                    return []
        if connection.lost.done():
            # What it delivered and we did not acknowledge, the broker sends again on the
            # next connection: reading on would only deliver those twice.
            raise SourceError(f"{self._where}: connection lost: {connection.lost.result()}")
        now = time.time()
        build = self._records.record
        unacked = self._unacked
        records = []
        for raw in connection.take(MAX_RECORDS_PER_READ):
            if raw.qos:
                record = build(message_of(raw), now, raw.mid)
                unacked.append((record.position, raw.mid))
            else:
                record = build(message_of(raw), now)
            records.append(record)
        return records

    async def offset_lag(self) -> dict[str, int]:
        """Messages received from the broker and not read by the mapping yet (what the
        broker still holds for the session, MQTT does not tell)."""
        connection = self._connection
        return {self.config.client_id: len(connection.messages) if connection else 0}

    async def commit(self, positions: Mapping[str, Record]) -> None:
        """PUBACK every message received up to the position, in the order received."""
        newest = positions.get(self.config.client_id)
        connection = self._connection
        if newest is None or connection is None or connection.lost.done():
            return
        unacked = self._unacked
        position = newest.position
        while unacked and unacked[0][0] <= position:
            connection.ack(unacked.popleft()[1])

    async def close(self) -> None:
        """DISCONNECT after the PUBACKs already due; the session stays with the broker,
        and with it every message not acknowledged."""
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            await cancel_and_wait([self._keepalive])
        connection = self._connection
        if connection is None:
            return
        try:
            await connection.disconnect()
        finally:
            connection.drop()
        self._log_drops(connection)
        self._log.info("mqtt.disconnected", unacknowledged=len(self._unacked))

"""MQTT messages as records, and the two event shapes a function can receive.

AWS has no MQTT event source mapping; the nearest thing is an AWS IoT rule
(`SELECT * FROM 'sensors/#'`) with a Lambda action, which invokes the function
asynchronously with one message's payload as the event. The bridge batches, so its
default event is `{"Records": [...]}`, one record per message, with the facts an IoT
rule's SQL functions give (`topic()`, `timestamp()`, `get_mqtt_property()`,
`get_user_properties()`) as fields, and the payload as base64 as Kinesis carries
`data`. `event_shape: iot-rule` gives the IoT rule's own event instead: the payload
itself if it is JSON, else `{"data": <base64>}` as `SELECT encode(*, 'base64') AS
data` gives it, with the topic added under `topic_key` if one is set. The README
describes every field ("Event formats").

Everything here is pure: no broker is needed to build records or events.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

EVENT_SOURCE = "mqtt"
BATCH_INFO = "MqttBatchInfo"


@dataclass
class Message:
    """What the bridge keeps of a received PUBLISH."""

    topic: str
    payload: bytes | bytearray
    qos: int = 1
    retain: bool = False
    dup: bool = False
    # MQTT 5 properties as the event names them (`properties`), present ones only.
    properties: dict[str, Any] = field(default_factory=dict)


class MessageRecords:
    """Builds the records of one connection: `messageId` is `<connection>-<n>`, n
    counting the messages received on it, so ids never repeat within a batch."""

    def __init__(
        self, *, broker: str, client_id: str, connection: str, parallelization_factor: int = 1
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.connection = connection
        self.parallelization_factor = parallelization_factor
        self.received = 0
        self._prefix = (
            b'{"eventSource":"'
            + EVENT_SOURCE.encode()
            + b'","eventSourceARN":'
            + dumps(broker)
            + b',"clientId":'
            + dumps(client_id)
            + b',"messageId":"'
            + connection.encode()
            + b"-"
        )

    def record(self, message: Message, arrival: float, packet_id: int | None = None) -> Record:
        """The record of a message; `packet_id` is the broker's packet identifier of a
        QoS 1 message (kept as the record's handle, see `stable_position`)."""
        self.received += 1
        number = self.received
        encoded = b"".join(
            (
                self._prefix,
                b"%d" % number,
                b'","topic":',
                dumps(message.topic),
                b',"qos":%d,"retain":%s,"dup":%s,"payload":"'
                % (
                    message.qos,
                    b"true" if message.retain else b"false",
                    b"true" if message.dup else b"false",
                ),
                binascii.b2a_base64(message.payload, newline=False),
                b'","timestamp":%d,"properties":' % int(arrival * 1000),
                dumps(message.properties),
                b"}",
            )
        )
        factor = self.parallelization_factor
        lane: Hashable = self.client_id
        if factor > 1:
            lane = (self.client_id, zlib.crc32(message.topic.encode()) % factor)
        item_id = f"{self.connection}-{number}"
        return Record(self.client_id, number, item_id, None, arrival, lane, packet_id, encoded)

    def formatter(self, shape: str, topic_key: str | None) -> RecordsEventFormatter:
        if shape == "iot-rule":
            return IotRuleFormatter(self.broker, topic_key)
        return MqttRecordsFormatter(self.broker)


class MqttRecordsFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; failure records carry `MqttBatchInfo`."""

    def __init__(self, broker: str) -> None:
        self.broker = broker

    def stable_position(self, record: Record) -> Any:
        """What a crash journal entry recognises a message by when it comes again after a
        restart: a broker resends an unacknowledged QoS 1 message with the packet
        identifier it first had (MQTT 5.0, 4.4), and no other message of the session
        holds that identifier meanwhile. Identifiers wrap after 65535; a batch that
        spans the wrap matches nothing, so its crash is not charged as an attempt (the
        messages are delivered again all the same). A QoS 0 message never comes again:
        its arrival time, which no later message shares, matches nothing after it."""
        return record.handle if record.handle is not None else record.arrival

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """Modelled on KinesisBatchInfo (esm-reference.md 10.1): the session plays the
        shard, message ids the sequence numbers, the broker the stream."""
        first, last = records[0], records[-1]
        return BATCH_INFO, {
            "clientId": first.partition,
            "startMessageId": first.item_id,
            "endMessageId": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "broker": self.broker,
        }


NOT_JSON = object()


class IotRuleFormatter(MqttRecordsFormatter):
    """One message per event, as an AWS IoT rule's Lambda action sends it."""

    def __init__(self, broker: str, topic_key: str | None) -> None:
        super().__init__(broker)
        self.topic_key = topic_key
        # The event is the payload (at most the size of its base64 in the record) and
        # at most the topic again under topic_key.
        self.envelope_bytes = 16 + (len(topic_key) if topic_key else 0)

    def encode_event(self, records: Sequence[Record]) -> bytes:
        [record] = records
        item = record.payload
        raw = base64.b64decode(item["payload"])
        try:
            document: Any = loads(raw)
        except JSONDecodeError:
            document = NOT_JSON
        if self.topic_key is None:
            return raw if document is not NOT_JSON else dumps({"data": item["payload"]})
        if not isinstance(document, dict):
            document = {"data": item["payload"]}
        return dumps({**document, self.topic_key: item["topic"]})

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        # The event carries no id; the mapping refuses ReportBatchItemFailures.
        return None


def sample_messages(count: int) -> list[Message]:
    """Messages for `generate-event mqtt`: JSON readings, and a binary one."""
    messages = []
    for index in range(count):
        room = ("kitchen", "hall", "attic")[index % 3]
        if index % 4 == 3:
            payload = b"\x00\x01\x02\x03 raw frame"
            properties: dict[str, Any] = {"contentType": "application/octet-stream"}
        else:
            payload = dumps({"room": room, "temperature": 20.5 + index, "unit": "C"})
            properties = {
                "payloadFormatIndicator": 1,
                "contentType": "application/json",
                "userProperties": [{"key": "firmware", "value": "1.4.2"}],
            }
        messages.append(Message(f"sensors/{room}/temperature", payload, properties=properties))
    return messages

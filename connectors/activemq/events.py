"""The Amazon MQ for ActiveMQ event (esm-reference.md 1.7), built from STOMP MESSAGE frames.

`{"eventSource": "aws:mq", "eventSourceArn": <broker ARN>, "messages": [...]}`. Each
message has the fields and types of the events Lambda delivers (the captured samples
aws-lambda-go and aws_lambda_events test with, whose field names the AWS Go types use).
Where esm-reference.md 1.7's hand-written example differs (`correlationId`, JSON nulls
for `replyTo` and `type`, `expiration` as a string), the captured events are followed:

- `messageID`: the JMS message id; also the item id of the record.
- `messageType`: `jms/bytes-message` for a BytesMessage, `jms/text-message` for a
  TextMessage. ActiveMQ's STOMP transport gives a BytesMessage a `content-length`
  header and a TextMessage none, and that is how they are told apart.
- `deliveryMode`: 2 for a persistent message, 1 otherwise (JMS DeliveryMode).
- `correlationID`, `type`: the JMS correlation id and type, "" when unset.
- `replyTo`: the JMS reply-to destination as ActiveMQ prints one (`queue://name`), or
  "null" when unset, as Lambda writes it.
- `destination.physicalName`: the queue's name.
- `redelivered`: the broker's flag, or true once the bridge delivers it again itself.
- `timestamp`, `expiration` (0: never), `priority`: the JMS headers, numbers.
- `data`: the body, base64.
- `brokerInTime`, `brokerOutTime`: STOMP does not carry the broker's own times, so the
  first is the JMS timestamp (when the producer sent it) and the second when the
  bridge received the message, both in milliseconds.
- `properties`: the JMS user properties, as strings (STOMP carries them so); null when
  there are none.

Everything here is pure: no broker is needed to build records or events.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.codec import dumps
from bridge.config.plugins import Identity
from bridge.failures import iso_millis
from bridge.pipeline.responses import string_identifier
from bridge.records import Record
from connectors.activemq.stomp import Frame

EVENT_SOURCE = "aws:mq"
TEXT_MESSAGE = "jms/text-message"
BYTES_MESSAGE = "jms/bytes-message"
PERSISTENT, NON_PERSISTENT = 2, 1
DEFAULT_PRIORITY = 4
# STOMP headers that carry JMS headers or the delivery, not user properties.
_NOT_PROPERTIES = frozenset(
    {
        "message-id",
        "destination",
        "subscription",
        "ack",
        "content-length",
        "expires",
        "priority",
        "timestamp",
        "persistent",
        "correlation-id",
        "reply-to",
        "type",
        "redelivered",
        "original-destination",
    }
)
# STOMP destination prefixes and how ActiveMQ prints such a destination.
_DESTINATION_KINDS = {
    "/queue/": "queue://",
    "/topic/": "topic://",
    "/temp-queue/": "temp-queue://",
    "/temp-topic/": "temp-topic://",
}


@dataclass(slots=True)
class Delivery:
    """How a record is settled: the connection it came on, its ack id, and how often the
    bridge delivered it again after failed batches."""

    connection: int
    ack: str
    redeliveries: int
    frame: Frame
    received_ms: int


def _number(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return default


def reply_to(destination: str | None) -> str:
    if not destination:
        return "null"
    for prefix, printed in _DESTINATION_KINDS.items():
        if destination.startswith(prefix):
            return printed + destination[len(prefix) :]
    return destination


class MessageRecords:
    """Builds records from the MESSAGE frames of one queue."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._destination = {"physicalName": queue}
        self._position = 0

    def record(self, delivery: Delivery) -> Record:
        frame = delivery.frame
        headers = frame.headers
        message_id = headers.get("message-id", "")
        timestamp = _number(headers.get("timestamp"))
        properties = {name: value for name, value in headers.items() if name not in _NOT_PROPERTIES}
        payload = {
            "messageID": message_id,
            "messageType": BYTES_MESSAGE if "content-length" in headers else TEXT_MESSAGE,
            "timestamp": timestamp,
            "deliveryMode": PERSISTENT if headers.get("persistent") == "true" else NON_PERSISTENT,
            "correlationID": headers.get("correlation-id", ""),
            "replyTo": reply_to(headers.get("reply-to")),
            "destination": self._destination,
            "redelivered": delivery.redeliveries > 0,
            "type": headers.get("type", ""),
            "expiration": _number(headers.get("expires")),
            "priority": _number(headers.get("priority"), DEFAULT_PRIORITY),
            "data": b64encode(frame.body).decode("ascii"),
            "brokerInTime": timestamp or delivery.received_ms,
            "brokerOutTime": delivery.received_ms,
            "properties": properties or None,
        }
        self._position += 1
        arrival = (timestamp or delivery.received_ms) / 1000
        return Record(
            self.queue,
            self._position,
            message_id,
            payload,
            arrival,
            None,
            delivery,
            dumps(payload),
        )


class ActiveMQEventFormatter:
    """`{"eventSource": "aws:mq", "eventSourceArn": ..., "messages": [...]}`."""

    def __init__(self, broker_arn: str) -> None:
        self.broker_arn = broker_arn
        self._open = (
            b'{"eventSource":"'
            + EVENT_SOURCE.encode()
            + b'","eventSourceArn":'
            + dumps(broker_arn)
            + b',"messages":['
        )
        self._close = b"]}"
        self.envelope_bytes = len(self._open) + len(self._close)

    def encode_event(self, records: Sequence[Record]) -> bytes:
        return self._open + b",".join(map(Record.encode, records)) + self._close

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        """Only reached by a mapping with partial batch responses, which Amazon MQ
        mappings refuse (esm-reference.md 8, 9)."""
        return string_identifier(raw)

    def stable_position(self, record: Record) -> Any:
        return None

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """lambda-bridge's own `ActiveMQBatchInfo`, modelled on SQSBatchInfo (10.1): an
        Amazon MQ mapping has no destination on AWS (8), so this only describes a message
        given up for its size."""
        first, last = records[0], records[-1]
        return "ActiveMQBatchInfo", {
            "brokerArn": self.broker_arn,
            "queue": first.partition,
            "firstMessageId": first.item_id,
            "lastMessageId": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
        }


def sample_frame(index: int) -> Frame:
    """A MESSAGE frame as ActiveMQ sends one, for `generate-event` and tests."""
    sent = 1_790_000_000_000 + index * 250
    headers = {
        "message-id": f"ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-1."
        f"amazonaws.com-37557-1790000000000-4:1:1:1:{index + 1}",
        "destination": "/queue/orders",
        "subscription": "1",
        "ack": f"ID:ack-{index + 1}",
        "timestamp": str(sent),
        "expires": "0",
        "priority": "4",
        "persistent": "true",
        "orderSource": "web",
    }
    body = f'{{"order_id": {1000 + index}, "status": "created"}}'.encode()
    if index % 2:
        headers["content-length"] = str(len(body))
    return Frame("MESSAGE", headers, body)


def sample_event(count: int, identity: Identity) -> bytes:
    arn = (
        f"arn:aws:mq:{identity.region}:{identity.account_id}:broker:orders:"
        "b-9bcfa592-423a-4942-879d-eb284b418fc8"
    )
    records = MessageRecords("orders")
    built = [
        records.record(Delivery(0, "", 0, sample_frame(n), 1_790_000_000_002 + n * 250))
        for n in range(count)
    ]
    return ActiveMQEventFormatter(arn).encode_event(built)

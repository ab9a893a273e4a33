"""The Amazon MQ for RabbitMQ event Lambda delivers (esm-reference.md 1.8).

```
{"eventSource": "aws:rmq", "eventSourceArn": "<broker ARN>",
 "rmqMessagesByQueue": {"<queue>::<virtual host>": [
     {"basicProperties": {...}, "redelivered": false, "data": "<base64 body>"}]}}
```

Lambda's pollers are Java: `basicProperties` is the RabbitMQ Java client's
`BasicProperties` as Gson writes it. Every property is present, null when the message
does not set it, plus `bodySize`. A string header value is the Java client's
`LongString`, written as its byte array, `{"bytes": [...]}`, each byte a signed Java
byte (-128..127); numbers and booleans stay what they are; nested tables and arrays are
converted the same way. A date (the `timestamp` property, a timestamp header) is Gson's
default rendering of a `java.util.Date` in the US locale and UTC: `Jan 1, 1970, 12:33:41
AM`.

Amazon MQ mappings have no partial batch responses, retries or destinations
(esm-reference.md 8): item identifiers are never parsed. Everything here is pure.
"""

from __future__ import annotations

import binascii
import datetime as dt
import time
from collections.abc import Hashable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import encode_grouped
from bridge.records import Record

EVENT_SOURCE = "aws:rmq"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Room for the `"<queue>::<vhost>":[...]` wrapper of a batch's queue (names of up to 255
# characters each, escaped).
QUEUE_WRAPPER_BYTES = 1_600


class MessageProperties(Protocol):
    """The AMQP basic properties an event needs; pamqp's `Basic.Properties` has them."""

    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, Any] | None: ...
    @property
    def delivery_mode(self) -> int | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def expiration(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def timestamp(self) -> dt.datetime | None: ...
    @property
    def message_type(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...
    @property
    def cluster_id(self) -> str | None: ...


def java_date(moment: dt.datetime) -> str:
    """`Jan 1, 1970, 12:33:41 AM`: Gson's default form of a Java Date (US locale, UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return (
        f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}, "
        f"{hour}:{moment.minute:02d}:{moment.second:02d} {half}"
    )


def java_bytes(data: bytes) -> list[int]:
    """The bytes as Java's signed bytes."""
    return [value - 256 if value > 127 else value for value in data]


def header_value(value: Any) -> Any:
    """A header value as Lambda writes it (see the module's docstring)."""
    if isinstance(value, str):
        return {"bytes": java_bytes(value.encode())}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": java_bytes(bytes(value))}
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return java_date(value)
    if isinstance(value, Mapping):
        return {str(name): header_value(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [header_value(item) for item in value]
    return str(value)


def basic_properties(properties: MessageProperties, body_size: int) -> dict[str, Any]:
    """`basicProperties`: every field, in Lambda's order, null where unset (an unset
    cluster id, which the AMQP client leaves as "", too) (esm-reference.md 1.8)."""
    headers = properties.headers
    timestamp = properties.timestamp
    return {
        "contentType": properties.content_type,
        "contentEncoding": properties.content_encoding,
        "headers": None if headers is None else header_value(headers),
        "deliveryMode": properties.delivery_mode,
        "priority": properties.priority,
        "correlationId": properties.correlation_id,
        "replyTo": properties.reply_to,
        "expiration": properties.expiration,
        "messageId": properties.message_id,
        "timestamp": None if timestamp is None else java_date(timestamp),
        "type": properties.message_type,
        "userId": properties.user_id,
        "appId": properties.app_id,
        "clusterId": properties.cluster_id or None,
        "bodySize": body_size,
    }


class QueueRecords:
    """Builds the Records of one queue's deliveries: the partition is `<queue>::<vhost>`,
    the position and item id the delivery tag, the handle the delivery tag."""

    def __init__(self, queue: str, virtual_host: str) -> None:
        self.key = f"{queue}::{virtual_host}"

    def record(
        self,
        delivery_tag: int,
        properties: MessageProperties,
        body: bytes,
        redelivered: bool,
        received: float | None = None,
    ) -> Record:
        encoded = (
            b'{"basicProperties":'
            + dumps(basic_properties(properties, len(body)))
            + (b',"redelivered":true,"data":"' if redelivered else b',"redelivered":false,"data":"')
            + binascii.b2a_base64(body, newline=False)
            + b'"}'
        )
        return Record(
            self.key,
            delivery_tag,
            delivery_tag,
            None,
            time.time() if received is None else received,
            None,
            delivery_tag,
            encoded,
        )


class RabbitMqEventFormatter:
    """`{"eventSource": "aws:rmq", "eventSourceArn": ..., "rmqMessagesByQueue": {...}}`."""

    def __init__(self, broker_arn: str) -> None:
        self.broker_arn = broker_arn
        self._prefix = (
            dumps({"eventSource": EVENT_SOURCE, "eventSourceArn": broker_arn})[:-1]
            + b',"rmqMessagesByQueue":{'
        )
        self.envelope_bytes = len(self._prefix) + 2 + QUEUE_WRAPPER_BYTES

    def encode_event(self, records: Sequence[Record]) -> bytes:
        return self._prefix + encode_grouped(records) + b"}}"

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        """Amazon MQ has no partial batch responses (esm-reference.md 8, 9)."""
        return None

    def stable_position(self, record: Record) -> Any:
        """A delivery tag names a delivery on one channel, not a message: none survives."""
        return None

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """What a failure record of a dropped message says (lambda-bridge's own: Amazon
        MQ mappings have no destinations, esm-reference.md 8); only logged."""
        first, last = records[0], records[-1]
        return "RabbitMQBatchInfo", {
            "eventSourceArn": self.broker_arn,
            "queue": first.partition,
            "batchSize": len(records),
            "payloadSize": len(self.encode_event(records)),
            "firstReceivedTimestamp": iso_millis(first.arrival),
            "lastReceivedTimestamp": iso_millis(last.arrival),
        }


class SampleProperties:
    """Properties of a made-up message, for `generate-event` and tests."""

    def __init__(self, index: int) -> None:
        self.content_type: str | None = "application/json"
        self.content_encoding: str | None = None
        self.headers: Mapping[str, Any] | None = {"source": "web", "attempt": 1 + index % 3}
        self.delivery_mode: int | None = 2
        self.priority: int | None = None
        self.correlation_id: str | None = f"order-{1000 + index}"
        self.reply_to: str | None = None
        self.expiration: str | None = "60000"
        self.message_id: str | None = f"msg-{index:06d}"
        self.timestamp: dt.datetime | None = dt.datetime.fromtimestamp(
            1_790_000_000 + index, dt.UTC
        )
        self.message_type: str | None = None
        self.user_id: str | None = "AIDACKCEVSQ6C2EXAMPLE"
        self.app_id: str | None = None
        self.cluster_id: str | None = None


def sample_records(count: int, queue: str = "pizzaQueue", virtual_host: str = "/") -> list[Record]:
    builder = QueueRecords(queue, virtual_host)
    return [
        builder.record(
            index + 1,
            SampleProperties(index),
            f'{{"order_id": {1000 + index}, "status": "created"}}'.encode(),
            redelivered=False,
            received=1_790_000_000 + index,
        )
        for index in range(count)
    ]

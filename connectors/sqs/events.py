"""The SQS event Lambda delivers (esm-reference.md 1.2, 1.3), built from ReceiveMessage.

Each record carries the message as the SQS API returned it, renamed to Lambda's
lower-camel keys: `attributes` keeps the system attributes (all strings) as they are,
`messageAttributes` turns each `{"StringValue", "BinaryValue", ...}` into
`{"stringValue", "binaryValue" (base64), "stringListValues", "binaryListValues",
"dataType"}` with both lists always present, and `md5OfMessageAttributes` is null when a
message has no attributes. The item identifier of a partial batch response is the
`messageId` (5.2).

Everything here is pure: no queue is needed to build records or events.
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from base64 import b64encode
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

EVENT_SOURCE = "aws:sqs"
# Lanes of a FIFO queue when the mapping sets no maximum_concurrency (esm-reference.md 13).
DEFAULT_FIFO_LANES = 5


def _base64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def lambda_message_attributes(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """SQS API message attributes in the shape Lambda delivers them (esm-reference.md 1.2)."""
    converted: dict[str, Any] = {}
    for name, attribute in raw.items():
        entry: dict[str, Any] = {}
        if "StringValue" in attribute:
            entry["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            entry["binaryValue"] = _base64(attribute["BinaryValue"])
        entry["stringListValues"] = list(attribute.get("StringListValues", ()))
        binary_list = attribute.get("BinaryListValues", ())
        entry["binaryListValues"] = [_base64(value) for value in binary_list]
        entry["dataType"] = attribute["DataType"]
        converted[name] = entry
    return converted


class MessageRecords:
    """Builds Records from the messages ReceiveMessage returns for one queue.

    Standard queue: every record is in the queue's one partition and lane, unordered.
    FIFO queue: `partition` is the message group and `lane` is crc32(group) modulo
    `lanes`, so a group always goes through the same lane, in order.
    """

    def __init__(self, queue_arn: str, *, fifo: bool, lanes: int = DEFAULT_FIFO_LANES) -> None:
        self.queue_arn = queue_arn
        self.region = queue_arn.split(":")[3]
        self.queue_name = queue_arn.rsplit(":", 1)[1]
        self.fifo = fifo
        self.lanes = max(lanes, 1)
        self._tail_fields = {
            "eventSource": EVENT_SOURCE,
            "eventSourceARN": queue_arn,
            "awsRegion": self.region,
        }
        # Every record ends the same way: the closing fields go in once, as bytes.
        self._tail = (
            b',"eventSource":"'
            + EVENT_SOURCE.encode()
            + b'","eventSourceARN":'
            + dumps(queue_arn)
            + b',"awsRegion":'
            + dumps(self.region)
            + b"}"
        )

    def lane_of(self, group: str) -> int:
        return zlib.crc32(group.encode()) % self.lanes

    def record(self, message: Mapping[str, Any]) -> Record:
        attributes = message.get("Attributes") or {}
        raw_attributes = message.get("MessageAttributes")
        # The dict is kept beside its JSON: filters read it without decoding anything
        # but the body.
        payload = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": attributes,
            "messageAttributes": lambda_message_attributes(raw_attributes)
            if raw_attributes
            else {},
            "md5OfMessageAttributes": message.get("MD5OfMessageAttributes")
            if raw_attributes
            else None,
            "md5OfBody": message["MD5OfBody"],
        }
        head = dumps(payload)
        payload.update(self._tail_fields)
        sent = attributes.get("SentTimestamp")
        sent_ms = int(sent) if sent else int(time.time() * 1000)
        if self.fifo:
            group = attributes.get("MessageGroupId", "")
            sequence = attributes.get("SequenceNumber")
            partition = group
            position = int(sequence) if sequence else sent_ms
            lane: int | None = self.lane_of(group)
        else:
            partition, position, lane = self.queue_name, sent_ms, None
        return Record(
            partition,
            position,
            message["MessageId"],
            payload,
            sent_ms / 1000,
            lane,
            message["ReceiptHandle"],
            head[:-1] + self._tail,
        )


class SqsEventFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; item identifiers are message ids.

    SQS mappings have no on-failure destination on AWS (esm-reference.md 5.1): failed
    messages stay in the queue. A failure record is only made here for a message too
    large to be delivered at all, described by `SQSBatchInfo` (lambda-bridge's own,
    modelled on KinesisBatchInfo, 10.1).
    """

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        first, last = records[0], records[-1]
        return "SQSBatchInfo", {
            "queueArn": first.payload.get("eventSourceARN"),
            "firstMessageId": first.item_id,
            "lastMessageId": last.item_id,
            "approximateSentTimestampOfFirstRecord": iso_millis(first.arrival),
            "approximateSentTimestampOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
        }


def sample_message(index: int) -> dict[str, Any]:
    """A message as ReceiveMessage returns it, for `generate-event` and tests."""
    sent = 1_790_000_000_000 + index * 250
    body = f'{{"order_id": {1000 + index}, "status": "created"}}'
    message: dict[str, Any] = {
        "MessageId": str(uuid.UUID(int=0x059F36B487A344AB83D2661975830A7D + index)),
        "ReceiptHandle": f"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a{index:06d}",
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(sent + 2),
        },
    }
    if index % 2:
        message["MessageAttributes"] = {
            "source": {"StringValue": "web", "DataType": "String"},
            "thumbnail": {"BinaryValue": b"\x89PNG\r\n\x1a\n", "DataType": "Binary"},
        }
        message["MD5OfMessageAttributes"] = "d25a6aea97eb8f585bfa92d314504a92"
    return message

"""JetStream messages as records modelled on SQS records (esm-reference.md 1.2).

AWS has no NATS source; the closest Lambda shape is a queue's: `{"Records": [...]}`, one
record per message, with a `messageId` that a partial batch response names as its
`itemIdentifier` (5.2). The body travels base64 under `data`, as Amazon MQ and Kafka
carry theirs (1.6, 1.7), since a NATS payload is bytes. The JetStream metadata of the
delivery (stream and consumer sequence, how often it was delivered, how many are still
pending) and the message's headers come along. `messageId` is `<stream>:<stream
sequence>`: stable across redeliveries, unique within the stream.

Everything here is pure: no server is needed to build records or events.
"""

from __future__ import annotations

import zlib
from base64 import b64encode
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

EVENT_SOURCE = "nats:jetstream"


class JetStreamRecords:
    """Builds Records from the messages one consumer of one stream delivers.

    Unordered: every record is in the stream's one partition, in no lane. Ordered by
    subject: `partition` is the subject, and `lane` crc32(subject) modulo `lanes`, so a
    subject always goes through the same lane, in order.
    """

    def __init__(
        self,
        *,
        server: str,
        stream: str,
        consumer: str,
        region: str,
        ordered: bool,
        lanes: int = 1,
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        # `nats://host:port/<stream>/<consumer>`: what is read, without credentials.
        self.source_arn = f"{server}/{stream}/{consumer}"
        self.ordered = ordered
        self.lanes = max(lanes, 1)
        self._id_prefix = f"{stream}:"
        self._fixed = {
            "stream": stream,
            "consumer": consumer,
        }
        self._tail_fields = {
            "eventSource": EVENT_SOURCE,
            "eventSourceARN": self.source_arn,
            "awsRegion": region,
        }
        # Every record ends the same way: the closing fields go in once, as bytes.
        self._tail = b"," + dumps(self._tail_fields)[1:]

    def lane_of(self, subject: str) -> int:
        return zlib.crc32(subject.encode()) % self.lanes

    def record(  # noqa: PLR0917 - one value per metadata field, on the hot path
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        stream_sequence: int,
        consumer_sequence: int,
        delivered: int,
        pending: int,
        timestamp_ms: int,
        handle: Any = None,
    ) -> Record:
        message_id = self._id_prefix + str(stream_sequence)
        payload: dict[str, Any] = {
            "messageId": message_id,
            "subject": subject,
            "data": b64encode(data).decode("ascii"),
            "headers": dict(headers) if headers else {},
            **self._fixed,
            "streamSequence": stream_sequence,
            "consumerSequence": consumer_sequence,
            "numDelivered": delivered,
            "numPending": pending,
            "timestamp": timestamp_ms,
        }
        head = dumps(payload)
        payload.update(self._tail_fields)
        if self.ordered:
            partition, lane = subject, self.lane_of(subject)
        else:
            partition, lane = self.stream, None
        return Record(
            partition,
            stream_sequence,
            message_id,
            payload,
            timestamp_ms / 1000,
            lane,
            handle,
            head[:-1] + self._tail,
        )

    def formatter(self) -> JetStreamEventFormatter:
        return JetStreamEventFormatter(self)


class JetStreamEventFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; item identifiers are message ids.

    As for SQS, failed messages stay with the server, which delivers them again (5.1);
    a failure record is only made for a message too large to be delivered at all, with
    `JetStreamBatchInfo`, modelled on KinesisBatchInfo (10.1).
    """

    def __init__(self, records: JetStreamRecords) -> None:
        self._records = records

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        first, last = records[0], records[-1]
        return "JetStreamBatchInfo", {
            "stream": self._records.stream,
            "consumer": self._records.consumer,
            "firstMessageId": first.item_id,
            "lastMessageId": last.item_id,
            "firstStreamSequence": first.position,
            "lastStreamSequence": last.position,
            "approximateTimestampOfFirstRecord": iso_millis(first.arrival),
            "approximateTimestampOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "eventSourceArn": self._records.source_arn,
        }


def sample_message(index: int) -> tuple[str, bytes, dict[str, str] | None, int, int, int, int, int]:
    """The arguments of `JetStreamRecords.record` for an example message."""
    subject = "orders.created" if index % 2 == 0 else "orders.updated"
    data = f'{{"order_id": {1000 + index}, "status": "created"}}'.encode()
    headers = {"Nats-Msg-Id": f"order-{1000 + index}"} if index % 2 == 0 else None
    sequence = 41 + index
    return (
        subject,
        data,
        headers,
        sequence,
        sequence + 16,
        1,
        9 - index % 10,
        (1_790_000_000_000 + index * 250),
    )

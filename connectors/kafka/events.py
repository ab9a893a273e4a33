"""The Kafka event Lambda delivers (esm-reference.md 1.6) and its failure records (10.3).

`{"eventSource": "SelfManagedKafka", "bootstrapServers": "...", "records": {"<topic>-<partition>":
[...]}}`, or `aws:kafka` with `eventSourceArn` for Amazon MSK. Keys and values are
base64; a message without a key has no `key`; headers are a list of one-entry objects
mapping the header name to its bytes as integers. The item identifier of a partial batch
response is `{"partition": "<topic>-<partition>", "offset": <offset>}` (section 7).
"""

from __future__ import annotations

import binascii
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple, Protocol

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import encode_grouped
from bridge.records import Record

# Room for the `"<topic>-<partition>":[...]` wrapper of a batch's partition.
PARTITION_WRAPPER_BYTES = 300


class ConsumedMessage(Protocol):
    """What an event needs of a consumed message; aiokafka's ConsumerRecord has it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class KafkaMessage(NamedTuple):
    """A ConsumedMessage built by hand (samples and tests)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


_TIMESTAMP_TYPES = {0: b"CREATE_TIME", 1: b"LOG_APPEND_TIME"}
_RECORD = (
    b'{"topic":%s,"partition":%d,"offset":%d,"timestamp":%d,"timestampType":"%s",'
    b'%s"value":"%s","headers":%s}'
)


def _headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    return dumps([{name: list(data or b"")} for name, data in headers]) if headers else b"[]"


class KafkaEventFormatter:
    def __init__(self, bootstrap_servers: str, event_source_arn: str | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.event_source_arn = event_source_arn
        envelope: dict[str, Any] = {
            "eventSource": "aws:kafka" if event_source_arn else "SelfManagedKafka"
        }
        if event_source_arn:
            envelope["eventSourceArn"] = event_source_arn
        envelope["bootstrapServers"] = bootstrap_servers
        self._prefix = dumps(envelope)[:-1] + b',"records":{'
        self.envelope_bytes = len(self._prefix) + 2 + PARTITION_WRAPPER_BYTES
        # (topic, partition) -> ("<topic>-<partition>", the topic as JSON)
        self._names: dict[tuple[str, int], tuple[str, bytes]] = {}

    def _names_of(self, topic: str, partition: int) -> tuple[str, bytes]:
        place = (topic, partition)
        names = self._names.get(place)
        if names is None:
            names = self._names[place] = (f"{topic}-{partition}", dumps(topic))
        return names

    def record(self, message: ConsumedMessage) -> Record:
        return self.records(message.topic, message.partition, [message])[0]

    def records(
        self, topic: str, partition: int, messages: Sequence[ConsumedMessage]
    ) -> list[Record]:
        """The records of one fetch of a partition (its names looked up once)."""
        name, topic_json = self._names_of(topic, partition)
        place = (topic, partition)
        records = []
        # Each record's JSON is written straight to bytes: topic names are limited to
        # `[a-zA-Z0-9._-]` and base64 needs no escaping, so only header names go through
        # the encoder. It costs a fraction of a dict encoded afterwards.
        template, to_base64, types = _RECORD, binascii.b2a_base64, _TIMESTAMP_TYPES
        for message in messages:
            offset, key, value, headers = (
                message.offset,
                message.key,
                message.value,
                message.headers,
            )
            encoded = template % (
                topic_json,
                partition,
                offset,
                message.timestamp,
                types.get(message.timestamp_type, b"CREATE_TIME"),
                b"" if key is None else b'"key":"' + to_base64(key, newline=False) + b'",',
                to_base64(value, newline=False) if value else b"",
                _headers(headers) if headers else b"[]",
            )
            records.append(
                Record(
                    name,
                    offset,
                    (name, offset),
                    None,
                    message.timestamp / 1000,
                    name,
                    place,
                    encoded,
                )
            )
        return records

    def encode_event(self, records: Sequence[Record]) -> bytes:
        return self._prefix + encode_grouped(records) + b"}}"

    def parse_item_identifier(self, raw: object) -> Hashable | None:
        """`{"partition": "<topic>-<n>", "offset": <int>}`; anything else is malformed."""
        if not isinstance(raw, dict):
            return None
        partition, offset = raw.get("partition"), raw.get("offset")
        if not isinstance(partition, str) or not partition:
            return None
        if isinstance(offset, str) and offset.isdigit():
            offset = int(offset)
        if not isinstance(offset, int) or isinstance(offset, bool):
            return None
        return (partition, offset)

    def stable_position(self, record: Record) -> Any:
        return record.position

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """KafkaBatchInfo, one `recordsInfo` entry per topic-partition (esm-reference.md 10.3)."""
        info: dict[str, Any] = {"batchSize": len(records)}
        if self.event_source_arn:
            info["eventSourceArn"] = self.event_source_arn
        info["bootstrapServers"] = self.bootstrap_servers
        info["payloadSize"] = len(self.encode_event(records))
        by_partition: dict[str, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        info["recordsInfo"] = {
            name: {
                "firstRecordOffset": str(group[0].position),
                "lastRecordOffset": str(group[-1].position),
                "firstRecordTimestamp": iso_millis(group[0].arrival),
                "lastRecordTimestamp": iso_millis(group[-1].arrival),
            }
            for name, group in by_partition.items()
        }
        return "KafkaBatchInfo", info

    def record_info(self, record: Record) -> dict[str, Any]:
        """KafkaBatchInfo for one record, as a Kafka-topic destination writes it (10.4)."""
        info: dict[str, Any] = {"batchSize": 1}
        if self.event_source_arn:
            info["eventSourceArn"] = self.event_source_arn
        info["bootstrapServers"] = self.bootstrap_servers
        info["payloadSize"] = len(self.encode_event([record]))
        info["recordInfo"] = {
            "offset": str(record.position),
            "timestamp": iso_millis(record.arrival),
        }
        return info

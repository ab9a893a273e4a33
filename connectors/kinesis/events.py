"""The Kinesis Data Streams event Lambda delivers (esm-reference.md 1.4) and its failure
records' `KinesisBatchInfo` (10.1).

Each record is written straight to JSON bytes from a per-shard template: sequence
numbers are digits, base64 and the arrival time need no escaping, so only the partition
key goes through the encoder. Everything here is pure: no service is needed.
"""

from __future__ import annotations

import binascii
import datetime as dt
import zlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import orjson

from bridge.codec import dumps
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

SCHEMA_VERSION = "1.0"
EVENT_SOURCE = "aws:kinesis"
EVENT_VERSION = "1.0"
EVENT_NAME = "aws:kinesis:record"


def epoch_seconds(value: dt.datetime | float) -> float:
    """botocore gives timestamps as datetimes; samples and tests may give epoch seconds."""
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def _literal(value: str) -> bytes:
    """`value` as JSON, safe inside a %-template."""
    return dumps(value).replace(b"%", b"%%")


class KinesisRecords:
    """Builds Records from what GetRecords returns for the shards of one stream.

    `item_id` is the sequence number, as partial batch responses name records
    (esm-reference.md 6.4); `arrival` the arrival time record age is measured from
    (6.2). `lane` is the shard, or with a parallelization factor above 1 the shard and a
    hash of the partition key, so each key stays in order while the shard runs several
    batches at once (13).
    """

    def __init__(
        self,
        *,
        stream_arn: str,
        region: str,
        invoke_identity_arn: str,
        parallelization_factor: int = 1,
    ) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self.invoke_identity_arn = invoke_identity_arn
        self.parallelization_factor = parallelization_factor
        self._templates: dict[str, bytes] = {}
        self._lanes: dict[str, list[tuple[str, int]]] = {}

    def _template(self, shard_id: str) -> bytes:
        """A record of `shard_id` as JSON, with `%s` for the partition key, the sequence
        number, the data, the arrival time and the sequence number again (eventID)."""
        return (
            b'{"kinesis":{"kinesisSchemaVersion":"' + SCHEMA_VERSION.encode() + b'",'
            b'"partitionKey":%s,"sequenceNumber":"%s","data":"%s",'
            b'"approximateArrivalTimestamp":%s},'
            b'"eventSource":"' + EVENT_SOURCE.encode() + b'",'
            b'"eventVersion":"' + EVENT_VERSION.encode() + b'",'
            b'"eventID":' + _literal(f"{shard_id}:")[:-1] + b'%s",'
            b'"eventName":"' + EVENT_NAME.encode() + b'",'
            b'"invokeIdentityArn":' + _literal(self.invoke_identity_arn) + b","
            b'"awsRegion":' + _literal(self.region) + b","
            b'"eventSourceARN":' + _literal(self.stream_arn) + b"}"
        )

    def records(self, shard_id: str, raws: Sequence[Mapping[str, Any]]) -> list[Record]:
        template = self._templates.get(shard_id)
        if template is None:
            template = self._templates[shard_id] = self._template(shard_id)
        factor = self.parallelization_factor
        lanes: list[tuple[str, int]] = []
        if factor > 1:
            lanes = self._lanes.setdefault(shard_id, [(shard_id, n) for n in range(factor)])
        b64 = binascii.b2a_base64
        # Partition keys are strings, so orjson needs none of codec.dumps' fallbacks.
        quote = orjson.dumps
        built: list[Record] = []
        append = built.append
        for raw in raws:
            sequence = raw["SequenceNumber"]
            key = raw["PartitionKey"]
            stamp = raw["ApproximateArrivalTimestamp"]
            arrival = stamp if type(stamp) is float else epoch_seconds(stamp)
            digits = sequence.encode()
            encoded = template % (
                quote(key),
                digits,
                b64(raw["Data"], newline=False),
                b"%.3f" % arrival,
                digits,
            )
            lane: Hashable = lanes[zlib.crc32(key.encode()) % factor] if factor > 1 else shard_id
            append(Record(shard_id, int(sequence), sequence, None, arrival, lane, None, encoded))
        return built


class KinesisEventFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; failure records carry `KinesisBatchInfo`.

    `source_arn` is the stream ARN (tumbling windows write it as the event's
    `eventSourceARN`, esm-reference.md 1.9); a source given a stream name learns it when
    it opens.
    """

    def __init__(self, source_arn: str = "") -> None:
        self.source_arn = source_arn

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """esm-reference.md 10.1: a batch is records of one shard; arrival times with
        milliseconds."""
        first, last = records[0], records[-1]
        return "KinesisBatchInfo", {
            "shardId": first.partition,
            "startSequenceNumber": first.item_id,
            "endSequenceNumber": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "streamArn": self.source_arn,
        }

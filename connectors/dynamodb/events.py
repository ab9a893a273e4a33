"""The DynamoDB Streams event Lambda delivers (esm-reference.md 1.5) and its failure
records' `DDBStreamBatchInfo` (10.1).

GetRecords' records are rewritten into Lambda's shape: `eventVersion` "1.1" as live
payloads show, the stream ARN as `eventSourceARN` (emulators such as moto leave it
out; Lambda adds it), the stream's region as `awsRegion`, `userIdentity` in Lambda's
lower-case keys when the service reports one (items removed by TTL). botocore decodes
binary attribute values (`B`, `BS`) to bytes; they go back to base64, as on the wire.
Everything here is pure: no service is needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import orjson

from bridge.failures import iso_seconds
from bridge.pipeline.events import RecordsEventFormatter
from bridge.records import Record

EVENT_SOURCE = "aws:dynamodb"
EVENT_VERSION = "1.1"
IMAGE_FIELDS = ("NewImage", "OldImage")


def _wire(value: Any) -> Any:
    """orjson's fallback: binary attribute values as base64, timestamps as epoch seconds."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def to_json(value: Any, *, sort_keys: bool = False) -> bytes:
    return orjson.dumps(value, default=_wire, option=orjson.OPT_SORT_KEYS if sort_keys else 0)


def epoch_seconds(value: dt.datetime | float) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


class DynamoDBRecords:
    """Builds Records from what GetRecords returns for the shards of one stream.

    `item_id` is the sequence number, as partial batch responses name records
    (esm-reference.md 6.4); `arrival` the creation time record age is measured from
    (6.2). `lane` is the shard, or with a parallelization factor above 1 the shard and a
    hash of the item's key, so each item stays in order while the shard runs several
    batches at once (13).
    """

    def __init__(self, *, stream_arn: str, region: str, parallelization_factor: int = 1) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self.parallelization_factor = parallelization_factor
        self._lanes: dict[str, list[tuple[str, int]]] = {}

    def record(self, shard_id: str, raw: Mapping[str, Any]) -> Record:
        change = raw["dynamodb"]
        sequence: str = change["SequenceNumber"]
        arrival = epoch_seconds(change["ApproximateCreationDateTime"])
        keys = change["Keys"]
        body: dict[str, Any] = {"ApproximateCreationDateTime": arrival, "Keys": keys}
        for image in IMAGE_FIELDS:
            if image in change:
                body[image] = change[image]
        body["SequenceNumber"] = sequence
        body["SizeBytes"] = change["SizeBytes"]
        body["StreamViewType"] = change["StreamViewType"]
        event: dict[str, Any] = {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": EVENT_VERSION,
            "eventSource": EVENT_SOURCE,
            "awsRegion": self.region,
            "dynamodb": body,
            "eventSourceARN": self.stream_arn,
        }
        identity = raw.get("userIdentity")
        if identity:
            event["userIdentity"] = {
                "type": identity.get("Type", identity.get("type")),
                "principalId": identity.get("PrincipalId", identity.get("principalId")),
            }
        factor = self.parallelization_factor
        lane: Hashable = shard_id
        if factor > 1:
            lanes = self._lanes.get(shard_id)
            if lanes is None:
                lanes = self._lanes[shard_id] = [(shard_id, n) for n in range(factor)]
            lane = lanes[zlib.crc32(to_json(keys, sort_keys=True)) % factor]
        return Record(shard_id, int(sequence), sequence, None, arrival, lane, None, to_json(event))

    def records(self, shard_id: str, raws: Sequence[Mapping[str, Any]]) -> list[Record]:
        record = self.record
        return [record(shard_id, raw) for raw in raws]


class DynamoDBStreamsFormatter(RecordsEventFormatter):
    """`{"Records": [...]}`; failure records carry `DDBStreamBatchInfo`.

    `source_arn` is the stream ARN (tumbling windows write it as the event's
    `eventSourceARN`, esm-reference.md 1.9); a source given a table learns it when it
    opens.
    """

    def __init__(self, source_arn: str = "") -> None:
        self.source_arn = source_arn

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        """esm-reference.md 10.1: Kinesis' keys, arrival times to the second."""
        first, last = records[0], records[-1]
        return "DDBStreamBatchInfo", {
            "shardId": first.partition,
            "startSequenceNumber": first.item_id,
            "endSequenceNumber": last.item_id,
            "approximateArrivalOfFirstRecord": iso_seconds(first.arrival),
            "approximateArrivalOfLastRecord": iso_seconds(last.arrival),
            "batchSize": len(records),
            "streamArn": self.source_arn,
        }

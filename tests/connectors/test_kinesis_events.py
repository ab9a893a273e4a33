"""The Kinesis event shape (esm-reference.md 1.4), lanes (13), KinesisBatchInfo (10.1) and
the `kinesis` source settings, without a service."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import time
import zlib
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel
from pydantic import ValidationError

from bridge.codec import loads
from bridge.config.plugins import Identity
from bridge.failures import failure_document
from bridge.records import FailureCondition, FailureRecord, InvokeResult
from connectors.kinesis.config import KinesisSourceConfig
from connectors.kinesis.events import KinesisEventFormatter, KinesisRecords

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
SHARD = "shardId-000000000006"
SEQUENCE = "49590338271490256608559692538361571095921575989136588898"


def builder(factor: int = 1) -> KinesisRecords:
    return KinesisRecords(
        stream_arn=ARN,
        region="eu-west-1",
        invoke_identity_arn="arn:aws:iam::123456789012:role/lambda-role",
        parallelization_factor=factor,
    )


def raw(
    sequence: str = SEQUENCE, key: str = "1", data: bytes = b"Hello, this is a test."
) -> dict[str, Any]:
    """A record as botocore's GetRecords returns it."""
    return {
        "SequenceNumber": sequence,
        "ApproximateArrivalTimestamp": dt.datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=dt.UTC),
        "Data": data,
        "PartitionKey": key,
    }


def validate(event: dict[str, Any]) -> KinesisDataStreamModel:
    """Validate a copy: the Powertools models decode fields of the dict they are given."""
    return KinesisDataStreamModel.model_validate(copy.deepcopy(event))


def test_record_is_exactly_the_documented_shape() -> None:
    """Every field of esm-reference.md 1.4, in AWS's form: base64 data, seconds with
    milliseconds, eventID `<shard>:<sequence>`; the Powertools model accepts it."""
    records = builder().records(SHARD, [raw()])
    event = loads(KinesisEventFormatter(ARN).encode_event(records))
    assert event == {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": SEQUENCE,
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{SEQUENCE}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "eu-west-1",
                "eventSourceARN": ARN,
            }
        ]
    }
    assert validate(event).Records[0].kinesis.data == b"Hello, this is a test."


def test_record_fields_for_the_pipeline() -> None:
    """partition = shard, position = the sequence number as an integer (ordering),
    item_id = the sequence number string (partial batch responses, 6.4), arrival in
    epoch seconds (record age, 6.2)."""
    [record] = builder().records(SHARD, [raw()])
    assert record.partition == SHARD
    assert record.position == int(SEQUENCE)
    assert record.item_id == SEQUENCE
    assert record.arrival == pytest.approx(1545084650.987)
    assert record.lane == SHARD


def test_awkward_partition_keys_and_binary_data_survive() -> None:
    """Quotes, percent signs and non-ASCII in the partition key are escaped as JSON; any
    bytes (empty included) come back from base64 unchanged."""
    keys = ['say "hi"', "100%s%%", "ключ-🔑", "\\", ""]
    payloads = [b"\x00\xff\x10", b"", b"%s", bytes(range(256)), b"plain"]
    raws = [
        raw(str(1000 + index), key, data)
        for index, (key, data) in enumerate(zip(keys, payloads, strict=True))
    ]
    event = loads(KinesisEventFormatter(ARN).encode_event(builder().records(SHARD, raws)))
    parsed = validate(event)
    assert [item.kinesis.partitionKey for item in parsed.Records] == keys
    assert [base64.b64decode(item["kinesis"]["data"]) for item in event["Records"]] == payloads


def test_parallelization_factor_gives_each_partition_key_one_lane() -> None:
    """With a factor above 1 a record's lane is (shard, crc32(partition key) % factor), so
    one key always lands in the same lane (esm-reference.md 13); with 1 it is the shard."""
    keys = [f"customer-{index % 7}" for index in range(40)]
    records = builder(3).records(
        SHARD, [raw(str(index + 1), key) for index, key in enumerate(keys)]
    )
    for record, key in zip(records, keys, strict=True):
        assert record.lane == (SHARD, zlib.crc32(key.encode()) % 3)
    assert len({record.lane for record in records}) > 1


def test_batch_info_for_failure_records() -> None:
    """KinesisBatchInfo as in esm-reference.md 10.1: first and last sequence numbers,
    arrival times with milliseconds, batch size and the stream ARN."""
    raws = [raw("10"), {**raw("20"), "ApproximateArrivalTimestamp": 1573691886.021}]
    records = builder().records(SHARD, raws)
    formatter = KinesisEventFormatter(ARN)
    failure = FailureRecord(
        mapping="m",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn="arn:aws:lambda:eu-west-1:123456789012:function:f",
        timestamp=1573691886.5,
        last_result=InvokeResult(b"{}", "req-1", function_error="Unhandled"),
    )
    document = failure_document(failure, formatter, include_payload=False)
    assert document["KinesisBatchInfo"] == {
        "shardId": SHARD,
        "startSequenceNumber": "10",
        "endSequenceNumber": "20",
        "approximateArrivalOfFirstRecord": "2018-12-17T22:10:50.987Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:06.021Z",
        "batchSize": 2,
        "streamArn": ARN,
    }
    assert formatter.source_arn == ARN


def test_sample_event_validates() -> None:
    """`generate-event kinesis` output passes the strict Powertools model."""
    event = loads(KinesisSourceConfig.sample_event(5, Identity(region="eu-central-1")))
    parsed = validate(event)
    assert len(parsed.Records) == 5
    assert {item.awsRegion for item in parsed.Records} == {"eu-central-1"}
    assert parsed.Records[0].invokeIdentityArn == "arn:aws:iam::000000000000:role/lambda-bridge"


def config(**settings: Any) -> KinesisSourceConfig:
    return KinesisSourceConfig.model_validate({"type": "kinesis", "stream": "orders", **settings})


def test_starting_position_is_required_and_at_timestamp_needs_a_past_time() -> None:
    """AWS's rules: a starting position is required; AT_TIMESTAMP takes a timestamp that
    is not in the future, and only AT_TIMESTAMP takes one (esm-reference.md 2)."""
    with pytest.raises(ValidationError, match="starting_position"):
        config()
    with pytest.raises(ValidationError, match="needs starting_position_timestamp"):
        config(starting_position="AT_TIMESTAMP")
    with pytest.raises(ValidationError, match="future"):
        config(starting_position="AT_TIMESTAMP", starting_position_timestamp=time.time() + 3600)
    with pytest.raises(ValidationError, match="goes with"):
        config(starting_position="LATEST", starting_position_timestamp=1.0)
    with pytest.raises(ValidationError, match="extra"):
        config(starting_position="LATEST", shards=2)
    assert config(starting_position="AT_TIMESTAMP", starting_position_timestamp=1.0)


def test_source_id_names_the_stream_and_endpoint() -> None:
    """Positions of another stream, region or endpoint are never reused."""
    base = config(starting_position="LATEST")
    assert base.source_id() != config(starting_position="LATEST", stream="other").source_id()
    assert (
        base.source_id()
        != config(starting_position="LATEST", endpoint_url="http://localhost:4566").source_id()
    )
    assert base.source_id() != config(starting_position="LATEST", region="eu-west-1").source_id()
    by_arn = config(starting_position="LATEST", stream=ARN)
    assert by_arn.stream_is_arn and by_arn.stream_name == "orders"

"""The `s3` on-failure destination against moto: AWS's object key, the event as a JSON
object under `payload`, a missing bucket, config. What every destination does:
tests/contract/test_destinations.py."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    KinesisDataStreamModel,
)
from pydantic import ValidationError

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import DestinationError
from bridge.failures import iso_millis
from bridge.pipeline.events import RecordsEventFormatter
from bridge.protocols import Destination
from bridge.records import FailureCondition, FailureRecord, InvokeResult, Record
from connectors.s3.config import S3DestinationConfig
from connectors.s3.destination import S3Destination, mapping_uuid, object_key, shard_segment

SHARD = "shardId-000000000001"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders"
# 2023-11-14T22:13:20.250Z
TIMESTAMP = 1_700_000_000.25
CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))


class KinesisLikeFormatter(RecordsEventFormatter):
    """KinesisBatchInfo as Lambda writes it (esm-reference.md 10.1)."""

    def batch_info(self, records: Sequence[Record]) -> tuple[str, dict[str, Any]]:
        first, last = records[0], records[-1]
        return "KinesisBatchInfo", {
            "shardId": first.partition,
            "startSequenceNumber": first.item_id,
            "endSequenceNumber": last.item_id,
            "approximateArrivalOfFirstRecord": iso_millis(first.arrival),
            "approximateArrivalOfLastRecord": iso_millis(last.arrival),
            "batchSize": len(records),
            "streamArn": STREAM_ARN,
        }


def kinesis_records(count: int = 2, shard: str = SHARD) -> list[Record]:
    records = []
    for index in range(count):
        sequence = f"4960118965842235937883629852182763847532018901230970{4722 + index}"
        arrival = TIMESTAMP - 2 + index / 4
        payload = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": f"order-{index}",
                "sequenceNumber": sequence,
                "data": "eyJhbW91bnQiOiA0Mn0=",
                "approximateArrivalTimestamp": arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
            "awsRegion": "us-east-1",
            "eventSourceARN": STREAM_ARN,
        }
        records.append(Record(shard, int(sequence), sequence, payload, arrival, shard))
    return records


def exhausted(records: list[Record], mapping: str = "orders-stream") -> FailureRecord:
    last = InvokeResult(
        payload=b'{"errorMessage": "boom"}',
        request_id="c9b8fa9f-5a7f-4b1e-af9c-0c604cde93a5",
        function_error="Unhandled",
    )
    return FailureRecord(
        mapping=mapping,
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
        last_result=last,
    )


def assert_aws_record_shape(document: dict[str, Any]) -> None:
    """KinesisBatchInfo has DDBStreamBatchInfo's keys, so powertools' strict model of the
    DynamoDB on-failure record checks the whole metadata shape."""
    renamed = copy.deepcopy(document)
    renamed["DDBStreamBatchInfo"] = renamed.pop("KinesisBatchInfo")
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(renamed)


def run(main: Coroutine[Any, Any, None]) -> None:
    asyncio.run(main)


def destination(endpoint: str, bucket: str, **settings: Any) -> Destination:
    config = S3DestinationConfig.model_validate(
        {"type": "s3", "bucket": bucket, "endpoint_url": endpoint, **settings}
    )
    return config.build("failed-orders", CONTEXT)


def s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    name = f"failures-{uuid.uuid4().hex}"
    s3(endpoint).create_bucket(Bucket=name)
    return name


def test_object_holds_the_record_with_the_event_at_awss_key(aws_endpoint: str) -> None:
    """PutObject writes the invocation record with the discarded event under `payload`
    (an object, not a string), as JSON, at aws/lambda/<uuid>/<shard>/YYYY/MM/DD/<time>-<uuid>
    (the record's common shape: tests/contract/test_destinations.py)."""
    bucket = new_bucket(aws_endpoint)
    records = kinesis_records()

    async def main() -> None:
        target = destination(aws_endpoint, bucket)
        await target.start()
        try:
            await target.send(exhausted(records), KinesisLikeFormatter())
        finally:
            await target.close()

    run(main())
    listed = s3(aws_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listed) == 1
    key = listed[0]["Key"]
    esm_uuid = mapping_uuid("orders-stream")
    pattern = (
        rf"^aws/lambda/{esm_uuid}/{SHARD}/2023/11/14/2023-11-14T22\.13\.20-"
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    assert re.match(pattern, key), key
    stored = s3(aws_endpoint).get_object(Bucket=bucket, Key=key)
    assert stored["ContentType"] == "application/json"
    document = json.loads(stored["Body"].read())
    assert document["payload"] == {"Records": [record.payload for record in records]}
    KinesisDataStreamModel.model_validate(copy.deepcopy(document["payload"]))
    assert_aws_record_shape(document)


def test_prefix_and_partition_segment(aws_endpoint: str) -> None:
    """A prefix is a folder before aws/lambda/...; a partition that is a path (files
    source) stays one URL-safe key segment."""
    bucket = new_bucket(aws_endpoint)
    records = kinesis_records(1, shard="reports/2026 q1.csv")

    async def main() -> None:
        target = destination(aws_endpoint, bucket, prefix="/lambda-failures/")
        await target.start()
        try:
            await target.send(exhausted(records, mapping="inbox"), KinesisLikeFormatter())
        finally:
            await target.close()

    run(main())
    (listed,) = s3(aws_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    prefix = f"lambda-failures/aws/lambda/{mapping_uuid('inbox')}/reports%2F2026%20q1.csv/"
    assert listed["Key"].startswith(prefix), listed["Key"]


def test_key_parts_are_stable_and_bounded() -> None:
    """The mapping's UUID depends only on its name; long partitions are shortened with
    a digest, so distinct ones stay distinct and keys stay under S3's limit."""
    assert mapping_uuid("orders") == mapping_uuid("orders") != mapping_uuid("orders-2")
    assert str(mapping_uuid("orders")) == "228ff887-2161-58e3-8a58-e47a477c5814"
    long_a, long_b = "a/" * 300 + "x", "a/" * 300 + "y"
    assert len(shard_segment(long_a)) == 200
    assert shard_segment(long_a) != shard_segment(long_b)
    failure = exhausted(kinesis_records(1, shard=long_a))
    assert len(object_key(failure, "p/")) < 400


def test_missing_bucket_fails_at_start(aws_endpoint: str) -> None:
    """A bucket that does not exist is reported by start(), naming the destination."""

    async def main() -> None:
        target = destination(aws_endpoint, f"missing-{uuid.uuid4().hex}")
        try:
            with pytest.raises(DestinationError, match=r"failed-orders.*HeadBucket"):
                await target.start()
        finally:
            await target.close()

    run(main())


def test_config_rules() -> None:
    """Bucket names are checked, a bucket ARN is accepted, the prefix becomes a folder,
    and unknown keys are rejected."""
    by_arn = S3DestinationConfig.model_validate({"type": "s3", "bucket": "arn:aws:s3:::my-bucket"})
    assert by_arn.bucket == "my-bucket"
    assert by_arn.prefix == ""
    assert (
        S3DestinationConfig.model_validate({"type": "s3", "bucket": "b1b", "prefix": "x/y/"}).prefix
        == "x/y/"
    )
    assert isinstance(by_arn.build("d", CONTEXT), S3Destination)
    for bad in (
        {"bucket": "My_Bucket"},
        {"bucket": "arn:aws:sqs:::queue"},
        {"bucket": "ok-bucket", "endpoint_url": "localhost:4566"},
        {"bucket": "ok-bucket", "topic": "x"},
    ):
        with pytest.raises(ValidationError):
            S3DestinationConfig.model_validate({"type": "s3", **bad})

"""The `sns` on-failure destination against moto: the metadata-only record published as
the message (read back through an SQS subscription), the size limit, errors, config."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import SnsNotificationModel
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import DestinationError
from bridge.protocols import Destination
from bridge.records import FailureCondition, FailureRecord
from bridge.testing import MemoryEventFormatter, memory_records
from connectors.sns.config import SnsDestinationConfig
from connectors.sns.destination import MAX_MESSAGE_BYTES, SnsDestination
from tests.connectors.test_s3_destination import (
    FUNCTION_ARN,
    TIMESTAMP,
    KinesisLikeFormatter,
    assert_aws_record_shape,
    exhausted,
    kinesis_records,
)
from tests.services import free_port

CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))
REGION = "us-east-1"


def run(main: Coroutine[Any, Any, None]) -> None:
    asyncio.run(main)


def destination(endpoint: str, topic_arn: str) -> Destination:
    config = SnsDestinationConfig.model_validate(
        {"type": "sns", "topic_arn": topic_arn, "endpoint_url": endpoint}
    )
    return config.build("failed-orders", CONTEXT)


def topic_with_queue(endpoint: str) -> tuple[str, str]:
    """A new topic with a new SQS queue subscribed to it: (topic ARN, queue URL)."""
    name = f"failures-{uuid.uuid4().hex}"
    sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def test_message_is_the_metadata_only_record(aws_endpoint: str) -> None:
    """Publish sends the invocation record as a JSON string Message: requestContext,
    responseContext, version, timestamp and KinesisBatchInfo, without the records."""
    topic_arn, queue_url = topic_with_queue(aws_endpoint)

    async def main() -> None:
        target = destination(aws_endpoint, topic_arn)
        await target.start()
        try:
            await target.send(exhausted(kinesis_records()), KinesisLikeFormatter())
        finally:
            await target.close()

    run(main())
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name=REGION)
    (message,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(message["Body"])
    SnsNotificationModel.model_validate(copy.deepcopy(envelope))
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    document = json.loads(envelope["Message"])
    assert list(document) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    ]
    assert document["requestContext"]["functionArn"] == FUNCTION_ARN
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["KinesisBatchInfo"]["shardId"] == "shardId-000000000001"
    assert document["KinesisBatchInfo"]["batchSize"] == 2
    assert_aws_record_shape(document)


def test_record_age_failure_has_no_response_context(aws_endpoint: str) -> None:
    """A RecordAgeExceeded record omits responseContext (esm-reference.md 6.2)."""
    topic_arn, queue_url = topic_with_queue(aws_endpoint)
    failure = FailureRecord(
        mapping="orders-stream",
        condition=FailureCondition.RECORD_AGE_EXCEEDED,
        records=kinesis_records(1),
        approximate_invoke_count=0,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
    )

    async def main() -> None:
        target = destination(aws_endpoint, topic_arn)
        await target.start()
        try:
            await target.send(failure, KinesisLikeFormatter())
        finally:
            await target.close()

    run(main())
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name=REGION)
    (message,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    document = json.loads(json.loads(message["Body"])["Message"])
    assert "responseContext" not in document
    assert document["requestContext"]["condition"] == "RecordAgeExceeded"


def test_record_over_256_kb_is_refused_not_truncated(aws_endpoint: str) -> None:
    """A failure record whose JSON exceeds SNS's 256 KB is a DestinationError naming the
    limit; nothing is cut down to fit."""
    topic_arn, _ = topic_with_queue(aws_endpoint)
    # MemoryBatchInfo lists every partition, so long partition names make it large.
    records = memory_records(300, partitions=300)
    for record in records:
        record.partition = f"{record.partition}-{'x' * 1000}"
    failure = exhausted(records)

    async def main() -> None:
        target = destination(aws_endpoint, topic_arn)
        await target.start()
        try:
            with pytest.raises(DestinationError, match=f"over SNS's {MAX_MESSAGE_BYTES}-byte"):
                await target.send(failure, MemoryEventFormatter())
        finally:
            await target.close()

    run(main())


def test_missing_topic_fails_at_start(aws_endpoint: str) -> None:
    """A topic that does not exist is reported by start(), naming the destination."""
    missing = f"arn:aws:sns:{REGION}:123456789012:missing-{uuid.uuid4().hex}"

    async def main() -> None:
        target = destination(aws_endpoint, missing)
        try:
            with pytest.raises(DestinationError, match=r"failed-orders.*GetTopicAttributes"):
                await target.start()
        finally:
            await target.close()

    run(main())


def test_unreachable_endpoint_starts_and_send_raises() -> None:
    """An unreachable service does not stop start() (it is logged); send() raises a
    DestinationError, which the dispatcher retries."""
    topic_arn = f"arn:aws:sns:{REGION}:123456789012:failures"

    async def main() -> None:
        target = destination(f"http://127.0.0.1:{free_port()}", topic_arn)
        with capture_logs() as logs:
            await target.start()
        assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
            "sns.destination_unreachable"
        ]
        try:
            with pytest.raises(DestinationError, match="Publish"):
                await target.send(exhausted(kinesis_records(1)), KinesisLikeFormatter())
        finally:
            await target.close()

    run(main())


def test_config_rules() -> None:
    """Only standard topics are accepted (a .fifo topic is rejected, as AWS does), the
    value must be a topic ARN, and the topic's region is used unless region is set."""
    arn = "arn:aws:sns:eu-west-1:123456789012:failures"
    config = SnsDestinationConfig.model_validate({"type": "sns", "topic_arn": arn})
    assert config.topic_region == "eu-west-1"
    assert isinstance(config.build("d", CONTEXT), SnsDestination)
    with pytest.raises(ValidationError, match="FIFO topics cannot be on-failure destinations"):
        SnsDestinationConfig.model_validate({"type": "sns", "topic_arn": f"{arn}.fifo"})
    for bad in ("failures", "arn:aws:sqs:eu-west-1:123456789012:failures", f"{arn}:sub-id"):
        with pytest.raises(ValidationError, match="is not a topic ARN"):
            SnsDestinationConfig.model_validate({"type": "sns", "topic_arn": bad})
    with pytest.raises(ValidationError):
        SnsDestinationConfig.model_validate({"type": "sns", "topic_arn": arn, "queue": "x"})

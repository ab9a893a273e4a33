"""The `sns` on-failure destination against moto: the record as an SNS notification (read
back through an SQS subscription), the 256 KB limit, a missing topic, config. What every
destination does: tests/contract/test_destinations.py."""

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

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import DestinationError
from bridge.protocols import Destination
from bridge.testing import MemoryEventFormatter, memory_records
from connectors.sns.config import SnsDestinationConfig
from connectors.sns.destination import MAX_MESSAGE_BYTES, SnsDestination
from tests.connectors.test_s3_destination import (
    FUNCTION_ARN,
    KinesisLikeFormatter,
    assert_aws_record_shape,
    exhausted,
    kinesis_records,
)

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


def test_message_is_an_sns_notification_of_the_record(aws_endpoint: str) -> None:
    """Publish sends the invocation record as the notification's JSON string Message (the
    record's common shape: tests/contract/test_destinations.py)."""
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
    assert document["requestContext"]["functionArn"] == FUNCTION_ARN
    assert_aws_record_shape(document)


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

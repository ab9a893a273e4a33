"""The `sqs` on-failure destination against moto: a missing queue, by ARN or URL, at
start and after. What every destination does (the metadata-only record as the body,
esm-reference.md 10.1, 10.3; an unreachable endpoint): tests/contract/test_destinations.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import DestinationError
from bridge.protocols import Destination
from bridge.records import FailureCondition, FailureRecord, InvokeResult
from connectors.kafka.events import KafkaEventFormatter, KafkaMessage
from connectors.sqs.config import SqsDestinationConfig

REGION = "us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders"
TIMESTAMP = 1_790_000_000.021
CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))


def run(main: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(main, 60))


def sqs(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


def new_queue(endpoint: str) -> tuple[str, str]:
    client = sqs(endpoint)
    url = client.create_queue(QueueName=f"failures-{uuid.uuid4().hex}")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def destination(endpoint: str, **queue: str) -> Destination:
    config = SqsDestinationConfig.model_validate({"type": "sqs", "endpoint_url": endpoint, **queue})
    return config.build("failed-orders", CONTEXT)


def kafka_failure() -> tuple[FailureRecord, KafkaEventFormatter]:
    """Two Kafka records given up after three attempts, the last an Unhandled error."""
    formatter = KafkaEventFormatter("b-1.example.com:9092")
    records = [
        formatter.record(
            KafkaMessage("orders", 0, offset, 1_790_000_000_000 + offset, 0, None, b"{}", [])
        )
        for offset in (41, 42)
    ]
    failure = FailureRecord(
        mapping="orders",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
        last_result=InvokeResult(b"{}", "c9b8fa9f-5a7f-4d2e-af9c-0c604cde93a5", "Unhandled"),
    )
    return failure, formatter


def test_a_missing_queue_fails_the_start_and_then_each_send(aws_endpoint: str) -> None:
    """A queue that does not exist, by ARN or by URL, fails the start; one deleted later
    fails each send with a DestinationError (the caller retries and settles nothing)."""
    url, arn = new_queue(aws_endpoint)
    failure, formatter = kafka_failure()

    async def main() -> None:
        for queue in ({"queue_arn": arn + "-missing"}, {"queue_url": url + "-missing"}):
            missing = destination(aws_endpoint, **queue)
            try:
                with pytest.raises(DestinationError, match="does not exist"):
                    await missing.start()
            finally:
                await missing.close()
        target = destination(aws_endpoint, queue_url=url)
        await target.start()
        try:
            await asyncio.to_thread(sqs(aws_endpoint).delete_queue, QueueUrl=url)
            with pytest.raises(DestinationError, match="SendMessage"):
                await target.send(failure, formatter)
        finally:
            await target.close()

    run(main())

"""The `sqs` on-failure destination against moto: the metadata-only invocation record as
the message body (esm-reference.md 10.1, 10.3), a queue named by ARN, and errors."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import DestinationError
from bridge.failures import iso_millis
from bridge.protocols import Destination
from bridge.records import FailureCondition, FailureRecord, InvokeResult
from connectors.kafka.events import KafkaEventFormatter, KafkaMessage
from connectors.sqs.config import SqsDestinationConfig
from tests.services import free_port

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


def received_bodies(endpoint: str, url: str) -> list[dict[str, Any]]:
    reply = sqs(endpoint).receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(message["Body"]) for message in reply.get("Messages", [])]


def test_the_message_body_is_the_metadata_only_invocation_record(aws_endpoint: str) -> None:
    """One message per discarded batch; its body is AWS's invocation record (10.1, 10.3):
    requestContext, responseContext, version, ISO timestamp with milliseconds and the
    source's BatchInfo, and no payload."""
    url, _ = new_queue(aws_endpoint)
    failure, formatter = kafka_failure()

    async def main() -> None:
        target = destination(aws_endpoint, queue_url=url)
        await target.start()
        try:
            await target.send(failure, formatter)
        finally:
            await target.close()

    run(main())
    [body] = received_bodies(aws_endpoint, url)
    assert list(body) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KafkaBatchInfo",
    ]
    assert body["requestContext"] == {
        "requestId": "c9b8fa9f-5a7f-4d2e-af9c-0c604cde93a5",
        "functionArn": FUNCTION_ARN,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 3,
    }
    assert body["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert body["version"] == "1.0"
    assert body["timestamp"] == iso_millis(TIMESTAMP)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    info = body["KafkaBatchInfo"]
    assert info["batchSize"] == 2
    assert info["recordsInfo"]["orders-0"]["firstRecordOffset"] == "41"
    assert info["recordsInfo"]["orders-0"]["lastRecordOffset"] == "42"


def test_record_age_failures_carry_no_response_context(aws_endpoint: str) -> None:
    """RecordAgeExceeded records omit responseContext (6.2, 10.1)."""
    url, arn = new_queue(aws_endpoint)
    failure, formatter = kafka_failure()
    aged = FailureRecord(
        mapping=failure.mapping,
        condition=FailureCondition.RECORD_AGE_EXCEEDED,
        records=failure.records,
        approximate_invoke_count=0,
        function_arn=FUNCTION_ARN,
        timestamp=TIMESTAMP,
    )

    async def main() -> None:
        target = destination(aws_endpoint, queue_arn=arn)
        await target.start()
        try:
            await target.send(aged, formatter)
        finally:
            await target.close()

    run(main())
    [body] = received_bodies(aws_endpoint, url)
    assert "responseContext" not in body
    assert body["requestContext"]["condition"] == "RecordAgeExceeded"


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


def test_an_unreachable_endpoint_fails_sends_but_not_the_start(aws_endpoint: str) -> None:
    """While SQS cannot be reached the daemon still starts; each send raises a
    DestinationError until it can."""
    failure, formatter = kafka_failure()
    endpoint = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        target = destination(endpoint, queue_arn="arn:aws:sqs:us-east-1:123456789012:failures")
        await target.start()
        try:
            with pytest.raises(DestinationError):
                await target.send(failure, formatter)
        finally:
            await target.close()

    run(main())

"""`Destination.deliver`, the one method asynchronous invocation adds, on the destinations
the e2e tests do not reach: SNS (message attributes, read back through an SQS
subscription), S3 (the async key layout), a Redis stream and a Kafka topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import boto3
from aiokafka import AIOKafkaConsumer

from bridge.config.plugins import BuildContext, Identity
from bridge.protocols import Destination
from bridge.records import Delivery
from connectors.kafka.config import KafkaDestinationConfig
from connectors.redis.config import RedisStreamDestinationConfig
from connectors.s3.config import S3DestinationConfig
from connectors.sns.config import SnsDestinationConfig
from tests.connectors.test_sns_destination import topic_with_queue

CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))
ARN = "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST"
DELIVERY = Delivery(
    b'{"order": 1}',
    "orders.async",
    ARN,
    None,
    {"RequestID": ("String", "r-1"), "ErrorCode": ("Number", "200")},
)


def deliver(destination: Destination) -> None:
    async def main() -> None:
        await destination.start()
        try:
            await destination.deliver(DELIVERY)
        finally:
            await destination.close()

    asyncio.run(main())


def test_sns_publishes_the_document_with_its_attributes(aws_endpoint: str) -> None:
    """The document is the Message, the attributes SNS message attributes."""
    topic_arn, queue_url = topic_with_queue(aws_endpoint)
    config = SnsDestinationConfig.model_validate(
        {"type": "sns", "topic_arn": topic_arn, "endpoint_url": aws_endpoint}
    )
    deliver(config.build("dlq", CONTEXT))
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name="us-east-1")
    [message] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    notification = json.loads(message["Body"])
    assert json.loads(notification["Message"]) == {"order": 1}
    assert notification["MessageAttributes"]["RequestID"] == {"Type": "String", "Value": "r-1"}
    assert notification["MessageAttributes"]["ErrorCode"] == {"Type": "Number", "Value": "200"}


def test_s3_writes_one_object_under_the_functions_async_folder(aws_endpoint: str) -> None:
    """`[prefix/]aws/lambda/async/<origin>/YYYY/MM/DD/...` holds the document as it is."""
    bucket = f"async-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    config = S3DestinationConfig.model_validate(
        {"type": "s3", "bucket": bucket, "prefix": "failed", "endpoint_url": aws_endpoint}
    )
    deliver(config.build("failed", CONTEXT))
    [entry] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert entry["Key"].startswith("failed/aws/lambda/async/orders.async/")
    body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    assert body == b'{"order": 1}'


def test_redis_stream_entry_holds_the_record_and_its_origin(redis_url: str) -> None:
    """One XADD: `record`, `origin` and the attributes as fields."""
    import redis

    stream = f"async-{uuid.uuid4().hex}"
    config = RedisStreamDestinationConfig.model_validate(
        {"type": "redis-stream", "url": redis_url, "stream": stream}
    )
    deliver(config.build("records", CONTEXT))
    [(_, fields)] = redis.Redis.from_url(redis_url).xrange(stream)
    assert fields[b"record"] == b'{"order": 1}'
    assert fields[b"origin"] == b"orders.async"
    assert fields[b"RequestID"] == b"r-1"


def test_kafka_message_is_the_document_with_attribute_headers(kafka_bootstrap: str) -> None:
    """One message: the document as value, the attributes as headers."""
    topic = f"async-{uuid.uuid4().hex[:12]}"
    config = KafkaDestinationConfig.model_validate(
        {"type": "kafka", "bootstrap_servers": [kafka_bootstrap], "topic": topic}
    )
    deliver(config.build("records", CONTEXT))

    async def read() -> tuple[bytes | None, list[tuple[str, bytes]]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 20)
            return message.value, list(message.headers)
        finally:
            await consumer.stop()

    value, headers = asyncio.run(read())
    assert value == b'{"order": 1}'
    assert ("RequestID", b"r-1") in headers

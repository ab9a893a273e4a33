"""The destinations the contract runs against, each on its real server: moto for SQS, SNS
(read through an SQS subscription), S3 and EventBridge (read through a rule with an SQS
target), Redis, a Kafka-protocol broker (Tansu) and a local folder. How to add one:
tests/contract/destination_harness.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from tests.contract.destination_harness import Rig, Traits, Written, register
from tests.e2e import kafka_helpers
from tests.services import free_port
from tests.support import wait_for

REGION = "us-east-1"
SECRET = "pw-contract-secret"
# Kafka's producer refuses requests over its max_request_size (1 MiB by default).
KAFKA_MAX_REQUEST = 1024 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def unreachable_endpoint() -> str:
    # No user info: aiohttp refuses a URL with credentials beside SigV4's Authorization
    # header before connecting, which would not test an unreachable service at all.
    return f"http://127.0.0.1:{free_port()}"


def collected(fetch: Callable[[], list[Written]]) -> Callable[[int], list[Written]]:
    """A read_back over a consuming `fetch` (a queue receive): what was fetched is kept, so
    each call returns everything written so far once there are at least `count`."""
    seen: list[Written] = []

    def read_back(count: int) -> list[Written]:
        def enough() -> bool:
            seen.extend(fetch())
            return len(seen) >= count

        wait_for(enough, 30, what=f"{count} documents")
        seen.extend(fetch())
        return list(seen)

    return read_back


def new_queue(endpoint: str) -> tuple[str, str]:
    sqs = aws("sqs", endpoint)
    url = sqs.create_queue(QueueName=unique("contract"))["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attributes["Attributes"]["QueueArn"]


def receive(endpoint: str, url: str) -> list[dict[str, Any]]:
    sqs = aws("sqs", endpoint)
    reply = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    )
    messages: list[dict[str, Any]] = reply.get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


@register("file", Traits(keeps_payload=True, ordered=True, unreachable_fails_at="start"))
def file_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    folder = tmp_path / "failed"

    def lines() -> list[Written]:
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        return [
            Written(json.loads(line)) for path in files for line in path.read_text().splitlines()
        ]

    def read_back(count: int) -> list[Written]:
        wait_for(lambda: len(lines()) >= count, 30, what=f"{count} lines")
        return lines()

    # A regular file where a parent folder should be: the folder cannot be made.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    return Rig(
        config={"type": "file", "path": str(folder)},
        read_back=read_back,
        unreachable={"type": "file", "path": str(blocker / "failed")},
        unreachable_error="cannot create",
    )


@register("sqs", Traits(has_attributes=True))
def sqs_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    endpoint = request.getfixturevalue("aws_endpoint")
    url, arn = new_queue(endpoint)

    def fetch() -> list[Written]:
        return [
            Written(
                json.loads(message["Body"]),
                {
                    name: value["StringValue"]
                    for name, value in message.get("MessageAttributes", {}).items()
                },
            )
            for message in receive(endpoint, url)
        ]

    return Rig(
        config={"type": "sqs", "queue_arn": arn, "endpoint_url": endpoint},
        read_back=collected(fetch),
        unreachable={"type": "sqs", "queue_arn": arn, "endpoint_url": unreachable_endpoint()},
    )


@register("sns", Traits(has_attributes=True))
def sns_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    endpoint = request.getfixturevalue("aws_endpoint")
    topic_arn = aws("sns", endpoint).create_topic(Name=unique("contract"))["TopicArn"]
    url, queue_arn = new_queue(endpoint)
    aws("sns", endpoint).subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def fetch() -> list[Written]:
        notifications = [json.loads(message["Body"]) for message in receive(endpoint, url)]
        return [
            Written(
                json.loads(notification["Message"]),
                {
                    name: value["Value"]
                    for name, value in notification.get("MessageAttributes", {}).items()
                },
            )
            for notification in notifications
        ]

    return Rig(
        config={"type": "sns", "topic_arn": topic_arn, "endpoint_url": endpoint},
        read_back=collected(fetch),
        unreachable={"type": "sns", "topic_arn": topic_arn, "endpoint_url": unreachable_endpoint()},
    )


@register("s3", Traits(keeps_payload=True))
def s3_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    endpoint = request.getfixturevalue("aws_endpoint")
    bucket = unique("contract")
    s3 = aws("s3", endpoint)
    s3.create_bucket(Bucket=bucket)

    def objects() -> list[Written]:
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return [
            Written(json.loads(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()))
            for entry in listed
        ]

    def read_back(count: int) -> list[Written]:
        wait_for(lambda: len(s3.list_objects_v2(Bucket=bucket).get("Contents", [])) >= count, 30)
        return objects()

    return Rig(
        config={"type": "s3", "bucket": bucket, "endpoint_url": endpoint},
        read_back=read_back,
        unreachable={"type": "s3", "bucket": bucket, "endpoint_url": unreachable_endpoint()},
    )


@register("eventbridge", Traits(takes_failures=False))
def eventbridge_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    endpoint = request.getfixturevalue("aws_endpoint")
    events = aws("events", endpoint)
    # A bus of its own, so no other test's events reach this queue.
    bus = unique("contract")
    events.create_event_bus(Name=bus)
    url, queue_arn = new_queue(endpoint)
    events.put_rule(Name=bus, EventBusName=bus, EventPattern=json.dumps({"source": ["lambda"]}))
    events.put_targets(Rule=bus, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])

    def fetch() -> list[Written]:
        return [
            Written(json.loads(message["Body"])["detail"]) for message in receive(endpoint, url)
        ]

    return Rig(
        config={"type": "eventbridge", "event_bus": bus, "endpoint_url": endpoint},
        read_back=collected(fetch),
        unreachable={
            "type": "eventbridge",
            "event_bus": bus,
            "endpoint_url": unreachable_endpoint(),
        },
    )


@register(
    "kafka",
    Traits(
        keeps_payload=True,
        per_record=True,
        ordered=True,
        has_attributes=True,
        unreachable_fails_at="start",
        payload_limit=KAFKA_MAX_REQUEST,
    ),
)
def kafka_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    topic = unique("contract")
    # One partition: the topic keeps the order the records were produced in.
    kafka_helpers.create_topic(bootstrap, topic, 1)

    def read_back(count: int) -> list[Written]:
        messages = kafka_helpers.read_all(bootstrap, topic, count, timeout=30)
        return [
            Written(
                json.loads(message.value), {name: value.decode() for name, value in message.headers}
            )
            for message in messages
        ]

    return Rig(
        config={"type": "kafka", "bootstrap_servers": [bootstrap], "topic": topic},
        read_back=read_back,
        unreachable={
            "type": "kafka",
            "bootstrap_servers": [f"127.0.0.1:{free_port()}"],
            "topic": topic,
        },
    )


@register("redis-stream", Traits(keeps_payload=True, ordered=True, has_attributes=True))
def redis_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    url = request.getfixturevalue("redis_url")
    stream = unique("contract")
    client = redis.Redis.from_url(url)
    # Fields that are the entry's own, not a delivery's attributes.
    own = {b"failure", b"record", b"origin", b"mapping", b"condition", b"timestamp"}

    def entries() -> list[Written]:
        return [
            Written(
                json.loads(fields.get(b"failure") or fields[b"record"]),
                {
                    name.decode(): value.decode()
                    for name, value in fields.items()
                    if name not in own
                },
            )
            for _, fields in client.xrange(stream)
        ]

    def read_back(count: int) -> list[Written]:
        wait_for(lambda: client.xlen(stream) >= count, 30, what=f"{count} entries")
        return entries()

    return Rig(
        config={"type": "redis-stream", "url": url, "stream": stream},
        read_back=read_back,
        unreachable={
            "type": "redis-stream",
            "url": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",
            "stream": stream,
        },
        secret=SECRET,
    )


@register(
    "lambda",
    Traits(takes_failures=False, takes_deliveries=False, unreachable_fails_at=None),
)
def lambda_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    """Only names the function: the asynchronous service queues its records itself
    (bridge.asyncinvoke.service.AsyncService.deliver), so there is nothing to read back."""

    def read_back(count: int) -> list[Written]:
        raise AssertionError("a lambda destination writes nothing itself")

    return Rig(config={"type": "lambda", "function": "orders"}, read_back=read_back)

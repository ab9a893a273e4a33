"""The `sqs` source against moto in server mode.

Most tests drive the source the way a mapping does: `open()`, `read()`, `settle()` or
`release()`, `close()`. One runs the real pipeline (MappingRunner) to show that a
partial batch response deletes only the successes. Queues are unique per test and
small; those that test redelivery have a visibility timeout of 1-2 s. Waits poll up to
a bound and no assertion depends on exact timings. moto's FIFO redelivery order is
wrong (testing.md), so no test asserts the order of redelivered messages.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import uuid
import zlib
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError
from bridge.protocols import DeliveryMode
from bridge.records import Record
from bridge.testing import StandaloneOwnership
from connectors.sqs.config import SqsSourceConfig
from connectors.sqs.source import SqsSource

REGION = "us-east-1"


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


class NoOwnership(StandaloneOwnership):
    """SQS has no partitions to revoke."""

    def revoked(self, partitions: Collection[str]) -> None:
        raise AssertionError("the sqs source revoked partitions")


class UnusedCheckpoints:
    """The queue keeps the state; the source must not touch the checkpoint store."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the sqs source used the checkpoint store ({name})")


@functools.cache
def sqs(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


def new_queue(endpoint: str, *, fifo: bool = False, visibility: int = 30) -> tuple[str, str]:
    """A fresh queue: (URL, ARN)."""
    name = f"orders-{uuid.uuid4().hex}" + (".fifo" if fifo else "")
    attributes = {"VisibilityTimeout": str(visibility)}
    if fifo:
        attributes["FifoQueue"] = "true"
    client = sqs(endpoint)
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def send(endpoint: str, url: str, body: str, group: str | None = None, **extra: Any) -> str:
    if group is not None:
        # An explicit deduplication id: moto only gives those messages a SequenceNumber.
        extra.update(MessageGroupId=group, MessageDeduplicationId=uuid.uuid4().hex)
    return str(sqs(endpoint).send_message(QueueUrl=url, MessageBody=body, **extra)["MessageId"])


def queue_depth(endpoint: str, url: str) -> int:
    """Messages still in the queue, visible or not."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs(endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(found[name]) for name in names)


def source_config(endpoint: str, url: str | None = None, **settings: Any) -> SqsSourceConfig:
    if url is not None:
        settings["queue_url"] = url
    return SqsSourceConfig.model_validate(
        {"type": "sqs", "endpoint_url": endpoint, "wait_time_seconds": 1, **settings}
    )


def context(function_timeout: float = 1.0, maximum_concurrency: int = 5) -> SourceContext:
    return SourceContext(
        mapping="orders",
        identity=Identity(),
        checkpoints=UnusedCheckpoints(),
        state_dir=Path("."),
        function_timeout=function_timeout,
        maximum_concurrency=maximum_concurrency,
    )


def build(
    config: SqsSourceConfig, function_timeout: float = 1.0, maximum_concurrency: int = 5
) -> SqsSource:
    source = config.build(context(function_timeout, maximum_concurrency))
    assert isinstance(source, SqsSource)
    return source


async def read_until(source: SqsSource, count: int, limit: float = 10.0) -> list[Record]:
    records: list[Record] = []
    async with asyncio.timeout(limit):
        while len(records) < count:
            records.extend(await source.read())
    return records


def sqs_model(source: SqsSource, records: list[Record]) -> tuple[dict[str, Any], SqsModel]:
    """The event as JSON and as powertools' strict SqsModel (validated on a copy)."""
    event = json.loads(source.formatter.encode_event(records))
    return event, SqsModel.model_validate(copy.deepcopy(event))


ATTRIBUTES = {
    "Author": {"DataType": "String", "StringValue": "John Grisham"},
    "WeeksOn": {"DataType": "Number", "StringValue": "6"},
    "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    "Trace": {"DataType": "String.uuid", "StringValue": "9f3c"},
}


def test_standard_queue_event_validates_with_sqs_model(aws_endpoint: str) -> None:
    """Messages with attributes of each data type and without any become records that
    pass SqsModel, with Lambda's attribute shape, the queue's ARN and region, and the
    message id, receipt handle and sent time on the record."""
    url, arn = new_queue(aws_endpoint)
    with_attributes = send(aws_endpoint, url, '{"order": 1}', MessageAttributes=ATTRIBUTES)
    plain = send(aws_endpoint, url, "plain text")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url))
        await source.open(NoOwnership())
        try:
            assert source.mode is DeliveryMode.QUEUE
            records = await read_until(source, 2)
            event, model = sqs_model(source, records)
            await source.acknowledge(records)
        finally:
            await source.close()
        by_id = {item["messageId"]: item for item in event["Records"]}
        assert set(by_id) == {with_attributes, plain}
        rich, bare = by_id[with_attributes], by_id[plain]
        assert rich["messageAttributes"]["Blob"] == {
            "binaryValue": "AAH+",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        }
        assert rich["messageAttributes"]["WeeksOn"]["stringValue"] == "6"
        assert rich["messageAttributes"]["Trace"]["dataType"] == "String.uuid"
        assert isinstance(rich["md5OfMessageAttributes"], str)
        assert bare["messageAttributes"] == {} and bare["md5OfMessageAttributes"] is None
        assert bare["body"] == "plain text"
        assert set(bare["attributes"]) >= {
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        }
        assert all(isinstance(value, str) for value in bare["attributes"].values())
        assert {item.eventSourceARN for item in model.Records} == {arn}
        assert {item.awsRegion for item in model.Records} == {REGION}
        record = next(record for record in records if record.item_id == plain)
        assert record.handle == bare["receiptHandle"]
        assert record.arrival == int(bare["attributes"]["SentTimestamp"]) / 1000

    run(main)


def test_fifo_event_keeps_each_group_in_order_and_blocks_a_group_in_flight(
    aws_endpoint: str,
) -> None:
    """FIFO: records pass SqsModel with SequenceNumber, MessageGroupId and
    MessageDeduplicationId; each group arrives in send order, in the lane its name hashes
    to; and while a group has messages in flight its later messages are not received,
    while other groups' are (esm-reference.md 5.3)."""
    url, arn = new_queue(aws_endpoint, fifo=True)
    for body in ("a1", "b1", "a2", "b2", "a3"):
        send(aws_endpoint, url, body, group=body[0])

    async def main() -> None:
        source = build(source_config(aws_endpoint, url), maximum_concurrency=3)
        await source.open(NoOwnership())
        try:
            assert source.mode is DeliveryMode.ORDERED_QUEUE
            first = await read_until(source, 5)
            event, model = sqs_model(source, first)
            for group in ("a", "b"):
                bodies = [
                    str(item.body)
                    for item in model.Records
                    if item.attributes.MessageGroupId == group
                ]
                assert bodies == sorted(bodies)
            assert all(item.attributes.SequenceNumber for item in model.Records)
            assert all(item.attributes.MessageDeduplicationId for item in model.Records)
            assert {item["eventSourceARN"] for item in event["Records"]} == {arn}
            for record in first:
                assert record.partition == record.payload["attributes"]["MessageGroupId"]
                assert record.lane == zlib.crc32(record.partition.encode()) % 3
            send(aws_endpoint, url, "a4", group="a")
            send(aws_endpoint, url, "b3", group="b")
            await source.acknowledge([record for record in first if record.partition == "b"])
            later = await read_until(source, 1)
            assert [record.payload["body"] for record in later] == ["b3"]
            assert await source.read() == []
            await source.acknowledge(
                later + [record for record in first if record.partition == "a"]
            )
            last = await read_until(source, 1)
            assert [record.payload["body"] for record in last] == ["a4"]
            await source.acknowledge(last)
        finally:
            await source.close()
        assert queue_depth(aws_endpoint, url) == 0

    run(main)


def test_settled_messages_are_deleted_and_a_queue_arn_is_resolved(aws_endpoint: str) -> None:
    """A queue named by ARN is found with GetQueueUrl; settling deletes the messages
    (more than ten in one call, so several DeleteMessageBatch requests)."""
    url, arn = new_queue(aws_endpoint)
    client = sqs(aws_endpoint)
    for start in (0, 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(index), "MessageBody": f"m{start + index}"} for index in range(10)],
        )

    async def main() -> None:
        source = build(source_config(aws_endpoint, queue_arn=arn))
        await source.open(NoOwnership())
        try:
            records = await read_until(source, 20)
            assert source.in_flight == 20
            await source.acknowledge(records)
            assert source.in_flight == 0
        finally:
            await source.close()

    run(main)
    assert queue_depth(aws_endpoint, url) == 0


def test_released_messages_reappear_after_the_visibility_timeout(aws_endpoint: str) -> None:
    """A released (failed) message is left to the queue: it is received again once its
    visibility timeout has passed, with ApproximateReceiveCount incremented (5.1)."""
    url, _ = new_queue(aws_endpoint, visibility=1)
    message_id = send(aws_endpoint, url, "fails once")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url, wait_time_seconds=2))
        await source.open(NoOwnership())
        try:
            [first] = await read_until(source, 1)
            assert first.payload["attributes"]["ApproximateReceiveCount"] == "1"
            await source.release([first])
            assert source.in_flight == 0
            [again] = await read_until(source, 1)
            assert again.item_id == message_id
            assert again.handle != first.handle
            assert again.payload["attributes"]["ApproximateReceiveCount"] == "2"
            await source.acknowledge([again])
        finally:
            await source.close()

    run(main)
    assert queue_depth(aws_endpoint, url) == 0


def test_a_message_held_past_half_its_visibility_timeout_is_not_delivered_twice(
    aws_endpoint: str,
) -> None:
    """While a message is being processed for longer than its visibility timeout, the
    source keeps extending it, so another consumer polling all that time never gets it;
    after settling, it is gone."""
    url, _ = new_queue(aws_endpoint, visibility=2)
    send(aws_endpoint, url, "slow")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url))
        await source.open(NoOwnership())
        try:
            [record] = await read_until(source, 1)
            competitor = sqs(aws_endpoint)
            # Two long polls of 2 s each: more than the visibility timeout in total.
            for _ in range(2):
                reply = await asyncio.to_thread(
                    competitor.receive_message, QueueUrl=url, WaitTimeSeconds=2
                )
                assert reply.get("Messages", []) == []
            assert source.in_flight == 1
            await source.acknowledge([record])
        finally:
            await source.close()

    run(main)
    assert queue_depth(aws_endpoint, url) == 0


def test_function_timeout_above_the_visibility_timeout_is_permanent(aws_endpoint: str) -> None:
    """As AWS validates a mapping (esm-reference.md 2): a function timeout longer than the
    queue's visibility timeout fails the mapping for good, saying both values; nothing is
    received."""
    url, _ = new_queue(aws_endpoint, visibility=2)
    send(aws_endpoint, url, "untouched")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url), function_timeout=5)
        try:
            with pytest.raises(PermanentSourceError, match=r"function timeout \(5 s\).*\(2 s\)"):
                await source.open(NoOwnership())
        finally:
            await source.close()

    run(main)
    reply = sqs(aws_endpoint).receive_message(QueueUrl=url, AttributeNames=["All"])
    assert reply["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"


def test_a_missing_queue_is_permanent(aws_endpoint: str) -> None:
    """A queue that does not exist, by URL or by ARN, fails the mapping for good."""
    url, arn = new_queue(aws_endpoint)
    configs = [
        source_config(aws_endpoint, url + "-missing"),
        source_config(aws_endpoint, queue_arn=arn + "-missing"),
    ]

    async def main() -> None:
        for config in configs:
            source = build(config)
            try:
                with pytest.raises(PermanentSourceError, match="does not exist"):
                    await source.open(NoOwnership())
            finally:
                await source.close()

    run(main)


class RefusingVisibility:
    """The real client, except that changing visibility is refused (access denied)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def change_message_visibility_batch(self, **request: Any) -> Any:
        error = {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}
        raise ClientError(error, "ChangeMessageVisibilityBatch")


def test_a_failing_visibility_keeper_surfaces_in_read(aws_endpoint: str) -> None:
    """If keeping a message invisible fails for good, the next read (even one in a long
    poll) raises that error, so the mapping does not go on while messages get delivered
    twice."""
    url, _ = new_queue(aws_endpoint, visibility=1)
    send(aws_endpoint, url, "held")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url, wait_time_seconds=20))
        await source.open(NoOwnership())
        try:
            await read_until(source, 1)
            source._client = RefusingVisibility(source._client)
            with pytest.raises(PermanentSourceError, match="ChangeMessageVisibilityBatch"):
                async with asyncio.timeout(10):
                    await source.read()
        finally:
            await source.close()

    run(main)


def test_a_delete_the_queue_refuses_is_logged(aws_endpoint: str) -> None:
    """A message SQS refuses to delete (an invalid receipt handle) is not dropped
    silently: the failure is logged with its message id."""
    url, _ = new_queue(aws_endpoint)
    send(aws_endpoint, url, "kept")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url))
        await source.open(NoOwnership())
        try:
            [record] = await read_until(source, 1)
            forged = Record(record.partition, 0, record.item_id, None, 0.0, None, "bogus", b"{}")
            with capture_logs() as logs:
                await source.acknowledge([forged])
        finally:
            await source.close()
        [failure] = [entry for entry in logs if entry["event"] == "sqs.delete_failed"]
        assert failure["message_ids"] == [record.item_id]
        assert "ReceiptHandleIsInvalid" in failure["error"]

    run(main)
    assert queue_depth(aws_endpoint, url) == 1


def test_nothing_is_received_before_open(aws_endpoint: str) -> None:
    """Building a source (an `enabled: false` mapping is never opened) touches nothing,
    and closing an unopened source is harmless."""
    url, _ = new_queue(aws_endpoint)
    send(aws_endpoint, url, "waiting")

    async def main() -> None:
        source = build(source_config(aws_endpoint, url))
        await source.close()

    run(main)
    reply = sqs(aws_endpoint).receive_message(QueueUrl=url, AttributeNames=["All"])
    assert reply["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"

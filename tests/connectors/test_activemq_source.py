"""The activemq source against a real ActiveMQ broker: the aws:mq event of text and bytes
messages (esm-reference.md 1.7), redelivery after a failed batch and the dead-letter
queue past the redelivery limit (8), and messages too large to read."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bridge.config.plugins import Identity, SourceContext
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner, MappingState
from bridge.pipeline.settings import MappingSettings
from bridge.records import Record
from bridge.retry import Backoff
from bridge.testing import ScriptedInvoker, StandaloneOwnership
from connectors.activemq.config import ActiveMQSourceConfig
from connectors.activemq.source import ActiveMQSource
from tests.e2e import activemq_helpers as amq
from tests.services import FlakyProxy, free_port


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def built(tmp_path: Path, **settings: Any) -> ActiveMQSource:
    config = ActiveMQSourceConfig.model_validate({"type": "activemq", **settings})
    context = SourceContext(
        mapping="orders",
        identity=Identity("eu-west-1", "123456789012"),
        checkpoints=SqliteCheckpointStore(tmp_path / "c.sqlite3"),
        state_dir=tmp_path,
    )
    source = config.build(context)
    assert isinstance(source, ActiveMQSource)
    return source


@asynccontextmanager
async def opened(tmp_path: Path, **settings: Any) -> AsyncIterator[ActiveMQSource]:
    source = built(tmp_path, **settings)
    await source.open(StandaloneOwnership())
    try:
        yield source
    finally:
        await source.close()


async def read(source: ActiveMQSource, count: int, timeout: float = 15.0) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await source.read())
    return records


def test_text_and_bytes_messages_make_the_aws_mq_event(tmp_path: Path, activemq_url: str) -> None:
    """Every field of a message, with Lambda's names and types: a TextMessage and a
    BytesMessage told apart, JMS headers as numbers and strings, user properties as
    strings, delivery mode 2 for persistent and 1 for non-persistent messages."""
    queue = amq.unique("shape")
    expires = int(time.time() * 1000) + 600_000

    async def body() -> None:
        await amq.send(
            activemq_url,
            queue,
            ["hello text"],
            headers={
                "priority": "7",
                "correlation-id": "corr-1",
                "reply-to": "/queue/replies",
                "type": "OrderCreated",
                "expires": str(expires),
                "index": "1",
                "doAlarm": "false",
            },
        )
        await amq.send(activemq_url, queue, [b"\x00\x01binary\xff"], persistent=False)
        async with opened(tmp_path, url=activemq_url, queues=[queue]) as source:
            text, binary = await read(source, 2)
            event = json.loads(source.formatter.encode_event([text, binary]))
        assert event["eventSource"] == "aws:mq"
        arn = event["eventSourceArn"]
        assert arn.startswith("arn:aws:mq:eu-west-1:123456789012:broker:127:b-")
        first, second = event["messages"]
        assert list(first) == [
            "messageID",
            "messageType",
            "timestamp",
            "deliveryMode",
            "correlationID",
            "replyTo",
            "destination",
            "redelivered",
            "type",
            "expiration",
            "priority",
            "data",
            "brokerInTime",
            "brokerOutTime",
            "properties",
        ]
        assert first["messageID"].startswith("ID:")
        assert first["messageType"] == "jms/text-message"
        assert first["deliveryMode"] == 2
        assert first["correlationID"] == "corr-1"
        assert first["replyTo"] == "queue://replies"
        assert first["destination"] == {"physicalName": queue}
        assert first["redelivered"] is False
        assert first["type"] == "OrderCreated"
        assert first["expiration"] == expires
        assert first["priority"] == 7
        assert base64.b64decode(first["data"]) == b"hello text"
        assert first["properties"] == {"index": "1", "doAlarm": "false"}
        now = time.time() * 1000
        for message in (first, second):
            assert isinstance(message["timestamp"], int)
            assert now - 60_000 < message["timestamp"] <= message["brokerOutTime"] <= now
            assert message["brokerInTime"] == message["timestamp"]
        assert second["messageType"] == "jms/bytes-message"
        assert base64.b64decode(second["data"]) == b"\x00\x01binary\xff"
        assert second["deliveryMode"] == 1
        assert second["correlationID"] == "" and second["type"] == ""
        assert second["replyTo"] == "null"
        assert second["expiration"] == 0 and second["priority"] == 4
        assert second["properties"] is None
        assert [text.item_id, binary.item_id] == [first["messageID"], second["messageID"]]

    run(body)


def test_a_failed_batch_comes_again_marked_redelivered(tmp_path: Path, activemq_url: str) -> None:
    """Released messages are not acknowledged: they come again after the redelivery delay,
    `redelivered`, with the same message ids, and once acknowledged never again."""
    queue = amq.unique("again")

    async def body() -> None:
        await amq.send(activemq_url, queue, [{"n": 1}, {"n": 2}])
        async with opened(
            tmp_path, url=activemq_url, queues=[queue], redelivery_delay_seconds=0.3
        ) as source:
            first = await read(source, 2)
            assert [r.payload["redelivered"] for r in first] == [False, False]
            released_at = time.monotonic()
            await source.release(first)
            again = await read(source, 2)
            assert time.monotonic() - released_at >= 0.3
            assert [r.item_id for r in again] == [r.item_id for r in first]
            assert [r.payload["redelivered"] for r in again] == [True, True]
            await source.acknowledge(again)
        async with opened(tmp_path, url=activemq_url, queues=[queue]) as source:
            assert await read(source, 1, timeout=1.0) == []

    run(body)


def test_past_the_redelivery_limit_a_message_goes_to_the_dead_letter_queue(
    tmp_path: Path, activemq_url: str
) -> None:
    """A message delivered 1 + maximum_redeliveries times and failed each time is refused
    (NACK), and the broker moves it to its dead-letter queue; the queue is empty."""
    queue = amq.unique("poison")

    async def body() -> None:
        await amq.send(activemq_url, queue, [{"n": 1, "poison": True}])
        settings = {
            "url": activemq_url,
            "queues": [queue],
            "maximum_redeliveries": 2,
            "redelivery_delay_seconds": 0,
        }
        deliveries = 0
        async with opened(tmp_path, **settings) as source:
            while True:
                records = await read(source, 1, timeout=2.0)
                if not records:
                    break
                deliveries += 1
                await source.release(records)
        assert deliveries == 3
        [dead] = await amq.drain(activemq_url, f"DLQ.{queue}", 1)
        assert json.loads(dead.body) == {"n": 1, "poison": True}
        assert dead.headers["original-destination"] == f"/queue/{queue}"
        async with opened(tmp_path, url=activemq_url, queues=[queue]) as source:
            assert await read(source, 1, timeout=1.0) == []

    run(body)


def test_a_message_too_large_to_read_is_dropped_and_counted(
    tmp_path: Path, activemq_url: str
) -> None:
    """A body over max_message_bytes is skipped without being kept, acknowledged and
    counted; the messages around it are delivered."""
    queue = amq.unique("large")

    async def body() -> None:
        await amq.send(activemq_url, queue, ["small-1", "x" * 5000, b"y" * 5000, "small-2"])
        async with opened(
            tmp_path, url=activemq_url, queues=[queue], max_message_bytes=1024
        ) as source:
            records = await read(source, 2)
            assert [base64.b64decode(r.payload["data"]) for r in records] == [
                b"small-1",
                b"small-2",
            ]
            assert source.dropped_too_large == 2
            await source.acknowledge(records)
        async with opened(tmp_path, url=activemq_url, queues=[queue]) as source:
            assert await read(source, 1, timeout=1.0) == []

    run(body)


def test_a_broker_closing_during_connect_is_retried(tmp_path: Path, activemq_url: str) -> None:
    """A broker that accepts and closes the connection before answering CONNECT (one
    restarting, at its maximumConnections, an Amazon MQ failover) is a retriable error:
    the mapping keeps connecting, and reads once the broker answers."""
    queue = amq.unique("closing")
    # Until retargeted, the proxy closes every connection it accepts.
    proxy = FlakyProxy(free_port()).start()

    async def body() -> None:
        await amq.send(activemq_url, queue, [{"n": 1}])
        invoker = ScriptedInvoker()
        url = f"stomp://127.0.0.1:{proxy.port}"
        runner = MappingRunner(
            name="orders",
            function_arn="arn:aws:lambda:eu-west-1:123456789012:function:f",
            settings=MappingSettings(
                batch=BatchPolicy(max_records=10),
                retry=RetryPolicy(),
                parallelization_factor=1,
                maximum_concurrency=2,
            ),
            source_factory=lambda: built(tmp_path, url=url, queues=[queue]),
            invoker=invoker,
            destination=None,
            reconnect_backoff=Backoff(initial=0.01, maximum=0.05),
        )
        task = asyncio.create_task(runner.run())
        try:
            while runner.health.failures["source"] < 3:
                assert runner.state is not MappingState.FAILED, runner.state_reason
                await asyncio.sleep(0.01)
            proxy.target_port = urlsplit(activemq_url).port or 61613
            while not invoker.events:
                assert runner.state is not MappingState.FAILED, runner.state_reason
                await asyncio.sleep(0.01)
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)
        [message] = invoker.events[0]["messages"]
        assert json.loads(base64.b64decode(message["data"])) == {"n": 1}

    try:
        run(body)
    finally:
        proxy.close()


def test_bad_settings_are_one_line_each() -> None:
    """A URL that is not STOMP, and a password never shown by the source's description."""
    with pytest.raises(ValueError, match="stomp://"):
        ActiveMQSourceConfig.model_validate(
            {"type": "activemq", "url": "amqp://u:pw@h:5672", "queues": ["q"]}
        )
    config = ActiveMQSourceConfig.model_validate(
        {"type": "activemq", "url": "stomp+ssl://app:s3cret@b-1.mq.amazonaws.com", "queues": ["q"]}
    )
    assert config.tls and config.address == ("b-1.mq.amazonaws.com", 61614)
    assert config.credentials == ("app", "s3cret")
    assert "s3cret" not in config.redacted_url + config.source_id()
    separate = ActiveMQSourceConfig.model_validate(
        {
            "type": "activemq",
            "url": "stomp://b-1:61613",
            "username": "bridge",
            "password": "pw2",
            "queues": ["q"],
        }
    )
    assert separate.credentials == ("bridge", "pw2")
    assert separate.api_description("m", Identity())["Queues"] == ["q"]

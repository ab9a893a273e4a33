"""The `rabbitmq` source against a real RabbitMQ (a private rabbitmq-server, or AMQP_URL).

Tests drive the source as a session does (`open`, `read`, `acknowledge` / `release`,
`close`), or run it in the real pipeline (MappingRunner) with a scripted function. Each
test has a queue of its own. Waits poll up to a bound; no assertion depends on timings.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bridge.codec import dumps
from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.filtering.criteria import MQ_DATA, build_filter_set
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner, MappingState
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import DeliveryMode
from bridge.records import InvokeResult, Record
from bridge.retry import Backoff
from bridge.testing import ScriptedInvoker, StandaloneOwnership
from connectors.rabbitmq.config import RabbitMqSourceConfig
from connectors.rabbitmq.source import RabbitMqSource
from tests.e2e import rabbitmq_helpers as rabbitmq
from tests.services import FlakyProxy

FAST = Backoff(initial=0.05, maximum=0.2)
TIMEOUT = 20.0


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 90))


@pytest.fixture
def queue(amqp_url: str) -> Any:
    name = rabbitmq.unique("orders")
    asyncio.run(rabbitmq.declare_queue(amqp_url, name))
    yield name
    asyncio.run(rabbitmq.delete_queue(amqp_url, name))


def config(url: str, queue: str, **settings: Any) -> RabbitMqSourceConfig:
    settings.setdefault("requeue_delay_seconds", 0.05)
    return RabbitMqSourceConfig.model_validate(
        {"type": "rabbitmq", "url": url, "queues": [queue], **settings}
    )


def source(
    url: str, queue: str, *, batch_size: int = 10, concurrency: int = 1, **settings: Any
) -> RabbitMqSource:
    context = SourceContext(
        mapping="test",
        identity=Identity(),
        checkpoints=None,  # type: ignore[arg-type]  # a queue keeps no checkpoints
        state_dir=Path("unused"),
        batch_size=batch_size,
        maximum_concurrency=concurrency,
    )
    return RabbitMqSource(config(url, queue, **settings), context)


@asynccontextmanager
async def opened(url: str, queue: str, **options: Any) -> AsyncIterator[RabbitMqSource]:
    reader = source(url, queue, **options)
    await reader.open(StandaloneOwnership())
    try:
        yield reader
    finally:
        await reader.close()


async def read(reader: RabbitMqSource, count: int, quiet: float = 0.6) -> list[Record]:
    """Read until `count` records came (or TIMEOUT), then for `quiet` more."""
    records: list[Record] = []
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while len(records) < count and asyncio.get_running_loop().time() < deadline:
        records.extend(await reader.read())
    end = asyncio.get_running_loop().time() + quiet
    while asyncio.get_running_loop().time() < end:
        records.extend(await reader.read())
    return records


def ids(records: list[Record]) -> list[str]:
    return [json.loads(base64.b64decode(record.payload["data"]))["id"] for record in records]


def data_id(item: dict[str, Any]) -> str:
    """The id of a JSON message, or a plain-text message's text."""
    data = base64.b64decode(item["data"])
    return str(json.loads(data)["id"]) if data.startswith(b"{") else data.decode()


def ids_of(event: dict[str, Any]) -> list[str]:
    return [data_id(item) for batch in event["rmqMessagesByQueue"].values() for item in batch]


async def publish(url: str, queue: str, names: list[str], **properties: Any) -> None:
    await rabbitmq.publish(
        url, queue, [json.dumps({"id": n}).encode() for n in names], **properties
    )


async def nothing_left(url: str, queue: str) -> None:
    """Every message was acknowledged: a new consumer finds none, ready or redelivered."""
    async with opened(url, queue) as reader:
        assert await read(reader, 0, quiet=1.0) == []


# -- the event ----------------------------------------------------------------------------


def test_a_message_with_every_property_as_lambda_delivers_it(amqp_url: str, queue: str) -> None:
    """Each AMQP property lands in its basicProperties field; string headers as signed
    bytes, numbers as numbers, the timestamp in Lambda's date form (esm-reference.md 1.8)."""

    async def main() -> None:
        user = urlsplit(amqp_url).username or "guest"
        await rabbitmq.publish(
            amqp_url,
            queue,
            [b'{"id": "full"}'],
            content_type="application/json",
            content_encoding="identity",
            headers={"source": "wébshop", "attempt": 3, "urgent": True, "inner": {"k": "v"}},
            priority=5,
            correlation_id="corr-1",
            reply_to="replies",
            expiration=60,
            message_id="m-1",
            timestamp=dt.datetime(2026, 3, 4, 17, 5, 6, tzinfo=dt.UTC),
            type="order.created",
            user_id=user,
            app_id="shop",
        )
        async with opened(amqp_url, queue) as reader:
            [record] = await read(reader, 1, quiet=0)
            event = json.loads(reader.formatter.encode_event([record]))
            await reader.acknowledge([record])
        assert event["eventSource"] == "aws:rmq"
        assert event["eventSourceArn"] == reader.source_arn
        assert event["eventSourceArn"].startswith("arn:aws:mq:us-east-1:000000000000:broker:")
        [(key, [message])] = event["rmqMessagesByQueue"].items()
        assert key == f"{queue}::/"
        assert message == {
            "basicProperties": {
                "contentType": "application/json",
                "contentEncoding": "identity",
                "headers": {
                    "source": {"bytes": [119, -61, -87, 98, 115, 104, 111, 112]},
                    "attempt": 3,
                    "urgent": True,
                    "inner": {"k": {"bytes": [118]}},
                },
                "deliveryMode": 2,
                "priority": 5,
                "correlationId": "corr-1",
                "replyTo": "replies",
                "expiration": "60000",
                "messageId": "m-1",
                "timestamp": "Mar 4, 2026, 5:05:06 PM",
                "type": "order.created",
                "userId": user,
                "appId": "shop",
                "clusterId": None,
                "bodySize": 14,
            },
            "redelivered": False,
            "data": base64.b64encode(b'{"id": "full"}').decode(),
        }
        await nothing_left(amqp_url, queue)

    run(main)


def test_a_queue_source(amqp_url: str, queue: str) -> None:
    assert source(amqp_url, queue).mode is DeliveryMode.QUEUE


# -- settling -----------------------------------------------------------------------------


def test_closing_acknowledges_nothing(amqp_url: str, queue: str) -> None:
    """Of five read, two acknowledged and one handed back: closing settles nothing else,
    and the three unacknowledged come again, marked redelivered."""

    async def main() -> None:
        names = [f"c{index}" for index in range(5)]
        await publish(amqp_url, queue, names)
        async with opened(amqp_url, queue, requeue_delay_seconds=30) as reader:
            records = await read(reader, 5)
            assert sorted(ids(records)) == names
            await reader.acknowledge(records[:2])
            await reader.release(records[2:3])  # waits 30 s: the close comes first
        async with opened(amqp_url, queue) as again:
            came = await read(again, 3)
            assert sorted(ids(came)) == sorted(ids(records[2:]))
            assert all(record.payload["redelivered"] for record in came)
            await again.acknowledge(came)
        await nothing_left(amqp_url, queue)

    run(main)


def test_prefetch_is_batch_size_times_concurrency(amqp_url: str, queue: str) -> None:
    """The broker hands out batch_size x concurrency unacknowledged messages, then more
    only as they are acknowledged."""

    async def main() -> None:
        await publish(amqp_url, queue, [f"p{index:02d}" for index in range(25)])
        async with opened(amqp_url, queue, batch_size=5, concurrency=2) as reader:
            first = await read(reader, 10)
            assert len(first) == 10
            assert reader.unsettled == 10
            await reader.acknowledge(first[:4])
            more = await read(reader, 4)
            assert len(more) == 4
            await reader.acknowledge(first[4:] + more)
            rest = await read(reader, 11)
            assert len(rest) == 10
            await reader.acknowledge(rest)
            last = await read(reader, 1)
            assert len(last) == 1
            await reader.acknowledge(last)
        assert await rabbitmq.message_count(amqp_url, queue) == 0

    run(main)


def test_acknowledging_out_of_order(amqp_url: str, queue: str) -> None:
    """Acknowledgements in any order, by runs or one by one, settle exactly those."""

    async def main() -> None:
        names = [f"o{index}" for index in range(6)]
        await publish(amqp_url, queue, names)
        async with opened(amqp_url, queue) as reader:
            records = await read(reader, 6)
            await reader.acknowledge([records[4], records[1]])
            await reader.acknowledge([records[0]])
            await reader.acknowledge([records[0]])  # twice: harmless
        async with opened(amqp_url, queue) as again:
            came = await read(again, 3)
            assert sorted(ids(came)) == sorted(ids([records[2], records[3], records[5]]))
            await again.acknowledge(came)

    run(main)


# -- through the pipeline -----------------------------------------------------------------


@asynccontextmanager
async def mapping(
    url: str,
    queue: str,
    invoker: ScriptedInvoker,
    *,
    max_bytes: int | None = None,
    patterns: list[Any] | None = None,
    proxy_url: str | None = None,
) -> AsyncIterator[MappingRunner]:
    batch = BatchPolicy(max_records=10, window=0.2, window_from_first_record=True)
    if max_bytes is not None:
        batch = BatchPolicy(max_records=10, window=0.2, max_bytes=max_bytes)
    runner = MappingRunner(
        name="test",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=batch,
            retry=RetryPolicy(backoff=FAST),
            parallelization_factor=1,
            maximum_concurrency=1,
        ),
        source_factory=lambda: source(proxy_url or url, queue),
        invoker=invoker,
        destination=None,
        filters=build_filter_set(patterns, MQ_DATA) if patterns else None,
        reconnect_backoff=FAST,
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_a_failed_batch_comes_again_whole_then_is_acknowledged(amqp_url: str, queue: str) -> None:
    """The function fails twice: the whole batch comes again each time, marked
    redelivered, and once it succeeds the messages are gone (esm-reference.md 8)."""

    async def main() -> None:
        names = [f"f{index}" for index in range(4)]
        await publish(amqp_url, queue, names)
        calls: list[dict[str, Any]] = []

        def function(event: dict[str, Any], request_id: str) -> InvokeResult:
            calls.append(event)
            if len(calls) <= 2:
                error = {"errorMessage": "boom", "errorType": "RuntimeError"}
                return InvokeResult(dumps(error), request_id, function_error="Unhandled")
            # A partial batch response means nothing for Amazon MQ: all succeeded.
            failures = {"batchItemFailures": [{"itemIdentifier": "1"}]}
            return InvokeResult(dumps(failures), request_id)

        invoker = ScriptedInvoker(function)
        async with mapping(amqp_url, queue, invoker):
            await until(lambda: len(calls) >= 3, "three invocations")
        assert [sorted(ids_of(event)) for event in calls[:3]] == [names] * 3
        redelivered = [
            [
                item["redelivered"]
                for batch in event["rmqMessagesByQueue"].values()
                for item in batch
            ]
            for event in calls[:3]
        ]
        assert redelivered == [[False] * 4, [True] * 4, [True] * 4]
        await nothing_left(amqp_url, queue)

    run(main)


def test_filtered_messages_are_acknowledged(amqp_url: str, queue: str) -> None:
    """Messages no filter matches never reach the function and are acknowledged
    (esm-reference.md 11.5); the data key is `data`, decoded (11.2)."""

    async def main() -> None:
        bodies = [
            {"id": "keep-1", "kind": "order"},
            {"id": "drop-1", "kind": "refund"},
            {"id": "keep-2", "kind": "order"},
        ]
        await rabbitmq.publish(amqp_url, queue, [json.dumps(b).encode() for b in bodies])
        await rabbitmq.publish(amqp_url, queue, [b"plain text"])
        invoker = ScriptedInvoker()
        pattern = {"data": {"kind": ["order"]}}
        async with mapping(amqp_url, queue, invoker, patterns=[pattern]) as runner:
            await until(
                lambda: runner.filters is not None and runner.filters.filtered_out >= 1,
                "the refund filtered out",
            )
            await until(lambda: len([i for e in invoker.events for i in ids_of(e)]) >= 3, "keeps")
        delivered = sorted(i for event in invoker.events for i in ids_of(event))
        # The plain-text message meets a JSON pattern: only the metadata is matched, and
        # the pattern names none, so it is delivered (esm-reference.md 11.4, as Kafka).
        assert delivered == ["keep-1", "keep-2", "plain text"]
        await nothing_left(amqp_url, queue)

    run(main)


def test_an_oversized_message_is_dropped_and_counted(amqp_url: str, queue: str) -> None:
    """A message whose event would be over the payload limit is never invoked: it is
    dropped (acknowledged), counted in dropped_events_total (esm-reference.md 3.1, 8),
    and the messages around it are delivered."""

    async def main() -> None:
        await publish(amqp_url, queue, ["small-1"])
        await rabbitmq.publish(
            amqp_url, queue, [json.dumps({"id": "big", "pad": "x" * 5000}).encode()]
        )
        await publish(amqp_url, queue, ["small-2"])
        invoker = ScriptedInvoker()
        async with mapping(amqp_url, queue, invoker, max_bytes=4000) as runner:
            await until(lambda: runner.metrics.dropped == 1, "the large message dropped")
            await until(
                lambda: {"small-1", "small-2"} <= {i for e in invoker.events for i in ids_of(e)},
                "the small ones delivered",
            )
        assert all("big" not in ids_of(event) for event in invoker.events)
        await nothing_left(amqp_url, queue)

    run(main)


def test_a_lost_connection_is_retried_and_nothing_is_lost(amqp_url: str, queue: str) -> None:
    """The broker goes away while the function holds a batch: the mapping shows the
    problem and reconnects with backoff; the batch settled on the dead channel is
    delivered again, and everything is delivered in the end."""

    async def main() -> None:
        port = urlsplit(amqp_url).port or 5672
        proxy = FlakyProxy(port).start()
        release = asyncio.Event()
        seen: list[str] = []

        async def function(event: dict[str, Any], request_id: str) -> InvokeResult:
            seen.extend(ids_of(event))
            await release.wait()
            return InvokeResult(b"null", request_id)

        invoker = ScriptedInvoker(function)
        proxied = rabbitmq.through_port(amqp_url, proxy.port)
        try:
            await publish(amqp_url, queue, ["l1", "l2"])
            async with mapping(amqp_url, queue, invoker, proxy_url=proxied) as runner:
                try:
                    await until(lambda: len(seen) >= 2, "the first batch invoked")
                    proxy.cut()
                    await until(lambda: runner.state is not MappingState.ENABLED, "the loss")
                    assert "channel lost" in runner.state_reason
                finally:
                    release.set()
                await publish(amqp_url, queue, ["l3"])
                proxy.restore()
                await until(
                    lambda: (
                        {"l1", "l2", "l3"} <= set(seen[2:]) and runner.state is MappingState.ENABLED
                    ),
                    "everything delivered after the reconnect",
                )
        finally:
            release.set()
            proxy.close()
        await nothing_left(amqp_url, queue)

    run(main)


# -- refusals -----------------------------------------------------------------------------


def test_wrong_credentials_fail_for_good_without_showing_them(amqp_url: str, queue: str) -> None:
    async def main() -> None:
        parts = urlsplit(amqp_url)
        url = f"amqp://guest:Wrong-Hunter2@{parts.hostname}:{parts.port}/"
        reader = source(url, queue)
        with pytest.raises(PermanentSourceError) as caught:
            await reader.open(StandaloneOwnership())
        await reader.close()
        assert "Wrong-Hunter2" not in f"{caught.value} {caught.value!r}"

    run(main)


def test_credentials_as_settings(amqp_url: str, queue: str) -> None:
    """User and password given apart from the URL (Lambda's BASIC_AUTH) are used."""

    async def main() -> None:
        parts = urlsplit(amqp_url)
        bare = f"amqp://{parts.hostname}:{parts.port}/"
        await publish(amqp_url, queue, ["cred"])
        async with opened(
            bare, queue, username=parts.username or "guest", password=parts.password or "guest"
        ) as reader:
            records = await read(reader, 1, quiet=0)
            assert ids(records) == ["cred"]
            await reader.acknowledge(records)

    run(main)


def test_unknown_queue_or_virtual_host_fails_for_good(amqp_url: str) -> None:
    async def main() -> None:
        reader = source(amqp_url, rabbitmq.unique("missing"))
        with pytest.raises(PermanentSourceError, match="NOT_FOUND"):
            await reader.open(StandaloneOwnership())
        await reader.close()
        vhost = rabbitmq.unique("vhost")
        reader = source(amqp_url, "q", virtual_host=vhost)
        with pytest.raises(PermanentSourceError, match=f"refused virtual host '{vhost}'"):
            await reader.open(StandaloneOwnership())
        await reader.close()

    run(main)


def test_a_queue_deleted_under_the_reader_ends_the_session(amqp_url: str) -> None:
    """The broker cancels the consumer of a deleted queue: read() says so, retriably (a
    new session then finds the queue missing)."""

    async def main() -> None:
        name = rabbitmq.unique("doomed")
        await rabbitmq.declare_queue(amqp_url, name)
        async with opened(amqp_url, name) as reader:
            assert await reader.read() == []
            await rabbitmq.delete_queue(amqp_url, name)
            with pytest.raises(SourceError, match="cancelled the consumer") as caught:
                for _ in range(40):
                    await reader.read()
            assert caught.value.retriable

    run(main)

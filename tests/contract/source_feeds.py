"""The sources of the contract, each on its real server: the feeds that produce records
into a fresh place of it, and the registry KINDS (tests/contract/source_harness.py says
what each field means)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from tests import services
from tests.contract.source_harness import Feed, Kind, Unreachable, body
from tests.e2e import activemq_helpers as amq
from tests.e2e import aws_helpers as aws
from tests.e2e import kafka_helpers as kafka
from tests.e2e import mqtt_helpers as mqtt
from tests.e2e import rabbitmq_helpers as rabbitmq
from tests.services import FlakyProxy, free_port

# SQS queues of the contract hand an unsettled message out again after this long.
VISIBILITY_SECONDS = 1


def _proxied(port: int, proxied: bool) -> FlakyProxy | None:
    return FlakyProxy(port).start() if proxied else None


@contextmanager
def _serving(settings: dict[str, Any], produce: Any, proxy: FlakyProxy | None) -> Iterator[Feed]:
    """The feed, cut and restored through `proxy` where there is one, which it closes."""
    if proxy is None:
        yield Feed(settings, produce)
        return
    try:
        yield Feed(settings, produce, cut=proxy.cut, restore=proxy.restore)
    finally:
        proxy.close()


# -- Redis Streams ------------------------------------------------------------------------


@asynccontextmanager
async def redis_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    url = fixtures["redis_url"]
    admin = redis.Redis.from_url(url)
    streams = [aws.unique("stream") for _ in range(2)]
    proxy = _proxied(urlsplit(url).port or 6379, proxied)
    if proxy is not None:
        url = f"redis://127.0.0.1:{proxy.port}/0"

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        for record_id in ids:
            admin.xadd(streams[partition], body(record_id, pad))

    settings = {
        "url": url,
        "streams": streams,
        "group": aws.unique("group"),
        "consumer": "contract",
        "starting_position": "TRIM_HORIZON",
        "lease_ttl_seconds": 1,
        "claim_idle_after_seconds": 0.5,
        "block_seconds": 0.1,
    }
    with _serving(settings, produce, proxy) as feed:
        yield feed
        admin.close()


def redis_unreachable(tmp_path: Path) -> Unreachable:
    url = f"redis://app:Hunter2-secret@127.0.0.1:{free_port()}/0"
    settings = {"url": url, "streams": ["s"], "starting_position": "TRIM_HORIZON"}
    return Unreachable(settings, secret="Hunter2-secret")


# -- Kafka --------------------------------------------------------------------------------


@asynccontextmanager
async def kafka_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    bootstrap = fixtures["kafka_bootstrap"]
    server: services.ServerProcess | None = None
    proxy: FlakyProxy | None = None
    if proxied:
        # The broker tells clients where to find it: behind the proxy, so that a cut
        # proxy is, to the client, the broker gone.
        port = free_port()
        server = services.tansu_server(tmp_path / "broker", advertised_port=port)
        proxy = FlakyProxy(server.port, port).start()
        bootstrap = f"127.0.0.1:{port}"
    topic = kafka.unique("topic")
    await asyncio.to_thread(kafka.create_topic, bootstrap, topic, 2)

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        bodies = [(partition, {"n": record_id, **body(record_id, pad)}) for record_id in ids]
        await kafka.produce_async(bootstrap, topic, bodies, None)

    settings = {
        "bootstrap_servers": bootstrap,
        "topics": [topic],
        "consumer_group_id": kafka.unique("group"),
        "starting_position": "TRIM_HORIZON",
        "heartbeat_interval_seconds": 0.2,
        "session_timeout_seconds": 1,
    }
    with _serving(settings, produce, proxy) as feed:
        yield feed
        if server is not None:
            server.stop()


def kafka_unreachable(tmp_path: Path) -> Unreachable:
    settings = {
        "bootstrap_servers": f"127.0.0.1:{free_port()}",
        "topics": ["t"],
        "starting_position": "TRIM_HORIZON",
    }
    return Unreachable(settings)


def kafka_id(payload: dict[str, Any]) -> str:
    record_id: str = json.loads(base64.b64decode(payload["value"]))["id"]
    return record_id


# -- AWS (moto) ---------------------------------------------------------------------------


def _aws_endpoint(fixtures: Mapping[str, Any], proxy: FlakyProxy | None) -> str:
    endpoint: str = fixtures["aws_endpoint"]
    return endpoint if proxy is None else f"http://127.0.0.1:{proxy.port}"


def _moto_proxy(fixtures: Mapping[str, Any], proxied: bool) -> FlakyProxy | None:
    return _proxied(urlsplit(fixtures["aws_endpoint"]).port or 80, proxied)


def _sqs_feed(fifo: bool) -> Any:
    @asynccontextmanager
    async def sqs_feed(
        tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
    ) -> AsyncIterator[Feed]:
        endpoint = fixtures["aws_endpoint"]
        url, _ = aws.new_queue(endpoint, fifo=fifo, visibility=VISIBILITY_SECONDS)
        client = aws.client("sqs", endpoint)

        async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
            for record_id in ids:
                extra = {}
                if fifo:
                    # A message group each: moto hands out only the last of a group's
                    # unsettled messages again (an emulator limit), so a group of several
                    # could not show redelivery. Order within a group: test_sqs_source.
                    extra = {"MessageGroupId": record_id, "MessageDeduplicationId": record_id}
                body_text = json.dumps(body(record_id, pad))
                client.send_message(QueueUrl=url, MessageBody=body_text, **extra)

        proxy = _moto_proxy(fixtures, proxied)
        settings = {
            "queue_url": url,
            "endpoint_url": _aws_endpoint(fixtures, proxy),
            "wait_time_seconds": 1,
        }
        with _serving(settings, produce, proxy) as feed:
            yield feed

    return sqs_feed


def sqs_unreachable(tmp_path: Path) -> Unreachable:
    endpoint = f"http://127.0.0.1:{free_port()}"
    return Unreachable({"queue_url": f"{endpoint}/000000000000/q", "endpoint_url": endpoint})


def sqs_id(payload: dict[str, Any]) -> str:
    record_id: str = json.loads(payload["body"])["id"]
    return record_id


@asynccontextmanager
async def kinesis_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    endpoint = fixtures["aws_endpoint"]
    stream = aws.new_stream(endpoint, shards=2)
    client = aws.client("kinesis", endpoint)
    shards = client.list_shards(StreamName=stream)["Shards"]
    starts = [shard["HashKeyRange"]["StartingHashKey"] for shard in shards]

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        for record_id in ids:
            client.put_record(
                StreamName=stream,
                Data=json.dumps(body(record_id, pad)).encode(),
                PartitionKey="key",
                ExplicitHashKey=starts[partition],
            )

    proxy = _moto_proxy(fixtures, proxied)
    settings = {
        "stream": stream,
        "endpoint_url": _aws_endpoint(fixtures, proxy),
        "starting_position": "TRIM_HORIZON",
        "poll_interval_seconds": 0.05,
        "shard_discovery_interval_seconds": 1.0,
    }
    with _serving(settings, produce, proxy) as feed:
        yield feed


def kinesis_unreachable(tmp_path: Path) -> Unreachable:
    endpoint = f"http://127.0.0.1:{free_port()}"
    return Unreachable(
        {"stream": "s", "endpoint_url": endpoint, "starting_position": "TRIM_HORIZON"}
    )


def kinesis_id(payload: dict[str, Any]) -> str:
    record_id: str = json.loads(base64.b64decode(payload["kinesis"]["data"]))["id"]
    return record_id


@asynccontextmanager
async def dynamodb_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    endpoint = fixtures["aws_endpoint"]
    client = aws.client("dynamodb", endpoint)
    table = aws.unique("table")
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        for record_id in ids:
            item = {"id": {"S": record_id}, "pad": {"S": "x" * pad or "-"}}
            client.put_item(TableName=table, Item=item)

    proxy = _moto_proxy(fixtures, proxied)
    settings = {
        "table": table,
        "endpoint_url": _aws_endpoint(fixtures, proxy),
        "starting_position": "TRIM_HORIZON",
        "poll_interval_seconds": 0.05,
    }
    with _serving(settings, produce, proxy) as feed:
        yield feed


def dynamodb_unreachable(tmp_path: Path) -> Unreachable:
    endpoint = f"http://127.0.0.1:{free_port()}"
    return Unreachable(
        {"table": "table", "endpoint_url": endpoint, "starting_position": "TRIM_HORIZON"}
    )


def dynamodb_id(payload: dict[str, Any]) -> str:
    record_id: str = payload["dynamodb"]["Keys"]["id"]["S"]
    return record_id


# -- a folder -----------------------------------------------------------------------------


@asynccontextmanager
async def files_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        # A record's size grows with its key: padding is a deeper folder.
        folder = inbox.joinpath(*["d" * 200] * (pad // 200 + 1)) if pad else inbox
        folder.mkdir(parents=True, exist_ok=True)
        for record_id in ids:
            (folder / record_id).write_text(uuid.uuid4().hex)

    yield Feed({"path": str(inbox), "stable_after_seconds": 0.2}, produce)


def files_unreachable(tmp_path: Path) -> Unreachable:
    # A folder that is not there (an unmounted share) may come back: the source retries.
    return Unreachable({"path": str(tmp_path / "unmounted"), "create_path": False})


def files_id(payload: dict[str, Any]) -> str:
    key: str = payload["s3"]["object"]["key"]
    return key.rpartition("/")[2]


# -- a schedule ---------------------------------------------------------------------------


@asynccontextmanager
async def schedule_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        raise AssertionError("a schedule's records are its firings: none can be produced")

    yield Feed({"expression": "rate(1 second)"}, produce)


def schedule_unreachable(tmp_path: Path) -> Unreachable:
    raise AssertionError("a schedule reaches no server")


# What the schedule's own tests (tests/connectors/test_schedule_source.py,
# tests/e2e/test_schedule_daemon.py) check instead of each case.
CLOCK = "a schedule's records are the clock's firings: none can be produced on demand"
SCHEDULE_CASES = {
    "reads_in_order": f"{CLOCK}; firings come once each, in time order (test_schedule_source)",
    "settling": f"{CLOCK}; a settled firing never comes again (test_schedule_source)",
    "redelivery_after_close": (
        f"{CLOCK}; and as on AWS an unsettled firing is not made up unless catch_up says "
        "so (test_schedule_source, test_schedule_daemon)"
    ),
    "redelivery_after_crash": (
        f"{CLOCK}; one in flight at a crash comes again at most once, under catch_up "
        "(test_schedule_daemon, kill -9)"
    ),
    "pause_resume": "one partition only, and the source cannot pause (can_pause is False)",
    "partial_batch": "one firing is one invocation: no batch to answer for in part",
    "oversized": f"{CLOCK}; a firing's event is the scheduled event or the configured input",
    "on_failure": f"{CLOCK}; retries and the on-failure destination: test_schedule_daemon",
    "close_twice": f"{CLOCK}; closing twice is in test_schedule_source",
    "unreachable": "a schedule reaches no server",
    "server_lost": "a schedule reaches no server",
}


# -- NATS JetStream -------------------------------------------------------------------------


def _nats_feed(ordered: bool) -> Any:
    @asynccontextmanager
    async def nats_feed(
        tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
    ) -> AsyncIterator[Feed]:
        import nats

        url = fixtures["nats_url"]
        stream = aws.unique("stream")
        client = await nats.connect(url)
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        proxy = _proxied(urlsplit(url).port or 4222, proxied)
        if proxy is not None:
            url = f"nats://127.0.0.1:{proxy.port}"

        async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
            for record_id in ids:
                await js.publish(
                    f"{stream}.p{partition}", json.dumps(body(record_id, pad)).encode()
                )

        settings = {
            "url": url,
            "stream": stream,
            "subject": f"{stream}.>",
            "consumer": "contract",
            "ack_wait_seconds": VISIBILITY_SECONDS,
            "fetch_wait_seconds": 0.2,
            "ordered_by_subject": ordered,
        }
        try:
            with _serving(settings, produce, proxy) as feed:
                yield feed
        finally:
            await client.close()

    return nats_feed


def nats_unreachable(tmp_path: Path) -> Unreachable:
    url = f"nats://app:Hunter2-secret@127.0.0.1:{free_port()}"
    return Unreachable({"url": url, "stream": "s"}, secret="Hunter2-secret")


def nats_id(payload: dict[str, Any]) -> str:
    record_id: str = json.loads(base64.b64decode(payload["data"]))["id"]
    return record_id


# -- RabbitMQ -----------------------------------------------------------------------------


@asynccontextmanager
async def rabbitmq_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    url = fixtures["amqp_url"]
    queue = rabbitmq.unique("queue")
    await rabbitmq.declare_queue(url, queue)
    proxy = _proxied(urlsplit(url).port or 5672, proxied)
    source_url = url
    if proxy is not None:
        source_url = rabbitmq.through_port(url, proxy.port)

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        await rabbitmq.publish(url, queue, [json.dumps(body(i, pad)).encode() for i in ids])

    settings = {"url": source_url, "queues": [queue], "requeue_delay_seconds": 0.1}
    try:
        with _serving(settings, produce, proxy) as feed:
            yield feed
    finally:
        await rabbitmq.delete_queue(url, queue)


def rabbitmq_unreachable(tmp_path: Path) -> Unreachable:
    url = f"amqp://app:Hunter2-secret@127.0.0.1:{free_port()}/"
    settings = {"url": url, "queues": ["q"], "connect_timeout_seconds": 2}
    return Unreachable(settings, secret="Hunter2-secret")


def rabbitmq_id(payload: dict[str, Any]) -> str:
    record_id: str = json.loads(base64.b64decode(payload["data"]))["id"]
    return record_id


# -- ActiveMQ ------------------------------------------------------------------------------


@asynccontextmanager
async def activemq_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    url = fixtures["activemq_url"]
    queue = amq.unique("contract")
    proxy = _proxied(urlsplit(url).port or 61613, proxied)
    source_url = url if proxy is None else f"stomp://127.0.0.1:{proxy.port}"

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        await amq.send(url, queue, [body(record_id, pad) for record_id in ids])

    settings = {"url": source_url, "queues": [queue], "redelivery_delay_seconds": 0.2}
    with _serving(settings, produce, proxy) as feed:
        yield feed


def activemq_unreachable(tmp_path: Path) -> Unreachable:
    url = f"stomp://app:Hunter2-secret@127.0.0.1:{free_port()}"
    return Unreachable({"url": url, "queues": ["q"]}, secret="Hunter2-secret")


def activemq_id(payload: dict[str, Any]) -> str:
    return str(json.loads(base64.b64decode(payload["data"]))["id"])


# -- MQTT ---------------------------------------------------------------------------------


@asynccontextmanager
async def mqtt_feed(
    tmp_path: Path, fixtures: Mapping[str, Any], proxied: bool
) -> AsyncIterator[Feed]:
    url = fixtures["mqtt_url"]
    base = mqtt.unique("contract")
    client_id = mqtt.unique("bridge")
    topics = [f"{base}/#"]
    # The session must exist before anything is published for it to keep.
    await asyncio.to_thread(mqtt.make_session, url, client_id, topics)
    proxy = _proxied(urlsplit(url).port or 1883, proxied)
    source_url = f"mqtt://127.0.0.1:{proxy.port}" if proxy is not None else url

    async def produce(ids: Sequence[str], partition: int, pad: int) -> None:
        messages = [(f"{base}/p{partition}", json.dumps(body(i, pad)).encode()) for i in ids]
        await asyncio.to_thread(mqtt.publish, url, messages)

    settings = {"url": source_url, "topics": topics, "client_id": client_id}
    with _serving(settings, produce, proxy) as feed:
        yield feed


def mqtt_unreachable(tmp_path: Path) -> Unreachable:
    url = f"mqtt://app:Hunter2-secret@127.0.0.1:{free_port()}"
    return Unreachable({"url": url, "topics": ["t/#"], "client_id": "c"}, secret="Hunter2-secret")


# -- the registry -------------------------------------------------------------------------

ONE_SHARD = "moto's DynamoDB streams have a single shard: no other partition to keep flowing"
NO_PAUSE = "the source cannot pause single partitions (can_pause is False)"
OWN_HEARTBEAT = (
    "aiokafka heartbeats from a task of its own: a consumer that is dropped, not closed, "
    "stays in the group until its session times out"
)
NO_PARTIAL_MQ = (
    "Amazon MQ mappings take no ReportBatchItemFailures: a failed batch is retried whole "
    "(esm-reference.md 8, 9)"
)
OPEN_CONNECTION = (
    "a dropped source's connection stays open inside the test process, holding its "
    "messages; a killed daemon's come back (tests/e2e/test_rabbitmq_daemon.py)"
)
ONE_SESSION = "an MQTT session is one partition: there is no other to keep flowing"
NO_SERVER = "a folder has no server to lose; a vanished folder is in test_files_source"

KINDS = (
    Kind(
        "redis-streams",
        "redis-streams",
        redis_feed,
        payload_id=lambda payload: payload["redis"]["fields"]["id"],
        item_identifier=lambda item: item["redis"]["id"],
        unreachable=redis_unreachable,
        batch_info="RedisStreamsBatchInfo",
        partitions=2,
        crash_repeats_settled=(
            "entries are acknowledged (XACK) in the background a moment after they are "
            "settled: a crash before that delivers them again"
        ),
        fixtures=("redis_url",),
    ),
    Kind(
        "kafka",
        "kafka",
        kafka_feed,
        payload_id=kafka_id,
        item_identifier=lambda item: {
            "partition": f"{item['topic']}-{item['partition']}",
            "offset": item["offset"],
        },
        unreachable=kafka_unreachable,
        batch_info="KafkaBatchInfo",
        partitions=2,
        fixtures=("kafka_bootstrap",),
        does_not_apply={"redelivery_after_crash": OWN_HEARTBEAT},
    ),
    Kind(
        "sqs",
        "sqs",
        _sqs_feed(fifo=False),
        payload_id=sqs_id,
        item_identifier=lambda item: item["messageId"],
        unreachable=sqs_unreachable,
        batch_info="SQSBatchInfo",
        ordered=False,
        partial_retry="failed_only",
        failures_to="queue",
        quiet=1.5,
        fixtures=("aws_endpoint",),
        does_not_apply={"pause_resume": NO_PAUSE},
    ),
    Kind(
        "sqs-fifo",
        "sqs",
        _sqs_feed(fifo=True),
        payload_id=sqs_id,
        item_identifier=lambda item: item["messageId"],
        unreachable=sqs_unreachable,
        batch_info="SQSBatchInfo",
        ordered=False,
        partial_retry="failed_only",
        failures_to="queue",
        quiet=1.5,
        fixtures=("aws_endpoint",),
        does_not_apply={"pause_resume": NO_PAUSE},
    ),
    Kind(
        "kinesis",
        "kinesis",
        kinesis_feed,
        payload_id=kinesis_id,
        item_identifier=lambda item: item["kinesis"]["sequenceNumber"],
        unreachable=kinesis_unreachable,
        batch_info="KinesisBatchInfo",
        partitions=2,
        fixtures=("aws_endpoint",),
    ),
    Kind(
        "dynamodb-streams",
        "dynamodb-streams",
        dynamodb_feed,
        payload_id=dynamodb_id,
        item_identifier=lambda item: item["dynamodb"]["SequenceNumber"],
        unreachable=dynamodb_unreachable,
        batch_info="DDBStreamBatchInfo",
        fixtures=("aws_endpoint",),
        does_not_apply={"pause_resume": ONE_SHARD},
    ),
    Kind(
        "files",
        "files",
        files_feed,
        payload_id=files_id,
        item_identifier=lambda item: item["s3"]["object"]["sequencer"],
        unreachable=files_unreachable,
        batch_info="FilesBatchInfo",
        # Every file is a partition of its own: a failed one holds up no other file.
        partial_retry="failed_only",
        does_not_apply={"pause_resume": NO_PAUSE, "server_lost": NO_SERVER},
    ),
    Kind(
        "schedule",
        "schedule",
        schedule_feed,
        payload_id=lambda payload: payload["id"],
        item_identifier=lambda item: item["id"],
        unreachable=schedule_unreachable,
        batch_info="ScheduleBatchInfo",
        does_not_apply=SCHEDULE_CASES,
    ),
    *(
        Kind(
            name,
            "nats",
            _nats_feed(ordered=ordered),
            payload_id=nats_id,
            item_identifier=lambda item: item["messageId"],
            unreachable=nats_unreachable,
            batch_info="JetStreamBatchInfo",
            ordered=False,
            partial_retry="failed_only",
            failures_to="queue",
            fixtures=("nats_url",),
            does_not_apply={"pause_resume": NO_PAUSE},
        )
        for name, ordered in (("nats", False), ("nats-ordered", True))
    ),
    Kind(
        "rabbitmq",
        "rabbitmq",
        rabbitmq_feed,
        payload_id=rabbitmq_id,
        item_identifier=lambda item: None,
        unreachable=rabbitmq_unreachable,
        batch_info="RabbitMQBatchInfo",
        ordered=False,
        failures_to="queue",
        fixtures=("amqp_url",),
        does_not_apply={
            "pause_resume": NO_PAUSE,
            "partial_batch": NO_PARTIAL_MQ,
            "redelivery_after_crash": OPEN_CONNECTION,
        },
    ),
    Kind(
        "activemq",
        "activemq",
        activemq_feed,
        payload_id=activemq_id,
        item_identifier=lambda item: item["messageID"],
        unreachable=activemq_unreachable,
        batch_info="ActiveMQBatchInfo",
        ordered=False,
        partial_retry="failed_only",
        failures_to="queue",
        fixtures=("activemq_url",),
        does_not_apply={
            "pause_resume": NO_PAUSE,
            "partial_batch": "Amazon MQ mappings take no function_response_types: a "
            "failed batch is retried whole (esm-reference.md 2, 8)",
        },
    ),
    Kind(
        "mqtt",
        "mqtt",
        mqtt_feed,
        payload_id=lambda payload: mqtt.payload_of(payload)["id"],
        item_identifier=lambda item: item["messageId"],
        unreachable=mqtt_unreachable,
        batch_info="MqttBatchInfo",
        crash_repeats_settled=(
            "PUBACKs are written by the event loop just after the commit: a crash before "
            "the socket took them delivers those messages again"
        ),
        fixtures=("mqtt_url",),
        does_not_apply={"pause_resume": ONE_SESSION},
    ),
)

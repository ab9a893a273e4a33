"""The stream configs in config/ run as written against real servers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e import aws_helpers as aws
from tests.e2e import kafka_helpers as kafka
from tests.e2e import mqtt_helpers as mqtt
from tests.e2e import rabbitmq_helpers as rabbitmq
from tests.e2e import redis_helpers as rd
from tests.support import REPO, DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


def test_redis_streams_example(tmp_path: Path, redis_url: str) -> None:
    """config/redis-streams.yaml delivers entries to the example handler and sends the
    ones it reports failed to the failure stream."""
    base, _, _ = redis_url.rpartition("/")
    url = f"{base}/7"
    client = rd.client(url)
    client.flushdb()
    daemon = DaemonProcess(
        REPO / "config" / "redis-streams.yaml", workdir(tmp_path), env={"REDIS_URL": url}
    ).start()
    try:
        daemon.wait_ready()
        rd.add(url, "orders", [{"n": 1}, {"n": 2, "fail": True}])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        failed = wait_for(
            lambda: client.xrange("orders-failed"), timeout=40, what="the failure stream"
        )
        document = json.loads(failed[0][1][b"failure"])
        assert rd.redis_bodies(document["payload"]) == [{"n": 2, "fail": True}]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        client.flushdb()
        client.close()


def test_kafka_example(tmp_path: Path, kafka_bootstrap: str) -> None:
    """config/kafka.yaml delivers records to the example handler and produces the ones it
    reports failed to orders-failed, keyed like the original."""
    kafka.create_topic(kafka_bootstrap, "orders", 1)
    kafka.create_topic(kafka_bootstrap, "orders-failed", 1)
    daemon = DaemonProcess(
        REPO / "config" / "kafka.yaml", workdir(tmp_path), env={"KAFKA_BOOTSTRAP": kafka_bootstrap}
    ).start()
    try:
        daemon.wait_ready()
        kafka.produce(kafka_bootstrap, "orders", [(0, {"n": 1}), (0, {"n": 2, "fail": True})])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        [message] = kafka.read_all(kafka_bootstrap, "orders-failed", 1, timeout=60)
        assert message.key == b"2"
        document = json.loads(message.value)
        assert kafka.kafka_bodies(document["payload"]) == [{"n": 2, "fail": True}]
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def aws_env(endpoint: str, **names: str) -> dict[str, str]:
    """The examples leave endpoint_url out: botocore's AWS_ENDPOINT_URL points them at moto."""
    return {"AWS_ENDPOINT_URL": endpoint, **names}


def test_sqs_example(tmp_path: Path, aws_endpoint: str) -> None:
    """config/sqs.yaml delivers messages to the example handler; the one it reports
    failed stays in the queue, received again after the visibility timeout."""
    url, _ = aws.new_queue(aws_endpoint, visibility=30)
    daemon = DaemonProcess(
        REPO / "config" / "sqs.yaml", workdir(tmp_path), env=aws_env(aws_endpoint, QUEUE_URL=url)
    ).start()
    try:
        daemon.wait_ready()
        aws.send(aws_endpoint, url, [{"n": 1}, {"n": 2, "fail": True}])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        wait_for(
            lambda: aws.queue_depth(aws_endpoint, url) == 1, what="only the failed message left"
        )
        assert '"n": 2' not in daemon.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_kinesis_example(tmp_path: Path, aws_endpoint: str) -> None:
    """config/kinesis.yaml prints the records and, after the retries, sends the failing
    one's KinesisBatchInfo record to the failure queue."""
    stream = aws.new_stream(aws_endpoint)
    failed_url, _ = aws.new_queue(aws_endpoint)
    env = aws_env(aws_endpoint, STREAM=stream, FAILURE_QUEUE_URL=failed_url)
    daemon = DaemonProcess(REPO / "config" / "kinesis.yaml", workdir(tmp_path), env=env).start()
    try:
        daemon.wait_ready()
        aws.put_records(aws_endpoint, stream, [{"n": 1}, {"n": 2, "fail": True}], keys=1)
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        [failure] = wait_for(
            lambda: aws.drain(aws_endpoint, failed_url), timeout=60, what="the failure record"
        )
        assert failure["KinesisBatchInfo"]["batchSize"] == 1
        assert failure["requestContext"]["approximateInvokeCount"] == 4
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_dynamodb_streams_example(tmp_path: Path, aws_endpoint: str) -> None:
    """config/dynamodb-streams.yaml prints item changes, keeps positions in its DynamoDB
    table and publishes the failing change's record to SNS."""
    table, _ = aws.new_table(aws_endpoint)
    topic, subscriber = aws.topic_into_queue(aws_endpoint)
    env = aws_env(aws_endpoint, TABLE=table, FAILURE_TOPIC_ARN=topic)
    daemon = DaemonProcess(
        REPO / "config" / "dynamodb-streams.yaml", workdir(tmp_path), env=env
    ).start()
    try:
        daemon.wait_ready()
        aws.put_item(aws_endpoint, table, 1)
        wait_for(lambda: "item-1" in daemon.stdout, what="the handler's output")
        aws.client("dynamodb", aws_endpoint).put_item(
            TableName=table, Item={"pk": {"S": "fail-2"}, "n": {"N": "2"}}
        )
        [envelope] = wait_for(
            lambda: aws.drain(aws_endpoint, subscriber), timeout=60, what="the failure record"
        )
        assert json.loads(envelope["Message"])["DDBStreamBatchInfo"]["batchSize"] == 1
        positions = aws.client("dynamodb", aws_endpoint).scan(TableName="lambda-bridge-positions")[
            "Items"
        ]
        assert positions, "no position saved in the checkpoint table"
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_schedule_example(tmp_path: Path) -> None:
    """config/schedule.yaml, with a heartbeat every second, reaches the example handler
    with the heartbeat's input."""
    daemon = DaemonProcess(
        REPO / "config" / "schedule.yaml", workdir(tmp_path), env={"HEARTBEAT": "rate(1 second)"}
    ).start()
    try:
        daemon.wait_ready(mappings=2)
        wait_for(lambda: "input {'job': 'heartbeat'" in daemon.stdout, what="a heartbeat")
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_nats_example(tmp_path: Path, nats_url: str) -> None:
    """config/nats.yaml makes the stream ORDERS, prints the messages, acknowledges the
    filtered heartbeat without an invocation and nak's the one the handler reports failed,
    which stays unacknowledged for its next delivery."""
    import asyncio

    import nats

    async def on_server(messages: list[tuple[str, bytes]]) -> tuple[int, int]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            for subject, data in messages:
                await js.publish(subject, data)
            info = await js.consumer_info("ORDERS", "orders")
            return info.ack_floor.stream_seq or 0, info.num_redelivered or 0
        finally:
            await client.close()

    async def delete_stream() -> None:
        client = await nats.connect(nats_url)
        try:
            await client.jetstream().delete_stream("ORDERS")
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await client.close()

    asyncio.run(delete_stream())
    daemon = DaemonProcess(
        REPO / "config" / "nats.yaml", workdir(tmp_path), env={"NATS_URL": nats_url}
    ).start()
    try:
        daemon.wait_ready()
        asyncio.run(
            on_server(
                [
                    ("orders.created", b'{"n": 1}'),
                    ("orders.heartbeat", b'{"n": 3}'),
                    ("orders.failing", b'{"n": 2, "fail": true}'),
                ]
            )
        )
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        wait_for(lambda: asyncio.run(on_server([]))[1] >= 1, what="the failed message nak'ed")
        assert asyncio.run(on_server([]))[0] == 2, "the first two are acknowledged"
        assert '"n": 2' not in daemon.stdout and '"n": 3' not in daemon.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        asyncio.run(delete_stream())


def test_rabbitmq_example(tmp_path: Path, amqp_url: str) -> None:
    """config/rabbitmq.yaml prints the messages, acknowledges a filtered one unseen, and
    gets a failing batch again (redelivered) until the failing message is gone."""
    queue = rabbitmq.unique("orders")
    asyncio.run(rabbitmq.declare_queue(amqp_url, queue))
    env = {"AMQP_URL": amqp_url, "RABBITMQ_QUEUE": queue}
    daemon = DaemonProcess(REPO / "config" / "rabbitmq.yaml", workdir(tmp_path), env=env).start()
    try:
        daemon.wait_ready()
        bodies = [{"n": 1, "kind": "order"}, {"n": 2, "kind": "test"}]
        asyncio.run(rabbitmq.publish(amqp_url, queue, [json.dumps(b).encode() for b in bodies]))
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        asyncio.run(rabbitmq.publish(amqp_url, queue, [b'{"n": 3, "kind": "order", "fail": true}']))
        daemon.wait_for_log("batch.failed", count=2)
        assert '"n": 2' not in daemon.stdout
        assert daemon.stop() == 0
        # Stopped: the failing message was never acknowledged and is still there.
        assert asyncio.run(rabbitmq.message_count(amqp_url, queue)) == 1
    finally:
        daemon.kill()
        asyncio.run(rabbitmq.delete_queue(amqp_url, queue))


def test_activemq_example(tmp_path: Path, activemq_url: str) -> None:
    """config/activemq.yaml delivers messages to the example handler, acknowledges the
    ones its filter leaves out, and a failing message ends in the dead-letter queue once
    the broker's redelivery limit is passed."""
    from tests.e2e import activemq_helpers as amq

    queue = amq.unique("orders")
    env = {"ACTIVEMQ_URL": activemq_url, "ACTIVEMQ_QUEUE": queue}
    daemon = DaemonProcess(REPO / "config" / "activemq.yaml", workdir(tmp_path), env=env).start()
    try:
        daemon.wait_ready()
        amq.send_now(activemq_url, queue, [{"n": 1, "status": "new"}, {"n": 3, "status": "test"}])
        wait_for(lambda: '"n": 1' in daemon.stdout, what="the handler's output")
        amq.send_now(activemq_url, queue, [{"n": 2, "status": "new", "fail": True}])
        [dead] = amq.drain_now(activemq_url, f"DLQ.{queue}", 1, timeout=40)
        assert json.loads(dead.body) == {"n": 2, "status": "new", "fail": True}
        assert '"n": 3' not in daemon.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_mqtt_example(tmp_path: Path, mqtt_url: str) -> None:
    """config/mqtt.yaml delivers readings, leaves out the ones its filter excludes, and
    writes the one the handler keeps failing to ./failed-readings."""
    env = {"MQTT_URL": mqtt_url, "MQTT_CLIENT_ID": mqtt.unique("example")}
    daemon = DaemonProcess(REPO / "config" / "mqtt.yaml", workdir(tmp_path), env=env).start()
    try:
        daemon.wait_ready()
        topic = "sensors/hall/temperature"
        mqtt.publish_json(mqtt_url, topic, [{"celsius": 21}, {"celsius": 250}])
        mqtt.publish_json(mqtt_url, "sensors/attic/temperature", [{"celsius": 5, "fail": 1}])
        wait_for(lambda: '{"celsius": 21}' in daemon.stdout, what="the handler's output")
        failures = tmp_path / "failed-readings" / "readings.jsonl"
        [document] = wait_for(lambda: read_jsonl(failures), timeout=40, what="the failure record")
        [item] = document["payload"]["Records"]
        assert mqtt.payload_of(item) == {"celsius": 5, "fail": 1}
        assert "250" not in daemon.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()

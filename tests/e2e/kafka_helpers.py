"""Producing to and inspecting a Kafka-compatible broker from tests."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    asyncio.run(_create(bootstrap, topic, partitions))


async def produce_async(
    bootstrap: str,
    topic: str,
    bodies: Iterable[tuple[int, dict[str, Any]]],
    timestamp_ms: int | None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for partition, body in bodies:
            await producer.send(
                topic,
                json.dumps(body).encode(),
                key=str(body["n"]).encode(),
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        await producer.flush()
    finally:
        await producer.stop()


def produce(
    bootstrap: str,
    topic: str,
    bodies: Iterable[tuple[int, dict[str, Any]]],
    timestamp_ms: int | None = None,
) -> None:
    """Send (partition, body) pairs, keyed by the body's n."""
    asyncio.run(produce_async(bootstrap, topic, list(bodies), timestamp_ms))


def numbered(
    count: int, partitions: int, start: int = 0, **extra: Any
) -> list[tuple[int, dict[str, Any]]]:
    return [(n % partitions, {"n": n, **extra}) for n in range(start, start + count)]


async def _committed(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {
            partition: await consumer.committed(TopicPartition(topic, partition))
            for partition in range(partitions)
        }
    finally:
        await consumer.stop()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    return asyncio.run(_committed(bootstrap, group, topic, partitions))


async def _read_all(bootstrap: str, topic: str, count: int, timeout: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    messages: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    messages.extend(batch)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return messages


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    return asyncio.run(_read_all(bootstrap, topic, count, timeout))


def kafka_bodies(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        json.loads(base64.b64decode(record["value"]))
        for records in event["records"].values()
        for record in records
    ]

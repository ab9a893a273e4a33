"""The `kafka` source and destination against a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.config.plugins import Identity, SourceContext
from bridge.protocols import Source
from bridge.records import FailureCondition, FailureRecord, InvokeResult, Record
from bridge.testing import StandaloneOwnership
from connectors.kafka.config import KafkaSourceConfig
from tests.e2e import kafka_helpers as kafka

Ownership = StandaloneOwnership


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 90))


def source_for(bootstrap: str, topic: str, group: str, tmp_path: Path, **settings: Any) -> Source:
    settings.setdefault("starting_position", "TRIM_HORIZON")
    config = KafkaSourceConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "consumer_group_id": group,
            "heartbeat_interval_seconds": 0.2,
            "session_timeout_seconds": 6,
            **settings,
        }
    )
    context = SourceContext(mapping="m", identity=Identity(), checkpoints=None, state_dir=tmp_path)  # type: ignore[arg-type]
    return config.build(context)


async def read_until(source: Source, count: int, timeout: float = 30) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await source.read())
    return records


def bodies(records: list[Record]) -> list[int]:
    import base64

    return [json.loads(base64.b64decode(record.payload["value"]))["n"] for record in records]


@pytest.fixture
def names() -> tuple[str, str]:
    return kafka.unique("topic"), kafka.unique("group")


def test_commits_follow_the_checkpoint_plus_one(
    kafka_bootstrap: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """Settling commits offset + 1 of each partition's checkpoint record, and only that."""
    topic, group = names
    kafka.create_topic(kafka_bootstrap, topic, 2)
    kafka.produce(kafka_bootstrap, topic, kafka.numbered(10, 2))

    async def main() -> None:
        source = source_for(kafka_bootstrap, topic, group, tmp_path)
        await source.open(Ownership())
        try:
            records = await read_until(source, 10)
            by_partition = {
                record.partition: [r for r in records if r.partition == record.partition]
                for record in records
            }
            checkpoints = {
                partition: group_records[2] for partition, group_records in by_partition.items()
            }
            await source.commit(checkpoints)
            await asyncio.sleep(0.5)
        finally:
            await source.close()

    run(main)
    assert kafka.committed(kafka_bootstrap, group, topic, 2) == {0: 3, 1: 3}


def test_committed_offsets_win_over_the_starting_position(
    kafka_bootstrap: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """A group that already committed resumes there; TRIM_HORIZON only applies to a new group."""
    topic, group = names
    kafka.create_topic(kafka_bootstrap, topic, 1)
    kafka.produce(kafka_bootstrap, topic, kafka.numbered(8, 1))

    async def first() -> None:
        source = source_for(kafka_bootstrap, topic, group, tmp_path)
        await source.open(Ownership())
        try:
            records = await read_until(source, 8)
            await source.commit({records[4].partition: records[4]})
        finally:
            await source.close()

    async def second() -> None:
        source = source_for(kafka_bootstrap, topic, group, tmp_path)
        await source.open(Ownership())
        try:
            assert bodies(await read_until(source, 3)) == [5, 6, 7]
        finally:
            await source.close()

    run(first)
    run(second)


def test_at_timestamp_starts_at_the_first_record_at_or_after_it(
    kafka_bootstrap: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """AT_TIMESTAMP seeks a new group to the first record stamped at or after the time."""
    topic, group = names
    kafka.create_topic(kafka_bootstrap, topic, 1)
    now_ms = int(time.time() * 1000)
    kafka.produce(kafka_bootstrap, topic, kafka.numbered(3, 1), timestamp_ms=now_ms - 600_000)
    kafka.produce(
        kafka_bootstrap, topic, kafka.numbered(3, 1, start=3), timestamp_ms=now_ms - 60_000
    )

    async def main() -> None:
        source = source_for(
            kafka_bootstrap,
            topic,
            group,
            tmp_path,
            starting_position="AT_TIMESTAMP",
            starting_position_timestamp=(now_ms - 120_000) / 1000,
        )
        await source.open(Ownership())
        try:
            assert bodies(await read_until(source, 3)) == [3, 4, 5]
        finally:
            await source.close()

    run(main)


def test_rebalance_revokes_before_committing_what_was_settled(
    kafka_bootstrap: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """When a second member joins, the first is told which partitions it lost (so the
    mapping drops their work) and what it settled for them is committed."""
    topic, group = names
    kafka.create_topic(kafka_bootstrap, topic, 2)
    kafka.produce(kafka_bootstrap, topic, kafka.numbered(8, 2))
    ownership = Ownership()

    async def main() -> None:
        first = source_for(kafka_bootstrap, topic, group, tmp_path)
        await first.open(ownership)
        second = source_for(kafka_bootstrap, topic, group, tmp_path)
        try:
            records = await read_until(first, 8)
            last = {record.partition: record for record in records}
            await first.commit(last)
            joining = asyncio.create_task(second.open(Ownership()))
            deadline = time.monotonic() + 40
            while not ownership.revoked_partitions and time.monotonic() < deadline:
                await first.read()
            await joining
        finally:
            await second.close()
            await first.close()

    run(main)
    assert ownership.revoked_partitions and ownership.revoked_partitions[0] == [
        f"{topic}-0",
        f"{topic}-1",
    ]
    assert kafka.committed(kafka_bootstrap, group, topic, 2) == {0: 4, 1: 4}


def test_kafka_topic_destination_produces_each_failed_record(
    kafka_bootstrap: str, names: tuple[str, str], tmp_path: Path
) -> None:
    """kafka://topic writes one message per failed record, keyed like the original."""
    topic, _ = names
    failures_topic = f"{topic}-failed"
    kafka.create_topic(kafka_bootstrap, failures_topic, 1)
    config = KafkaSourceConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": kafka_bootstrap,
            "topics": [topic],
            "starting_position": "TRIM_HORIZON",
        }
    )
    from connectors.kafka.events import KafkaEventFormatter, KafkaMessage

    formatter = KafkaEventFormatter(kafka_bootstrap)
    records = [
        formatter.record(
            KafkaMessage(
                topic, 0, offset, 1_700_000_000_000, 0, f"key-{offset}".encode(), b'{"n": 1}', []
            )
        )
        for offset in (4, 5)
    ]
    failure = FailureRecord(
        "m",
        FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records,
        2,
        "arn:aws:lambda:us-east-1:000000000000:function:f",
        time.time(),
        InvokeResult(b"{}", "r", "Unhandled"),
    )

    async def main() -> None:
        destination_config = config.destination_for(f"kafka://{failures_topic}")
        assert destination_config is not None
        destination = destination_config.build("d", None)  # type: ignore[arg-type]
        await destination.start()
        try:
            await destination.send(failure, formatter)
        finally:
            await destination.close()

    run(main)
    messages = kafka.read_all(kafka_bootstrap, failures_topic, 2)
    assert [message.key for message in messages] == [b"key-4", b"key-5"]
    documents = [json.loads(message.value) for message in messages]
    assert [document["KafkaBatchInfo"]["recordInfo"]["offset"] for document in documents] == [
        "4",
        "5",
    ]

"""The `dynamodb` checkpoint store against moto in server mode: staged saves, flushes,
sharing between store instances, clearing by prefix, and a source resuming from it.
Tables are unique per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge.config.plugins import BuildContext, Identity, SourceContext
from bridge.testing import StandaloneOwnership
from connectors.dynamodb.checkpoints import (
    DynamoDBCheckpointStore,
    PermanentCheckpointStoreError,
)
from connectors.dynamodb.config import DynamoDBCheckpointStoreConfig
from connectors.kinesis.config import KinesisSourceConfig


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


def store_for(
    endpoint: str, table: str, tmp_path: Path, **settings: Any
) -> DynamoDBCheckpointStore:
    config = DynamoDBCheckpointStoreConfig.model_validate(
        {"type": "dynamodb", "table": table, "endpoint_url": endpoint, **settings}
    )
    store = config.build(BuildContext(Identity(), tmp_path, tmp_path))
    assert isinstance(store, DynamoDBCheckpointStore)
    return store


@pytest.fixture
def table() -> str:
    return f"checkpoints-{uuid.uuid4().hex}"


def test_round_trip_staged_then_flushed(aws_endpoint: str, table: str, tmp_path: Path) -> None:
    """A save is visible to load at once, durable only after flush (another instance
    sees it then); None deletes a partition; namespaces do not mix."""

    async def main() -> None:
        writer = store_for(
            aws_endpoint, table, tmp_path, create_table=True, flush_interval_seconds=60
        )
        reader = store_for(aws_endpoint, table, tmp_path)
        await writer.open()
        await reader.open()
        await writer.save("m|kinesis:a", {"shard-1": "100", "shard-2": "200", "#stream": "arn@1"})
        await writer.save("m|kinesis:b", {"shard-1": "7"})
        assert await writer.load("m|kinesis:a") == {
            "shard-1": "100",
            "shard-2": "200",
            "#stream": "arn@1",
        }
        assert await reader.load("m|kinesis:a") == {}
        await writer.flush()
        assert await reader.load("m|kinesis:a") == {
            "shard-1": "100",
            "shard-2": "200",
            "#stream": "arn@1",
        }
        await writer.save("m|kinesis:a", {"shard-1": "150", "shard-2": None})
        assert await writer.load("m|kinesis:a") == {"shard-1": "150", "#stream": "arn@1"}
        await writer.close()
        assert await reader.load("m|kinesis:a") == {"shard-1": "150", "#stream": "arn@1"}
        assert await reader.load("m|kinesis:b") == {"shard-1": "7"}
        await reader.close()

    run(main)


def test_two_instances_share_state_and_clear_by_prefix(
    aws_endpoint: str, table: str, tmp_path: Path
) -> None:
    """Two daemons' stores on one table: each sees what the other flushed (last write
    wins), and clear() removes every namespace of a mapping, staged ones included, and
    says how many positions it removed."""

    async def main() -> None:
        first = store_for(aws_endpoint, table, tmp_path, create_table=True)
        second = store_for(aws_endpoint, table, tmp_path, create_table=True)
        await first.open()
        await second.open()
        await first.save("orders|kinesis:s", {f"shard-{n}": str(n) for n in range(30)})
        await first.save("other|kinesis:s", {"shard-0": "5"})
        await first.flush()
        await second.save("orders|kinesis:s", {"shard-0": "99"})
        await second.flush()
        loaded = await first.load("orders|kinesis:s")
        assert len(loaded) == 30 and loaded["shard-0"] == "99"
        await second.save("orders|dynamodb-streams:t", {"shard-x": "1"})
        assert await second.clear("orders|") == 31
        assert await first.load("orders|kinesis:s") == {}
        assert await second.load("orders|dynamodb-streams:t") == {}
        assert await first.load("other|kinesis:s") == {"shard-0": "5"}
        await first.close()
        await second.close()

    run(main)


def test_missing_table_without_create_table_is_permanent(
    aws_endpoint: str, table: str, tmp_path: Path
) -> None:
    """Without create_table a missing table fails at open with a hint, not at first save."""

    async def main() -> None:
        store = store_for(aws_endpoint, table, tmp_path)
        with pytest.raises(PermanentCheckpointStoreError, match="create_table: true"):
            await store.open()
        await store.close()

    run(main)


def test_kinesis_source_resumes_from_the_dynamodb_store(
    aws_endpoint: str, table: str, tmp_path: Path
) -> None:
    """A source checkpoints into the DynamoDB store; a new store instance (another daemon)
    and a new source there go on after the settled record."""
    name = f"stream-{uuid.uuid4().hex}"
    client = boto3.client("kinesis", endpoint_url=aws_endpoint, region_name="us-east-1")
    client.create_stream(StreamName=name, ShardCount=1)
    for index in range(5):
        client.put_record(StreamName=name, Data=str(index).encode(), PartitionKey="k")
    config = KinesisSourceConfig.model_validate(
        {
            "type": "kinesis",
            "stream": name,
            "endpoint_url": aws_endpoint,
            "starting_position": "TRIM_HORIZON",
            "poll_interval_seconds": 0.05,
        }
    )

    async def read(store: DynamoDBCheckpointStore, count: int, settle: int) -> list[str]:
        source = config.build(SourceContext("m", Identity(), store, tmp_path))
        await source.open(StandaloneOwnership())
        records: list[Any] = []
        for _ in range(100):
            if len(records) >= count:
                break
            records += await source.read()
        if settle:
            await source.commit({records[0].partition: records[settle - 1]})
        await source.close()
        return [record.payload["kinesis"]["data"] for record in records]

    async def main() -> None:
        first = store_for(aws_endpoint, table, tmp_path, create_table=True)
        await first.open()
        assert len(await read(first, 5, settle=3)) == 5
        await first.close()
        second = store_for(aws_endpoint, table, tmp_path)
        await second.open()
        assert await read(second, 2, settle=0) == ["Mw==", "NA=="]
        await second.close()

    run(main)

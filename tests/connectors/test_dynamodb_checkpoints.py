"""The `dynamodb` checkpoint store against moto in server mode: a missing table, and a
source resuming from it. What every store does (staged saves, flushes, sharing, clearing,
failed writes): tests/contract/test_checkpoint_stores.py. Tables are unique per test."""

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

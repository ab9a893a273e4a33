"""The `dynamodb-streams` source against moto in server mode.

Each test drives the source the way a mapping does (`open()`, `read()` in a loop,
`settle()` with the checkpoints, `close()`). Tables are unique per test and small; idle
shards are polled every 50 ms, so waits are short and no assertion depends on exact
timings. moto's streams have a single shard that never closes: shard lineage is covered
by the Kinesis tests, which share the machinery.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel
from structlog.testing import capture_logs

from bridge.codec import loads
from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.records import Record
from bridge.testing import StandaloneOwnership
from connectors.dynamodb.config import DynamoDBStreamsSourceConfig
from connectors.dynamodb.source import DynamoDBStreamsSource
from tests.connectors.reading import collect, quiet, run, settle


class Harness:
    """A table with a stream, a checkpoint store, and sources that read the stream."""

    def __init__(self, endpoint: str, tmp_path: Path, view: str = "NEW_AND_OLD_IMAGES") -> None:
        self.endpoint = endpoint
        self.tmp_path = tmp_path
        self.name = f"table-{uuid.uuid4().hex}"
        self.client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        self.create(view)
        # No periodic flush: SqliteCheckpointStore.load can miss values a flush is
        # writing at that moment (reported), which would make these tests flaky.
        self.store = SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3", flush_interval=3600)

    def create(self, view: str) -> None:
        self.client.create_table(
            TableName=self.name,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
        )

    @property
    def stream_arn(self) -> str:
        arn: str = self.client.describe_table(TableName=self.name)["Table"]["LatestStreamArn"]
        return arn

    def put(self, item_id: str, **attributes: Any) -> None:
        item = {"id": {"S": item_id}, **{name: {"S": value} for name, value in attributes.items()}}
        self.client.put_item(TableName=self.name, Item=item)

    def delete(self, item_id: str) -> None:
        self.client.delete_item(TableName=self.name, Key={"id": {"S": item_id}})

    def source(self, mapping: str = "changes", **settings: Any) -> DynamoDBStreamsSource:
        settings.setdefault("table", self.name)
        settings.setdefault("starting_position", "TRIM_HORIZON")
        settings.setdefault("poll_interval_seconds", 0.05)
        config = DynamoDBStreamsSourceConfig.model_validate(
            {"type": "dynamodb-streams", "endpoint_url": self.endpoint, **settings}
        )
        context = SourceContext(
            mapping=mapping, identity=Identity(), checkpoints=self.store, state_dir=self.tmp_path
        )
        source = config.build(context)
        assert isinstance(source, DynamoDBStreamsSource)
        return source

    @asynccontextmanager
    async def opened(
        self, mapping: str = "changes", **settings: Any
    ) -> AsyncIterator[DynamoDBStreamsSource]:
        source = self.source(mapping, **settings)
        await source.open(StandaloneOwnership())
        try:
            yield source
        finally:
            await source.close()


@pytest.fixture
def table(aws_endpoint: str, tmp_path: Path) -> Harness:
    return Harness(aws_endpoint, tmp_path)


def names(records: Sequence[Record]) -> list[tuple[str, str]]:
    return [
        (record.payload["eventName"], record.payload["dynamodb"]["Keys"]["id"]["S"])
        for record in records
    ]


def test_insert_modify_remove_with_images_in_lambdas_shape(table: Harness) -> None:
    """Put, update and delete arrive as INSERT, MODIFY and REMOVE in order, with the new
    and old images the view type gives, the stream ARN the service left out, and pass
    the strict Powertools model."""

    async def main() -> None:
        await table.store.open()
        table.put("a", status="created")
        table.put("a", status="shipped")
        table.delete("a")
        async with table.opened() as source:
            assert source.formatter.source_arn == table.stream_arn
            records = await collect(source, 3)
        assert names(records) == [("INSERT", "a"), ("MODIFY", "a"), ("REMOVE", "a")]
        positions = [record.position for record in records]
        assert positions == sorted(positions)
        event = loads(source.formatter.encode_event(records))
        parsed = DynamoDBStreamModel.model_validate(copy.deepcopy(event)).Records
        assert [item.dynamodb.NewImage for item in parsed] == [
            {"id": "a", "status": "created"},
            {"id": "a", "status": "shipped"},
            None,
        ]
        assert [item.dynamodb.OldImage for item in parsed] == [
            None,
            {"id": "a", "status": "created"},
            {"id": "a", "status": "shipped"},
        ]
        for item in event["Records"]:
            assert item["eventSourceARN"] == table.stream_arn
            assert item["eventVersion"] == "1.1" and item["awsRegion"] == "us-east-1"
            assert item["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        await table.store.close()

    run(main)


def test_trim_horizon_and_latest(table: Harness) -> None:
    """TRIM_HORIZON reads the whole stream, LATEST only what comes after it opened.
    (Resuming after what was settled is a case of tests/contract/test_sources.py.)"""

    async def main() -> None:
        await table.store.open()
        table.put("old")
        async with table.opened("latest", starting_position="LATEST") as latest:
            assert await quiet(latest) == []
            table.put("new-1")
            table.put("new-2")
            assert names(await collect(latest, 2)) == [("INSERT", "new-1"), ("INSERT", "new-2")]
        async with table.opened() as horizon:
            records = await collect(horizon, 3)
            assert [key for _, key in names(records)] == ["old", "new-1", "new-2"]
        await table.store.close()

    run(main)


def test_latest_start_survives_a_restart_before_anything_settled(table: Harness) -> None:
    """A LATEST mapping that stops before anything settled reads, after a restart, what
    was written since it first opened (DynamoDB Streams has no AT_TIMESTAMP iterator:
    the shard is read from its start and older records are left out)."""

    async def main() -> None:
        await table.store.open()
        table.put("before")
        await asyncio.sleep(1.05)  # creation times may be whole seconds
        async with table.opened(starting_position="LATEST") as first:
            assert await quiet(first, 0.2) == []
        table.put("while-down")
        async with table.opened(starting_position="LATEST") as second:
            assert names(await collect(second, 1)) == [("INSERT", "while-down")]
            assert await quiet(second, 0.2) == []
        await table.store.close()

    run(main)


def test_new_stream_of_the_table_starts_afresh(table: Harness) -> None:
    """A table deleted and created again has a new stream (a new label): the old
    positions are discarded with a warning, not applied to the new stream, whose
    sequence numbers moto starts from the same value again."""

    async def main() -> None:
        await table.store.open()
        table.put("a")
        table.put("b")
        async with table.opened() as first:
            await settle(first, await collect(first, 2))
        old_arn = table.stream_arn
        table.client.delete_table(TableName=table.name)
        await asyncio.sleep(0.01)
        table.create("KEYS_ONLY")
        assert table.stream_arn != old_arn
        table.put("c")
        with capture_logs() as logs:
            async with table.opened() as second:
                records = await collect(second, 1)
        assert names(records) == [("INSERT", "c")]
        assert "NewImage" not in records[0].payload["dynamodb"]
        assert any(entry["event"] == "stream.changed" for entry in logs)
        await table.store.close()

    run(main)


def test_positions_the_stream_has_trimmed_resume_at_the_oldest_record(table: Harness) -> None:
    """Past the stream's 24 hours, a saved position may point at records that are gone,
    or at a shard that is gone altogether: the mapping reads on from the oldest record
    left (the vanished shard's position is dropped), with a warning and the loss counted,
    instead of stopping for good. The mapping is told records expire after 24 hours.
    (moto keeps records: the positions are set below the oldest record, and for a shard
    it never had, through the checkpoint store.)"""

    async def main() -> None:
        await table.store.open()
        for item in ("a", "b", "c"):
            table.put(item)
        async with table.opened() as first:
            records = await collect(first, 3)
        [shard] = {record.partition for record in records}
        oldest = min(int(record.item_id) for record in records)
        namespace = f"changes|{first.config.source_id()}"
        gone = "shardId-00000000000000000000-deadbeef"
        await table.store.save(namespace, {shard: str(oldest - 1), gone: "1234"})
        ownership = StandaloneOwnership()
        source = table.source()
        with capture_logs() as logs:
            await source.open(ownership)
            try:
                again = await collect(source, 3)
            finally:
                await source.close()
        assert names(again) == names(records)
        assert sorted(ownership.lost) == sorted([shard, gone])
        assert ownership.retention == 24 * 3600
        assert len([entry for entry in logs if entry["event"] == "stream.records_expired"]) == 2
        assert gone not in await table.store.load(namespace)
        await table.store.save(namespace, {shard: "not-a-position"})
        with pytest.raises(PermanentSourceError, match="reset-checkpoints --config CONFIG_FILE"):
            await table.source().open(StandaloneOwnership())
        await table.store.close()

    run(main)


def test_table_without_stream_is_a_permanent_error(aws_endpoint: str, tmp_path: Path) -> None:
    """A table whose stream is not enabled cannot be read: the mapping fails with why."""
    harness = Harness(aws_endpoint, tmp_path)
    name = f"plain-{uuid.uuid4().hex}"
    harness.client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    async def main() -> None:
        source = harness.source(table=name)
        with pytest.raises(PermanentSourceError, match="no stream"):
            await source.open(StandaloneOwnership())
        await source.close()
        missing = harness.source(table=f"missing-{uuid.uuid4().hex}")
        with pytest.raises(PermanentSourceError, match="ResourceNotFoundException"):
            await missing.open(StandaloneOwnership())
        await missing.close()

    run(main)


def test_stream_named_by_arn(table: Harness) -> None:
    """`stream_arn` reads the same stream as `table` would."""

    async def main() -> None:
        await table.store.open()
        table.put("x", colour="red")
        async with table.opened(table=None, stream_arn=table.stream_arn) as source:
            [record] = await collect(source, 1)
        assert record.payload["dynamodb"]["NewImage"] == {"id": {"S": "x"}, "colour": {"S": "red"}}
        await table.store.close()

    run(main)

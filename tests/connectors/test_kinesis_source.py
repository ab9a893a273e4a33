"""The `kinesis` source against moto in server mode.

Each test drives the source the way a mapping does (`open()`, `read()` in a loop,
`settle()` with the checkpoints, `close()`) or runs it inside a MappingRunner. Streams
are unique per test and small; idle shards are polled every 50 ms and the shard list is
refreshed every 100 ms, so waits are short and no assertion depends on exact timings.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from bridge.codec import loads
from bridge.config.plugins import Identity, SourceContext
from bridge.errors import PermanentSourceError
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import Record
from bridge.retry import Backoff
from bridge.testing import ScriptedInvoker, StandaloneOwnership
from connectors.kinesis.config import KinesisSourceConfig
from connectors.kinesis.source import KinesisSource
from connectors.shardstreams.lineage import (
    SHARD_END,
    STREAM_KEY,
    Phase,
    Position,
    ShardInfo,
    ShardState,
)
from tests.connectors.reading import TIMEOUT, collect, quiet, run, settle

FAST = Backoff(initial=0.001, maximum=0.01)


def unique(prefix: str = "stream") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Harness:
    """A stream on the server, a checkpoint store, and sources that read the stream."""

    def __init__(self, endpoint: str, tmp_path: Path, shards: int = 1) -> None:
        self.endpoint = endpoint
        self.tmp_path = tmp_path
        self.name = unique()
        self.client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
        self.create(shards)
        # No periodic flush: SqliteCheckpointStore.load can miss values a flush is
        # writing at that moment (reported), which would make these tests flaky.
        self.store = SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3", flush_interval=3600)

    def create(self, shards: int) -> None:
        self.client.create_stream(StreamName=self.name, ShardCount=shards)
        summary = self.client.describe_stream_summary(StreamName=self.name)
        self.arn = summary["StreamDescriptionSummary"]["StreamARN"]

    def shard_ids(self) -> list[str]:
        return [
            shard["ShardId"] for shard in self.client.list_shards(StreamName=self.name)["Shards"]
        ]

    def put(
        self, count: int, key: Callable[[int], str] = lambda index: f"key-{index}"
    ) -> list[bytes]:
        payloads = [
            f'{{"n": {index}, "id": "{uuid.uuid4().hex}"}}'.encode() for index in range(count)
        ]
        for index, data in enumerate(payloads):
            self.client.put_record(StreamName=self.name, Data=data, PartitionKey=key(index))
        return payloads

    def config(self, **settings: Any) -> KinesisSourceConfig:
        settings.setdefault("starting_position", "TRIM_HORIZON")
        settings.setdefault("poll_interval_seconds", 0.05)
        settings.setdefault("shard_discovery_interval_seconds", 0.1)
        settings.setdefault("stream", self.name)
        return KinesisSourceConfig.model_validate(
            {"type": "kinesis", "endpoint_url": self.endpoint, **settings}
        )

    def context(self, mapping: str = "orders", factor: int = 1) -> SourceContext:
        return SourceContext(
            mapping=mapping,
            identity=Identity(account_id="123456789012"),
            checkpoints=self.store,
            state_dir=self.tmp_path,
            parallelization_factor=factor,
        )

    def source(self, mapping: str = "orders", **settings: Any) -> KinesisSource:
        source = self.config(**settings).build(self.context(mapping))
        assert isinstance(source, KinesisSource)
        return source

    def namespace(self, mapping: str = "orders", **settings: Any) -> str:
        return f"{mapping}|{self.config(**settings).source_id()}"

    @asynccontextmanager
    async def opened(
        self, mapping: str = "orders", **settings: Any
    ) -> AsyncIterator[KinesisSource]:
        source = self.source(mapping, **settings)
        await source.open(StandaloneOwnership())
        try:
            yield source
        finally:
            await source.close()


@pytest.fixture
def stream(aws_endpoint: str, tmp_path: Path) -> Harness:
    return Harness(aws_endpoint, tmp_path)


def data_of(records: Sequence[Record]) -> list[bytes]:
    return [base64.b64decode(record.payload["kinesis"]["data"]) for record in records]


def test_reads_every_shard_in_order_in_lambdas_shape(stream: Harness) -> None:
    """Records of two shards arrive once each, in sequence order per shard, with the
    stream's ARN and region and the default identity ARN; each shard's batch validates
    with the strict Powertools model."""
    stream.client.delete_stream(StreamName=stream.name)
    stream.create(2)

    async def main() -> None:
        await stream.store.open()
        payloads = stream.put(12)
        async with stream.opened() as source:
            assert source.formatter.source_arn == stream.arn
            records = await collect(source, 12)
            assert sorted(data_of(records)) == sorted(payloads)
            by_shard: dict[str, list[Record]] = {}
            for record in records:
                by_shard.setdefault(record.partition, []).append(record)
            assert set(by_shard) == set(stream.shard_ids())
            for shard, items in by_shard.items():
                positions = [record.position for record in items]
                assert positions == sorted(positions) and len(set(positions)) == len(positions)
                event = loads(source.formatter.encode_event(items))
                parsed = KinesisDataStreamModel.model_validate(copy.deepcopy(event))
                for item in parsed.Records:
                    assert item.eventSourceARN == stream.arn
                    assert item.awsRegion == "us-east-1"
                    assert item.invokeIdentityArn == "arn:aws:iam::123456789012:role/lambda-bridge"
                    assert item.eventID == f"{shard}:{item.kinesis.sequenceNumber}"
        await stream.store.close()

    run(main)


def test_trim_horizon_latest_and_at_timestamp(stream: Harness) -> None:
    """TRIM_HORIZON reads the whole shard, LATEST only what arrives after the mapping
    opened, AT_TIMESTAMP what arrived at or after the timestamp."""

    async def main() -> None:
        await stream.store.open()
        old = stream.put(3)
        await asyncio.sleep(0.05)
        middle = time.time()
        await asyncio.sleep(0.05)
        recent = stream.put(2)
        async with stream.opened("latest", starting_position="LATEST") as latest:
            assert await quiet(latest) == []
            newest = stream.put(2)
            assert data_of(await collect(latest, 2)) == newest
        async with stream.opened("horizon") as horizon:
            assert data_of(await collect(horizon, 7)) == old + recent + newest
        async with stream.opened(
            "timestamp", starting_position="AT_TIMESTAMP", starting_position_timestamp=middle
        ) as at_timestamp:
            assert data_of(await collect(at_timestamp, 4)) == recent + newest
            assert await quiet(at_timestamp, 0.2) == []
        await stream.store.close()

    run(main)


def test_latest_start_survives_a_restart_before_anything_settled(stream: Harness) -> None:
    """A LATEST mapping that stops before anything settled starts again from when it
    first opened, so records put in between are delivered, not skipped."""

    async def main() -> None:
        await stream.store.open()
        stream.put(2)
        await asyncio.sleep(0.05)
        async with stream.opened(starting_position="LATEST") as first:
            assert await quiet(first, 0.2) == []
        while_down = stream.put(3)
        async with stream.opened(starting_position="LATEST") as second:
            assert data_of(await collect(second, 3)) == while_down
        await stream.store.close()

    run(main)


def test_an_unreadable_saved_position_is_reported(stream: Harness) -> None:
    """A saved value that is no position at all stops the mapping with
    PermanentSourceError telling how to reset, rather than guessing."""

    async def main() -> None:
        await stream.store.open()
        async with stream.opened():
            pass
        [shard] = stream.shard_ids()
        await stream.store.save(stream.namespace(), {shard: "not-a-position"})
        with pytest.raises(PermanentSourceError, match="unreadable saved position") as raised:
            await stream.source().open(StandaloneOwnership())
        assert "lambda-bridge reset-checkpoints --config" in str(raised.value)
        await stream.store.close()

    run(main)


def test_recreated_stream_does_not_reuse_old_positions(stream: Harness) -> None:
    """A stream deleted and created again under the same name is a new stream: the old
    positions are discarded with a prominent warning and reading starts over (moto
    numbers the new stream's records from 1 again, which the old position would skip)."""

    async def main() -> None:
        await stream.store.open()
        stream.put(3)
        async with stream.opened() as first:
            await settle(first, await collect(first, 3))
        stream.client.delete_stream(StreamName=stream.name)
        await asyncio.sleep(0.01)
        stream.create(1)
        payloads = stream.put(2)
        with capture_logs() as logs:
            async with stream.opened() as second:
                assert data_of(await collect(second, 2)) == payloads
        changed = [entry for entry in logs if entry["event"] == "stream.changed"]
        assert changed and changed[0]["log_level"] == "warning"
        assert "STREAM CHANGED" in changed[0]["message"]
        stored = await stream.store.load(stream.namespace())
        assert stored[STREAM_KEY].startswith(stream.arn)
        await stream.store.close()

    run(main)


def test_error_policy_per_kind(stream: Harness) -> None:
    """Expired iterators are renewed from the last record read; throttling backs the
    shard off without reporting a problem; an outage backs off and is reported; access
    denied stops the mapping."""
    source = stream.source()
    state = ShardState(
        ShardInfo("shardId-000000000000", (), None), Phase.READING, Position("TRIM_HORIZON")
    )
    state.iterator, state.last_read = "iterator", "42"

    def error(code: str, status: int) -> ClientError:
        response: Any = {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, "GetRecords")

    source._fetch_failed(state, error("ExpiredIteratorException", 400), 0.0)
    assert state.iterator is None and state.resume_position().sequence == "42"
    started = time.monotonic()
    source._fetch_failed(state, error("ProvisionedThroughputExceededException", 400), started)
    assert source.problem is None and state.failures == 1
    source._fetch_failed(state, error("InternalFailure", 500), started)
    assert source.problem is not None and state.failures == 2
    with pytest.raises(PermanentSourceError, match="AccessDenied"):
        source._fetch_failed(state, error("AccessDeniedException", 400), started)


def test_parallelization_factor_keeps_each_partition_key_in_order(stream: Harness) -> None:
    """Through the real pipeline with parallelization_factor 3: batches of one shard run
    in several lanes, each holding the keys that hash to it, every key's records arrive
    in order and once, and the shard is checkpointed at its last record."""
    keys = [f"device-{index % 6}" for index in range(36)]

    async def main() -> None:
        await stream.store.open()
        stream.put(36, key=lambda index: keys[index])
        config = stream.config()
        context = stream.context("parallel", factor=3)
        invoker = ScriptedInvoker()
        runner = MappingRunner(
            name="parallel",
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
            settings=MappingSettings(
                batch=BatchPolicy(max_records=4),
                retry=RetryPolicy(backoff=FAST),
                parallelization_factor=3,
                maximum_concurrency=1,
            ),
            source_factory=lambda: config.build(context),
            invoker=invoker,
            destination=None,
            reconnect_backoff=FAST,
        )
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + TIMEOUT
        while sum(len(event["Records"]) for event in invoker.events) < 36:
            assert time.monotonic() < deadline, "records did not all arrive"
            await asyncio.sleep(0.01)
        runner.stop()
        await asyncio.wait_for(task, 5)
        delivered: dict[str, list[int]] = {}
        lanes_seen: set[int] = set()
        for event in invoker.events:
            lanes = {
                zlib.crc32(item["kinesis"]["partitionKey"].encode()) % 3
                for item in event["Records"]
            }
            assert len(lanes) == 1, "a batch mixed lanes"
            lanes_seen |= lanes
            for item in event["Records"]:
                delivered.setdefault(item["kinesis"]["partitionKey"], []).append(
                    int(item["kinesis"]["sequenceNumber"])
                )
        assert len(lanes_seen) > 1
        assert sum(map(len, delivered.values())) == 36
        for sequence in delivered.values():
            assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
        [shard] = stream.shard_ids()
        last = max(max(sequence) for sequence in delivered.values())
        assert (await stream.store.load(f"parallel|{config.source_id()}"))[shard] == str(last)
        await stream.store.close()

    run(main)


# -- resharding ---------------------------------------------------------------------------
#
# moto never routes new records to the children of a split (its closed parent still
# covers their hash keys), but after MergeShards a PutRecord whose ExplicitHashKey is
# the first parent's ending hash key lands in the child. moto also copies the parents'
# records into the merged child, which Kinesis does not: the test compares what the
# source delivered for the child with what GetRecords says the child holds.


def child_contents(stream: Harness, shard_id: str) -> list[bytes]:
    iterator = stream.client.get_shard_iterator(
        StreamName=stream.name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [
        record["Data"] for record in stream.client.get_records(ShardIterator=iterator)["Records"]
    ]


def test_a_merged_child_is_read_only_after_both_parents_are_settled(
    aws_endpoint: str, tmp_path: Path
) -> None:
    """After a merge, both parents are read to their end first; the child starts only
    once every record of both parents is settled, the parents are then saved as finished
    and never read again, and nothing of any shard is lost or repeated."""
    stream = Harness(aws_endpoint, tmp_path, shards=2)
    listed = stream.client.list_shards(StreamName=stream.name)["Shards"]
    parents = [shard["ShardId"] for shard in listed]
    first_end = listed[0]["HashKeyRange"]["EndingHashKey"]
    second_start = listed[1]["HashKeyRange"]["StartingHashKey"]

    def put(hash_key: str, items: list[bytes]) -> None:
        for data in items:
            stream.client.put_record(
                StreamName=stream.name, Data=data, PartitionKey="k", ExplicitHashKey=hash_key
            )

    async def main() -> None:
        await stream.store.open()
        parent_payloads = {parents[0]: [b"p0-0", b"p0-1"], parents[1]: [b"p1-0", b"p1-1"]}
        put("0", parent_payloads[parents[0]])
        put(second_start, parent_payloads[parents[1]])
        async with stream.opened() as source:
            read = await collect(source, 4)
            for parent, payloads in parent_payloads.items():
                assert data_of([r for r in read if r.partition == parent]) == payloads
            stream.client.merge_shards(
                StreamName=stream.name,
                ShardToMerge=parents[0],
                AdjacentShardToMerge=parents[1],
            )
            [child] = [shard for shard in stream.shard_ids() if shard not in parents]
            put(first_end, [b"c-0", b"c-1"])
            assert await quiet(source) == []
            assert {source.phases()[parent] for parent in parents} == {Phase.DRAINED}
            assert source.phases()[child] is Phase.WAITING
            await settle(source, [r for r in read if r.partition == parents[0]])
            assert await quiet(source, 0.2) == []
            assert source.phases()[parents[0]] is Phase.FINISHED
            assert source.phases()[child] is Phase.WAITING
            await settle(source, [r for r in read if r.partition == parents[1]])
            assert source.phases()[parents[1]] is Phase.FINISHED
            expected = child_contents(stream, child)
            assert expected[-2:] == [b"c-0", b"c-1"]
            from_child = await collect(source, len(expected))
            assert {r.partition for r in from_child} == {child}
            assert data_of(from_child) == expected
            await settle(source, from_child)
            assert await quiet(source, 0.2) == []
        stored = await stream.store.load(stream.namespace())
        assert {stored[parent] for parent in parents} == {SHARD_END}
        async with stream.opened() as again:
            assert await quiet(again, 0.3) == []
            assert {again.phases()[parent] for parent in parents} == {Phase.FINISHED}
        await stream.store.close()

    run(main)


def test_stream_named_by_arn(stream: Harness) -> None:
    """`stream` may be the stream's ARN: every call then names the stream by ARN and the
    records carry it as eventSourceARN."""

    async def main() -> None:
        await stream.store.open()
        payloads = stream.put(3)
        async with stream.opened(stream=stream.arn) as source:
            records = await collect(source, 3)
        assert data_of(records) == payloads
        assert {record.payload["eventSourceARN"] for record in records} == {stream.arn}
        await stream.store.close()

    run(main)


def test_a_checkpoint_older_than_the_trim_horizon_resumes_at_the_oldest_record(
    stream: Harness,
) -> None:
    """Kinesis would take a trimmed sequence number and go on from the oldest record left
    without a word: the source compares the two, says so (a warning, and the mapping is
    told records were lost to retention) and reads on from the oldest record, instead of
    stopping for good. (moto keeps records forever: the saved position is set below the
    oldest record through the checkpoint store, as if what came after it had expired.)"""
    [shard_id] = stream.shard_ids()

    async def main() -> None:
        await stream.store.open()
        payloads = stream.put(6)
        async with stream.opened() as first:
            records = await collect(first, 6)
            await settle(first, records[:2])
        oldest = min(int(record.item_id) for record in records)
        await stream.store.save(stream.namespace(), {shard_id: str(oldest - 1)})
        ownership = StandaloneOwnership()
        source = stream.source()
        with capture_logs() as logs:
            await source.open(ownership)
            try:
                again = await collect(source, 6)
            finally:
                await source.close()
        assert data_of(again) == payloads
        assert ownership.lost == [shard_id]
        assert ownership.retention == 24 * 3600
        [warning] = [entry for entry in logs if entry["event"] == "stream.records_expired"]
        assert warning["shard"] == shard_id and warning["oldest_sequence"] == str(oldest)
        await stream.store.close()

    run(main)


def test_a_saved_shard_the_stream_no_longer_has_is_forgotten_with_a_warning(
    stream: Harness,
) -> None:
    """A shard that expired altogether (the daemon was down past the retention after a
    reshard) cannot be read by anyone: its position is dropped with a warning and the
    mapping reads on."""

    async def main() -> None:
        await stream.store.open()
        async with stream.opened() as first:
            await quiet(first, 0.1)
        await stream.store.save(stream.namespace(), {"shardId-000000000099": "123"})
        ownership = StandaloneOwnership()
        source = stream.source()
        await source.open(ownership)
        await source.close()
        assert ownership.lost == ["shardId-000000000099"]
        assert "shardId-000000000099" not in await stream.store.load(stream.namespace())
        await stream.store.close()

    run(main)

"""Kinesis: client-side CPU of lambda-bridge against a raw aioboto3 GetRecords loop, on the
same moto server, in one run.

moto is far too slow for wall-clock throughput figures (testing.md), so this measures
CPU seconds of this process (time.process_time, all threads) per 1,000 records:
- raw: GetShardIterator + GetRecords on every shard until every record was read, doing
  nothing with them (botocore's parsing is the floor any consumer pays);
- raw, epoch timestamps: the same with the client setting the bridge uses (timestamps
  parsed to epoch seconds rather than datetimes), which isolates the pipeline's cost;
- bridge: the real mapping worker with the `kinesis` source (batch size 100, batching
  window 0), the SQLite checkpoint store and an in-process no-op function
  (bridge.testing.NoopInvoker), until every record is settled.
Rounds alternate and the best of each is kept; the target is a ratio of at most 1.5.

    python tests/bench/kinesis_cpu.py [--records N] [--shards S] [--rounds R]

Without AWS_ENDPOINT_URL it starts its own moto_server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.plugins import Identity, SourceContext
from bridge.ops import logs
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.testing import NoopInvoker
from connectors.aws.client import aws_client
from connectors.kinesis.config import KinesisSourceConfig
from connectors.shardstreams.sdk import parse_timestamps_as_epoch
from tests import services

BATCH = 100
DATA = b"x" * 100
PUT_CHUNK = 500


def create_stream(endpoint: str, shards: int, count: int) -> str:
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"bench-{uuid.uuid4().hex}"
    client.create_stream(StreamName=name, ShardCount=shards)
    for start in range(0, count, PUT_CHUNK):
        entries = [
            {"Data": DATA, "PartitionKey": f"key-{index}"}
            for index in range(start, min(start + PUT_CHUNK, count))
        ]
        client.put_records(StreamName=name, Records=entries)
    return name


def config_for(endpoint: str, stream: str) -> KinesisSourceConfig:
    return KinesisSourceConfig.model_validate(
        {
            "type": "kinesis",
            "stream": stream,
            "endpoint_url": endpoint,
            "starting_position": "TRIM_HORIZON",
        }
    )


async def raw_loop(endpoint: str, stream: str, count: int, epoch: bool = False) -> float:
    """CPU seconds of reading every record with bare GetRecords calls; with `epoch` the
    client gives timestamps as epoch seconds, as the bridge's own client does."""
    config = config_for(endpoint, stream)
    # From nothing, as the bridge's run is: making the client costs tens of milliseconds.
    started = time.process_time()
    async with aws_client(config, "kinesis", "us-east-1") as client:
        if epoch:
            parse_timestamps_as_epoch(client)
        shards = (await client.list_shards(StreamName=stream))["Shards"]
        seen = 0
        for shard in shards:
            iterator = (
                await client.get_shard_iterator(
                    StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                response = await client.get_records(ShardIterator=iterator, Limit=10_000)
                seen += len(response["Records"])
                if not response["Records"]:
                    break
                iterator = response.get("NextShardIterator")
    cpu = time.process_time() - started
    assert seen == count, f"raw loop read {seen} of {count}"
    return cpu


async def through_bridge(endpoint: str, stream: str, count: int, workdir: Path) -> float:
    """CPU seconds of the whole pipeline delivering every record and settling it."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = SqliteCheckpointStore(workdir / "checkpoints.sqlite3")
    await store.open()
    config = config_for(endpoint, stream)
    context = SourceContext("bench", Identity(), store, workdir, batch_size=BATCH)
    done = asyncio.Event()

    def build_source() -> Any:
        source = config.build(context)
        original = source.commit

        async def commit_then_check(positions: Any) -> None:
            await original(positions)
            if runner.metrics.succeeded >= count:
                done.set()

        source.commit = commit_then_check  # type: ignore[method-assign]
        return source

    runner = MappingRunner(
        name="bench",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:noop",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=BATCH),
            retry=RetryPolicy(),
            parallelization_factor=1,
            maximum_concurrency=1,
        ),
        source_factory=build_source,
        invoker=NoopInvoker(),
        destination=None,
    )
    started = time.process_time()
    task = asyncio.create_task(runner.run())
    try:
        await done.wait()
        return time.process_time() - started
    finally:
        runner.stop()
        await task
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs.configure("warning")
    os.environ.update(
        {key: os.environ.get(key, value) for key, value in services.AWS_TEST_ENV.items()}
    )
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            server = services.moto_server(workdir / "moto")
            stack.callback(server.stop)
            endpoint = f"http://127.0.0.1:{server.port}"
        stream = create_stream(endpoint, args.shards, args.records)
        raw_runs, epoch_runs, bridge_runs = [], [], []
        for round_number in range(args.rounds):
            raw_runs.append(await raw_loop(endpoint, stream, args.records))
            epoch_runs.append(await raw_loop(endpoint, stream, args.records, epoch=True))
            bridge_runs.append(
                await through_bridge(
                    endpoint, stream, args.records, workdir / f"round{round_number}"
                )
            )
        per_thousand = 1000 / args.records
        raw, bridged = min(raw_runs) * per_thousand, min(bridge_runs) * per_thousand
        epoch = min(epoch_runs) * per_thousand
        print(
            f"records: {args.records:,} (100-byte data, {args.shards} shards), batch size {BATCH}, "
            f"best of {args.rounds}, CPU seconds of this process per 1,000 records"
        )
        print(f"raw aioboto3 GetRecords loop:               {raw * 1000:8.2f} ms")
        print(f"raw loop, timestamps as epoch seconds:      {epoch * 1000:8.2f} ms")
        print(f"lambda-bridge, in-process no-op function:   {bridged * 1000:8.2f} ms")
        print(f"ratio bridge / raw: {bridged / raw:.2f} (target <= 1.5)")
        print(f"ratio bridge / raw with the same client setting: {bridged / epoch:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

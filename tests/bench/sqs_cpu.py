"""SQS: the bridge's CPU per 1,000 messages against a raw aioboto3 loop, same moto, same run.

moto gets slower as a queue grows and its pace varies (testing.md), so wall-clock
throughput says little about the bridge. This measures what the bridge costs on the
client side instead: CPU seconds of this process (time.process_time; moto and the
producer run in other processes) per 1,000 messages delivered, over interleaved rounds,
each on a fresh queue that a producer process keeps between 50 and 100 messages deep:
- raw: ReceiveMessage (10 messages, all attributes, long polling) + DeleteMessageBatch of
  what it received, one after the other;
- bridge: the real mapping worker in this process with the `sqs` source (batch size 10,
  batching window 0) and an in-process no-op function (bridge.testing.NoopInvoker),
  until that many messages are settled (deleted).
It prints both, the ratio bridge / raw (target: at most 1.5) and, for information only,
the wall-clock rates.

    python tests/bench/sqs_cpu.py [--messages N] [--rounds R]

Without AWS_ENDPOINT_URL it starts a moto_server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aioboto3
import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.plugins import QUEUE, Identity, SourceContext
from bridge.ops import logs
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import Record
from bridge.testing import NoopInvoker
from connectors.sqs.config import SqsSourceConfig
from tests import services

REGION = "us-east-1"
BATCH = 10
BODY = "x" * 100
LOW_WATER, HIGH_WATER = 50, 100


def keep_topped_up(endpoint: str, url: str, stop: Any) -> None:
    """Producer process: keep the queue between LOW_WATER and HIGH_WATER visible messages."""
    client = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    sent = 0
    while not stop.is_set():
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        depth = int(attributes["ApproximateNumberOfMessages"])
        if depth >= LOW_WATER:
            time.sleep(0.02)
            continue
        for _ in range((HIGH_WATER - depth) // BATCH):
            entries = [{"Id": str(index), "MessageBody": BODY} for index in range(BATCH)]
            client.send_message_batch(QueueUrl=url, Entries=entries)
            sent += BATCH


class Producer:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.url = ""
        self._stop = multiprocessing.get_context("spawn").Event()
        self._process: Any = None

    def __enter__(self) -> Producer:
        client = boto3.client("sqs", endpoint_url=self.endpoint, region_name=REGION)
        self.url = client.create_queue(QueueName=f"bench-{uuid.uuid4().hex}")["QueueUrl"]
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=keep_topped_up, args=(self.endpoint, self.url, self._stop), daemon=True
        )
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(10)
        boto3.client("sqs", endpoint_url=self.endpoint, region_name=REGION).delete_queue(
            QueueUrl=self.url
        )


async def raw_loop(endpoint: str, url: str, count: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to receive and delete `count` messages."""
    session = aioboto3.Session()
    async with session.client("sqs", endpoint_url=endpoint, region_name=REGION) as client:
        done = 0
        cpu = wall = 0.0
        while done < count:
            reply = await client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=BATCH,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=20,
            )
            messages = reply.get("Messages", [])
            if not messages:
                continue
            if not cpu:
                cpu, wall = time.process_time(), time.perf_counter()
            await client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )
            done += len(messages)
        return time.process_time() - cpu, time.perf_counter() - wall


async def through_bridge(endpoint: str, url: str, count: int, workdir: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for the mapping worker to settle `count` messages."""
    config = SqsSourceConfig.model_validate(
        {"type": "sqs", "queue_url": url, "endpoint_url": endpoint}
    )
    context = SourceContext(
        mapping="bench",
        identity=Identity(),
        checkpoints=None,  # type: ignore[arg-type]
        state_dir=workdir,
        batch_size=BATCH,
        function_timeout=3.0,
    )
    settled = 0
    cpu = wall = 0.0
    done = asyncio.Event()

    def build_source() -> Any:
        source = config.build(context)
        original = source.acknowledge

        async def counting_acknowledge(records: Sequence[Record]) -> None:
            nonlocal settled, cpu, wall
            if not cpu:
                cpu, wall = time.process_time(), time.perf_counter()
            await original(records)
            settled += len(records)
            if settled >= count:
                done.set()

        source.acknowledge = counting_acknowledge  # type: ignore[method-assign]
        return source

    runner = MappingRunner(
        name="bench",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:noop",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=BATCH),
            retry=RetryPolicy(),
            parallelization_factor=1,
            maximum_concurrency=QUEUE.concurrency_default,
        ),
        source_factory=build_source,
        invoker=NoopInvoker(),
        destination=None,
    )
    task = asyncio.create_task(runner.run())
    try:
        await done.wait()
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        runner.stop()
        await task


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs.configure("warning")
    os.environ.update(services.AWS_TEST_ENV)
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            server = services.moto_server(workdir / "moto")
            stack.callback(server.stop)
            endpoint = f"http://127.0.0.1:{server.port}"
        raw_runs: list[tuple[float, float]] = []
        bridge_runs: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            with Producer(endpoint) as producer:
                raw_runs.append(await raw_loop(endpoint, producer.url, args.messages))
            with Producer(endpoint) as producer:
                bridge_runs.append(
                    await through_bridge(endpoint, producer.url, args.messages, workdir)
                )
        per_thousand = 1000 / args.messages
        raw_cpu = statistics.median(cpu for cpu, _ in raw_runs) * per_thousand
        bridge_cpu = statistics.median(cpu for cpu, _ in bridge_runs) * per_thousand
        raw_wall = statistics.median(wall for _, wall in raw_runs)
        bridge_wall = statistics.median(wall for _, wall in bridge_runs)
        print(
            f"messages: {args.messages:,} per run (100-byte bodies), batch size {BATCH}, "
            f"queue kept {LOW_WATER}-{HIGH_WATER} deep, median of {args.rounds} rounds"
        )
        print(f"raw aioboto3 receive+delete: {raw_cpu:.3f} CPU s per 1,000 messages")
        print(f"lambda-bridge, no-op function: {bridge_cpu:.3f} CPU s per 1,000 messages")
        print(f"ratio bridge / raw: {bridge_cpu / raw_cpu:.2f} (target <= 1.5)")
        print(
            f"wall clock (moto-bound, for information): raw {args.messages / raw_wall:,.0f} msg/s, "
            f"bridge {args.messages / bridge_wall:,.0f} msg/s"
        )


if __name__ == "__main__":
    asyncio.run(main())

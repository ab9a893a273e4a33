"""NATS JetStream: lambda-bridge against a raw nats-py loop, on the same server, in one run.

Publishes N messages (100-byte bodies) into one stream, then times, over interleaved
rounds, each with a fresh durable pull consumer reading the whole stream:
- by hand, the baseline: what a careful user writes with the same client doing the same
  work: fetch (batch 100), the same Lambda-format event built as dicts, the Python no-op
  function called with it, every message acknowledged and the acknowledgements confirmed
  by one flush per batch; timed from the first record handled to the last;
- the old baseline: fetch + ack alone, doing nothing with the messages;
- bridge: the real mapping worker with the `nats` source (batch size 100, window 0) until
  every message is settled, once with a Python no-op handler and once with an in-process
  no-op function (bridge.testing.NoopInvoker).
It also measures latency at ~100 messages/s: time from publish to handler entry.

    python tests/bench/nats_throughput.py [--records N] [--url nats://...]

Without --url (or NATS_URL) it starts a nats-server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from tests import services
from tests.bench.harness import (
    NOOP,
    compare_with_hand_written,
    noop_handler,
    percentiles,
    run_source,
)

BATCH = 100
VALUE = b"x" * 100
STAMP = """
import base64, json, os, time
OUT = os.environ["LATENCY_FILE"]

def handler(event, context):
    now = time.time()
    with open(OUT, "a") as out:
        for record in event["Records"]:
            sent = json.loads(base64.b64decode(record["data"]))["sent"]
            out.write(f"{now - sent}\\n")
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def nats_url(given: str | None, workdir: Path, stack: contextlib.ExitStack) -> str:
    if given:
        return given
    server = services.nats_server(workdir / "nats")
    stack.callback(server.stop)
    return f"nats://127.0.0.1:{server.port}"


async def fill(url: str, stream: str, count: int) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for start in range(0, count, 1000):
            futures = [
                await js.publish_async(f"{stream}.orders", VALUE)
                for _ in range(start, min(start + 1000, count))
            ]
            await asyncio.gather(*futures)
    finally:
        await client.close()


async def subscription(js: Any, stream: str) -> Any:
    consumer = unique("hand")
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=consumer, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=BATCH * 5
        ),
    )
    return await js.pull_subscribe_bind(consumer=consumer, stream=stream)


async def raw_loop(url: str, stream: str, count: int) -> float:
    client = await nats.connect(url)
    try:
        pull = await subscription(client.jetstream(), stream)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            messages = await pull.fetch(BATCH, timeout=1)
            for message in messages:
                await message.ack()
            seen += len(messages)
        await client.flush()
        return time.perf_counter() - started
    finally:
        await client.close()


async def handled_loop(url: str, stream: str, count: int) -> float:
    """What a careful user writes by hand with the same client: fetch with the same batch
    size, the same Lambda-format event built as dicts, the function called with it, the
    messages acknowledged and the acknowledgements confirmed with one flush. Timed from the
    first record handled to the last."""
    handler = noop_handler()
    client = await nats.connect(url)
    server = url.split("://", 1)[1].rsplit("@", 1)[-1]
    try:
        pull = await subscription(client.jetstream(), stream)
        arn = f"nats://{server}/{stream}/hand"
        seen = 0
        started = 0.0
        while seen < count:
            try:
                messages = await pull.fetch(BATCH, timeout=1)
            except TimeoutError:
                continue
            records = []
            for message in messages:
                metadata = message.metadata
                sequence = metadata.sequence.stream
                records.append(
                    {
                        "messageId": f"{stream}:{sequence}",
                        "subject": message.subject,
                        "data": base64.b64encode(message.data).decode("ascii"),
                        "headers": dict(message.headers or {}),
                        "stream": stream,
                        "consumer": "hand",
                        "streamSequence": sequence,
                        "consumerSequence": metadata.sequence.consumer,
                        "numDelivered": metadata.num_delivered,
                        "numPending": metadata.num_pending,
                        "timestamp": int(metadata.timestamp.timestamp() * 1000),
                        "eventSource": "nats:jetstream",
                        "eventSourceARN": arn,
                        "awsRegion": "us-east-1",
                    }
                )
            handler({"Records": records}, None)
            if not started:
                started = time.perf_counter()
            for message in messages:
                await message.ack()
            await client.flush()
            seen += len(records)
        return time.perf_counter() - started
    finally:
        await client.close()


async def through_bridge(
    workdir: Path,
    url: str,
    stream: str,
    count: int,
    handler: str = NOOP,
    in_memory_function: bool = False,
    until: Any = None,
) -> float:
    return await run_source(
        workdir,
        f"{{type: nats, url: '{url}', stream: {stream}, consumer: {unique('bridge')}, fetch_wait_seconds: 0.05}}",
        count,
        batch_size=BATCH,
        handler=handler,
        in_memory_function=in_memory_function,
        until=until,
    )


async def latency(workdir: Path, url: str) -> list[float]:
    stream = unique("latency")
    out = workdir / "latency.txt"
    os.environ["LATENCY_FILE"] = str(out)
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])

    async def send_slowly() -> None:
        await asyncio.sleep(2)
        for _ in range(500):
            await js.publish(f"{stream}.x", json.dumps({"sent": time.time()}).encode())
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)

    try:
        await through_bridge(workdir, url, stream, 0, handler=STAMP, until=send_slowly())
    finally:
        await client.close()
    return sorted(float(line) for line in out.read_text().split())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("NATS_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = nats_url(args.url, workdir, stack)
        stream = unique("bench")
        await fill(url, stream, args.records)
        count = args.records
        print(
            f"messages: {count:,} (100-byte bodies, one stream), batch size {BATCH}, "
            f"best of {args.rounds}"
        )
        await compare_with_hand_written(
            count,
            args.rounds,
            hand=(
                "event built, function called, acks flushed per batch",
                lambda _: handled_loop(url, stream, count),
            ),
            old=("fetch+ack alone", lambda _: raw_loop(url, stream, count)),
            bridge=lambda number: through_bridge(workdir / f"py{number}", url, stream, count),
            noop=lambda number: through_bridge(
                workdir / f"noop{number}", url, stream, count, in_memory_function=True
            ),
        )
        samples = await latency(workdir / "latency", url)
        print(
            f"latency at ~100 records/s, window 0 ({len(samples)} records): {percentiles(samples)}"
        )


if __name__ == "__main__":
    asyncio.run(main())

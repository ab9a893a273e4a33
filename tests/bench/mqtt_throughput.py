"""MQTT: lambda-bridge against a hand-written paho-mqtt loop, on the same Mosquitto, in one run.

Each timed run drains N messages (100-byte payloads, QoS 1) that were published into a
fresh persistent session while nobody was connected, so every path reads the same
backlog. Over interleaved rounds it times:
- by hand, the baseline: what a careful user writes with paho-mqtt 2 (the library the
  bridge uses): the threaded network loop, manual acknowledgement, the same Receive
  Maximum; batches of 100 built into the same `Records` event as dicts, the Python
  no-op function called with each, then every message of the batch acknowledged;
  timed from the first message handled to the last;
- the old baseline: the same loop acknowledging each message as it arrives, doing
  nothing with it;
- bridge: the real mapping worker with the `mqtt` source (batch size 100, window 0)
  until every message is settled, once with a Python no-op handler and once with an
  in-process no-op function (bridge.testing.NoopInvoker).
It also measures latency at ~100 messages/s: time from PUBLISH to handler entry,
p50/p99/p999.

    python tests/bench/mqtt_throughput.py [--records N] [--url mqtt://...]

Without --url (or MQTT_URL) it starts a mosquitto of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import queue
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
from tests.e2e import mqtt_helpers as mqtt

BATCH = 100
# The bridge's default Receive Maximum for batches of 100 in one lane.
RECEIVE_MAXIMUM = 1000
PAYLOAD = b"x" * 100
STAMP = """
import base64, os, time
OUT = os.environ["LATENCY_FILE"]

def handler(event, context):
    now = time.time()
    with open(OUT, "a") as out:
        for record in event["Records"]:
            out.write(f"{now - float(base64.b64decode(record['payload']))}\\n")
"""


def backlog(url: str, count: int) -> tuple[str, str]:
    """A fresh session (client id, topic filter) with `count` messages waiting in it."""
    client_id, topic = mqtt.unique("bench"), mqtt.unique("bench")
    mqtt.make_session(url, client_id, [f"{topic}/#"])
    for start in range(0, count, 5000):
        mqtt.publish(url, [(f"{topic}/data", PAYLOAD)] * min(5000, count - start))
    return client_id, f"{topic}/#"


def hand_loop(url: str, client_id: str, topic: str, count: int, *, handle: bool) -> float:
    """paho's threaded loop hands messages over a queue; the main thread batches them,
    builds the event, calls the function, and acknowledges the batch (`handle`), or only
    acknowledges each message (not `handle`)."""
    handler = noop_handler()
    parts = urlsplit(url)
    broker = f"mqtt://{parts.hostname}:{parts.port}"
    connection = uuid.uuid4().hex[:12]
    arrived: queue.SimpleQueue[paho.MQTTMessage] = queue.SimpleQueue()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )
    client.on_message = lambda _client, _userdata, message: arrived.put(message)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0xFFFFFFFF
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(
        parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=False, properties=properties
    )
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        seen = 0
        started = 0.0
        while seen < count:
            batch = [arrived.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(arrived.get_nowait())
                except queue.Empty:
                    break
            if handle:
                records = [
                    {
                        "eventSource": "mqtt",
                        "eventSourceARN": broker,
                        "clientId": client_id,
                        "messageId": f"{connection}-{seen + index + 1}",
                        "topic": message.topic,
                        "qos": message.qos,
                        "retain": bool(message.retain),
                        "dup": bool(message.dup),
                        "payload": base64.b64encode(message.payload).decode(),
                        "timestamp": int(time.time() * 1000),
                        "properties": {},
                    }
                    for index, message in enumerate(batch)
                ]
                handler({"Records": records}, None)
            if not started:
                started = time.perf_counter()
            for message in batch:
                client.ack(message.mid, message.qos)
            seen += len(batch)
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


async def through_bridge(
    workdir: Path,
    url: str,
    client_id: str,
    topic: str,
    count: int,
    handler: str = NOOP,
    in_memory_function: bool = False,
    until: Any = None,
) -> float:
    return await run_source(
        workdir,
        f"{{type: mqtt, url: '{url}', topics: ['{topic}'], client_id: {client_id}}}",
        count,
        batch_size=BATCH,
        handler=handler,
        in_memory_function=in_memory_function,
        until=until,
    )


async def latency(workdir: Path, url: str) -> list[float]:
    client_id, topic = await asyncio.to_thread(backlog, url, 0)
    out = workdir / "latency.txt"
    os.environ["LATENCY_FILE"] = str(out)

    def send_slowly() -> None:
        parts = urlsplit(url)
        publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        publisher.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        publisher.loop_start()
        try:
            time.sleep(2)
            for _ in range(500):
                publisher.publish(topic.replace("#", "data"), str(time.time()).encode(), qos=1)
                time.sleep(0.01)
            time.sleep(1)
        finally:
            publisher.disconnect()
            publisher.loop_stop()

    until = asyncio.to_thread(send_slowly)
    await through_bridge(workdir, url, client_id, topic, 0, handler=STAMP, until=until)
    return sorted(float(line) for line in out.read_text().split())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("MQTT_URL"))
    args = parser.parse_args()
    logs.configure(os.environ.get("BENCH_LOG", "warning"))
    count = args.records
    with tempfile.TemporaryDirectory() as temp, contextlib.ExitStack() as stack:
        workdir = Path(temp)
        url = args.url
        if not url:
            server = services.mosquitto_server(workdir / "mosquitto")
            stack.callback(server.stop)
            url = f"mqtt://127.0.0.1:{server.port}"

        # Every run drains a backlog of its own, all filled before timing starts.
        print(f"filling {4 * args.rounds} sessions with {count:,} messages each ...")
        sessions = [await asyncio.to_thread(backlog, url, count) for _ in range(4 * args.rounds)]

        def hand(handle: bool) -> Any:
            async def run(_: int) -> float:
                client_id, topic = sessions.pop()
                return await asyncio.to_thread(
                    hand_loop, url, client_id, topic, count, handle=handle
                )

            return run

        def bridge(in_memory_function: bool) -> Any:
            async def run(number: int) -> float:
                client_id, topic = sessions.pop()
                folder = workdir / f"{'noop' if in_memory_function else 'py'}{number}"
                return await through_bridge(
                    folder, url, client_id, topic, count, in_memory_function=in_memory_function
                )

            return run

        print(
            f"messages: {count:,} (100-byte payloads, QoS 1, queued in the session), "
            f"batch size {BATCH}, best of {args.rounds}"
        )
        await compare_with_hand_written(
            count,
            args.rounds,
            hand=(
                "paho threaded loop, event built, function called, batch acknowledged",
                hand(True),
            ),
            old=("paho threaded loop acknowledging alone", hand(False)),
            bridge=bridge(False),
            noop=bridge(True),
        )
        samples = await latency(workdir / "latency", url)
        print(
            f"latency at ~100 records/s, window 0 ({len(samples)} records): {percentiles(samples)}"
        )


if __name__ == "__main__":
    asyncio.run(main())

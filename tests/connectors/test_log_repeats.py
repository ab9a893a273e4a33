"""Client libraries' repeated log lines are counted, not written: a Kafka outage does not
flood the log, while the bridge's own events are never held back."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.ops import logs
from bridge.ops.repeats import RepeatLimitingHandler
from tests import services
from tests.e2e import kafka_helpers as kafka


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The bridge's logging set up as the daemon does, written to a buffer."""
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    yield stream
    logging.getLogger().handlers = []
    structlog.reset_defaults()


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_kafka_outage_writes_each_client_error_once(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """A real aiokafka consumer whose broker is stopped retries for three seconds and
    would log hundreds of error lines; each (logger, message template) is written once,
    and closing the handler writes how often each repeated."""
    server = services.tansu_server(tmp_path / "broker")
    bootstrap = f"127.0.0.1:{server.port}"
    topic = kafka.unique("flood")
    try:
        kafka.create_topic(bootstrap, topic, 1)
    except BaseException:
        server.stop()
        raise

    async def consume_through_an_outage() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, retry_backoff_ms=10)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.getmany(timeout_ms=200)
            assert server.process is not None
            server.process.kill()  # at once: SIGTERM lets Tansu linger for seconds
            server.process.wait()
            deadline = asyncio.get_running_loop().time() + 3
            while asyncio.get_running_loop().time() < deadline:
                with contextlib.suppress(KafkaError):
                    await consumer.getmany(timeout_ms=100)
        finally:
            # aiokafka's fetcher may end in a CancelledError when stopped mid-outage.
            with contextlib.suppress(KafkaError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(consumer.stop(), 10)

    try:
        asyncio.run(consume_through_an_outage())
    finally:
        server.stop()
    during = [
        line for line in lines_of(log_stream) if line.get("logger", "").startswith("aiokafka")
    ]
    assert during, "the outage should make aiokafka log"
    per_line = Counter((line["logger"], line["event"]) for line in during)
    assert max(per_line.values()) == 1, per_line
    logging.getLogger().handlers[0].flush()
    summaries = [line for line in lines_of(log_stream) if "(repeated " in line["event"]]
    assert summaries
    assert sum(int(line["event"].rsplit("(repeated ", 1)[1].split()[0]) for line in summaries) > 20


def test_the_bridges_own_events_are_never_held_back(log_stream: io.StringIO) -> None:
    """The same structlog event a hundred times is written a hundred times, and so is a
    stdlib logger outside the client libraries."""
    log = structlog.get_logger("bridge.test")
    for _ in range(100):
        log.warning("mapping.reconnecting", mapping="m")
        logging.getLogger("bridge.ops.admin.server").warning("same line")
    events = Counter(line["event"] for line in lines_of(log_stream))
    assert events["mapping.reconnecting"] == 100
    assert events["same line"] == 100


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_are_counted_per_window() -> None:
    """Within the window only the first of a (logger, level, template) is written; the
    first record after the window writes the count, then starts a new window; another
    level or template is a line of its own."""
    written: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(f"{record.levelname} {record.getMessage()}")

    clock = Clock()
    handler = RepeatLimitingHandler(Collect(), window=30, clock=clock)
    logger = logging.getLogger("redis.connection.test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for second in range(40):
            clock.now = float(second)
            logger.error("cannot connect to %s", "127.0.0.1:6379")
            logger.warning("cannot connect to %s", "127.0.0.1:6379")
        logger.error("another message")
        handler.close()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert written == [
        "ERROR cannot connect to 127.0.0.1:6379",
        "WARNING cannot connect to 127.0.0.1:6379",
        "ERROR cannot connect to 127.0.0.1:6379 (repeated 29 times in 30 s)",
        "WARNING cannot connect to 127.0.0.1:6379 (repeated 29 times in 30 s)",
        "ERROR cannot connect to 127.0.0.1:6379",
        "WARNING cannot connect to 127.0.0.1:6379",
        "ERROR another message",
        "ERROR cannot connect to 127.0.0.1:6379 (repeated 9 times in 9 s)",
        "WARNING cannot connect to 127.0.0.1:6379 (repeated 9 times in 9 s)",
    ]

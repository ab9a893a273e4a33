"""The sources of the fault suite: for each, where records go (a producer the test
drives from a thread), the mapping's `source:` settings, and where its checkpoint can
be read after a kill.

Settings are the bridge's defaults except where a default only makes the test slow
(lease, session and poll intervals) and batch_size 10, so that there are many batches.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis as redis_client
from aiokafka import AIOKafkaProducer

from tests.e2e import kafka_helpers as kafka
from tests.e2e import redis_helpers as rd

Body = dict[str, Any]
# position, saved -> whether a delivery at `position` was covered by the saved checkpoint
Covered = Callable[[Any, Any], bool]


class Sender(Protocol):
    def send(self, bodies: list[Body]) -> None: ...

    def close(self) -> None: ...


class FaultSource(Protocol):
    kind: str
    ordered: bool
    # Seconds the recording handler spends on each batch.
    handler_delay: float
    partitions: list[str]
    function_timeout: int

    def source_yaml(self) -> str:
        """The mapping's `source:` line(s), indented as a mapping key."""
        ...

    def sender(self) -> Sender:
        """A client for the producer thread (opened and used only there)."""
        ...

    def partition_for(self, number: int, chosen: int) -> str:
        """The partition of record `number`; `chosen` is a seeded random index."""
        ...

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        """The saved positions right after a kill, if they can be read."""
        ...

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        """After the last run stopped cleanly: what the source or the checkpoint store
        still holds as unsettled, given the last position delivered per partition."""
        ...


# -- files --------------------------------------------------------------------------


class FilesSource:
    """One file per record: the file is the partition. Now and then the producer also
    touches a file it wrote a moment ago (a new mtime, the same content, as a checkout
    or a restore does): that is no new record, and must not disturb the one in flight."""

    kind = "files"
    ordered = True
    function_timeout = 3
    # A slow handler keeps records in flight across checkpoint flushes (every 0.5 s).
    handler_delay = 1.5

    def __init__(self, root: Path, touches: random.Random) -> None:
        self.partitions: list[str] = []
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.touches = touches
        # Files the producer touched (their keys).
        self.touched: set[str] = set()

    def source_yaml(self) -> str:
        return "    source: {type: files, path: ./inbox}\n"

    def partition_for(self, number: int, chosen: int) -> str:
        return f"r{number:07d}.rec"

    def sender(self) -> Sender:
        return _FileSender(self.inbox, self.touches, self.touched)

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        saved = sqlite_checkpoints(root)
        files = {key: json.loads(value).get("sequencer") for key, value in saved.items()}
        # A file whose state is checkpointed is never reported again unless it changes,
        # and the producer never changes one.
        return files, lambda position, sequencer: True

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        saved = sqlite_checkpoints(root)
        unsaved = sorted(key for key in last if key not in saved)
        if not unsaved:
            return []
        return [f"{len(unsaved)} delivered files have no saved state: {unsaved[:5]}"]


class _FileSender:
    """Writes one file per record. About every third call it also touches a file written
    one to three seconds ago: past `stable_after_seconds` (1 s), so most likely reported
    and in its batch right now."""

    TOUCH_SHARE = 1.0
    TOUCH_AGE_SECONDS = (1.0, 3.0)

    def __init__(self, inbox: Path, touches: random.Random, touched: set[str]) -> None:
        self.inbox = inbox
        self.touches = touches
        self.touched = touched
        self.written: list[tuple[float, Path]] = []

    def send(self, bodies: list[Body]) -> None:
        now = time.monotonic()
        for body in bodies:
            path = self.inbox / body["p"]
            path.write_text(json.dumps(body))
            self.written.append((now, path))
        youngest, oldest = self.TOUCH_AGE_SECONDS
        self.written = [(at, path) for at, path in self.written if now - at <= oldest]
        candidates = [path for at, path in self.written if now - at >= youngest]
        if candidates and self.touches.random() < self.TOUCH_SHARE:
            chosen = self.touches.choice(candidates)
            os.utime(chosen)
            self.touched.add(chosen.name)

    def close(self) -> None:
        return None


def sqlite_checkpoints(root: Path) -> dict[str, str]:
    path = root / "state" / "checkpoints.sqlite3"
    if not path.exists():
        return {}
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT partition, value FROM checkpoints"))
    except sqlite3.OperationalError:
        return {}
    finally:
        connection.close()


# -- Redis Streams -------------------------------------------------------------------


class RedisStreamsSource:
    kind = "redis-streams"
    handler_delay = 0.0
    ordered = True
    function_timeout = 3

    def __init__(self, url: str, streams: int = 3) -> None:
        self.url = url
        self.partitions = [rd.unique("fault") for _ in range(streams)]
        self.group = rd.unique("group")

    def source_yaml(self) -> str:
        return (
            f"    source: {{type: redis-streams, url: '{self.url}', "
            f"streams: [{', '.join(self.partitions)}], group: {self.group}, "
            "starting_position: TRIM_HORIZON, claim_idle_after_seconds: 1, "
            "lease_ttl_seconds: 2, block_seconds: 0.2}\n"
        )

    def partition_for(self, number: int, chosen: int) -> str:
        return self.partitions[chosen % len(self.partitions)]

    def sender(self) -> Sender:
        return _RedisSender(self.url)

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        return None

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        client = redis_client.Redis.from_url(self.url)
        try:
            pending = {
                stream: int(client.xpending(stream, self.group)["pending"])
                for stream in self.partitions
            }
        finally:
            client.close()
        if not any(pending.values()):
            return []
        return [f"entries still pending (never acknowledged) in group {self.group}: {pending}"]


class _RedisSender:
    def __init__(self, url: str) -> None:
        self.client = redis_client.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)

    def send(self, bodies: list[Body]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(body["p"], {"body": json.dumps(body), "kind": body.get("kind", "keep")})
        pipe.execute()

    def close(self) -> None:
        self.client.close()


# -- Kafka --------------------------------------------------------------------------


class KafkaSource:
    kind = "kafka"
    handler_delay = 0.0
    ordered = True
    function_timeout = 3

    def __init__(self, bootstrap: str, partitions: int = 3) -> None:
        self.bootstrap = bootstrap
        self.topic = kafka.unique("fault")
        self.group = kafka.unique("group")
        self.count = partitions
        self.partitions = [f"{self.topic}-{index}" for index in range(partitions)]
        kafka.create_topic(bootstrap, self.topic, partitions)

    def source_yaml(self) -> str:
        return (
            f"    source: {{type: kafka, bootstrap_servers: '{self.bootstrap}', "
            f"topics: [{self.topic}], consumer_group_id: {self.group}, "
            "starting_position: TRIM_HORIZON, session_timeout_seconds: 6, "
            "heartbeat_interval_seconds: 0.2}\n"
        )

    def partition_for(self, number: int, chosen: int) -> str:
        return self.partitions[chosen % self.count]

    def sender(self) -> Sender:
        return _KafkaSender(self.bootstrap, self.topic)

    def checkpoint(self, root: Path) -> tuple[dict[str, Any], Covered] | None:
        offsets = kafka.committed(self.bootstrap, self.group, self.topic, self.count)
        saved = {f"{self.topic}-{index}": offset for index, offset in offsets.items()}
        # The committed offset is the next one to read: everything below it is done.
        return saved, lambda offset, committed: offset < committed

    def left_behind(self, root: Path, last: dict[str, Any]) -> list[str]:
        floor = self.checkpoint(root)
        assert floor is not None
        committed, _ = floor
        behind = {
            partition: (committed.get(partition), offset + 1)
            for partition, offset in last.items()
            if committed.get(partition) != offset + 1
        }
        if not behind:
            return []
        return [f"committed offsets behind the last delivered (committed, wanted): {behind}"]


class _KafkaSender:
    """aiokafka's producer on an event loop of the producer thread's own."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.runner = asyncio.Runner()
        self.producer = self.runner.run(self._start(bootstrap))

    @staticmethod
    async def _start(bootstrap: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, request_timeout_ms=5000
        )
        await producer.start()
        return producer

    def send(self, bodies: list[Body]) -> None:
        self.runner.run(asyncio.wait_for(self._send(bodies), 10))

    async def _send(self, bodies: list[Body]) -> None:
        sent = []
        for body in bodies:
            partition = int(body["p"].rsplit("-", 1)[1])
            value = json.dumps(body).encode()
            sent.append(await self.producer.send(self.topic, value, partition=partition))
        for delivery in sent:
            await delivery

    def close(self) -> None:
        try:
            self.runner.run(asyncio.wait_for(self.producer.stop(), 10))
        except Exception as exc:
            print(f"kafka producer did not stop cleanly: {exc!r}")
        finally:
            self.runner.close()

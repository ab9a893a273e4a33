"""lambda-bridge run against a real RabbitMQ, end to end (Amazon MQ for RabbitMQ)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import rabbitmq_helpers as rabbitmq
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

# Records every message it is given, then (per message body) sleeps or fails.
HANDLER = """
import base64, json, os, time

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    assert event["eventSource"] == "aws:rmq"
    [(key, messages)] = event["rmqMessagesByQueue"].items()
    bodies = [json.loads(base64.b64decode(m["data"])) for m in messages]
    with open(LOG, "a") as out:
        for body, message in zip(bodies, messages):
            out.write(json.dumps({"n": body["n"], "key": key, "redelivered": message["redelivered"],
                                  "request": context.aws_request_id, "phase": "start"}) + "\\n")
    for body in bodies:
        time.sleep(body.get("slow", 0))
    if any(body.get("fail") for body in bodies) and not all(m["redelivered"] for m in messages):
        raise ValueError("fails the first time")
    with open(LOG, "a") as out:
        for body in bodies:
            out.write(json.dumps({"n": body["n"], "request": context.aws_request_id, "phase": "done"}) + "\\n")
"""


class Workspace:
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.queue = rabbitmq.unique("orders")
        asyncio.run(rabbitmq.declare_queue(url, self.queue))
        self.record_file = root / "calls.jsonl"
        (root / "rmq_handler.py").write_text(HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, mapping: str = "") -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: rmq_handler.py:handler, timeout: 30}}
mappings:
  - name: orders
    function: recorder
    source:
      type: rabbitmq
      url: {self.url}
      queues: [{self.queue}]
      requeue_delay_seconds: 0.1
    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
{mapping}
"""
        )
        return path

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file)})
        self.daemons.append(daemon.start())
        return daemon

    def publish(self, bodies: list[dict[str, object]]) -> None:
        asyncio.run(
            rabbitmq.publish(self.url, self.queue, [json.dumps(b).encode() for b in bodies])
        )

    def rows(self, phase: str) -> list[dict[str, Any]]:
        return [row for row in read_jsonl(self.record_file) if row["phase"] == phase]

    def done(self) -> set[int]:
        return {row["n"] for row in self.rows("done")}


@pytest.fixture
def space(tmp_path: Path, amqp_url: str) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path, amqp_url)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()
    asyncio.run(rabbitmq.delete_queue(amqp_url, workspace.queue))


def test_messages_are_delivered_filtered_and_acknowledged(space: Workspace) -> None:
    """Every matching message reaches the function once in an event keyed
    `<queue>::/`; filtered ones never do; all end acknowledged, none left in the queue."""
    filters = """\
    filter_criteria:
      filters:
        - pattern: '{"data": {"kind": ["order"]}}'
"""
    daemon = space.daemon(space.config(filters)).wait_ready()
    space.publish([{"n": n, "kind": "order" if n % 3 else "noise"} for n in range(30)])
    wanted = {n for n in range(30) if n % 3}
    wait_for(lambda: space.done() == wanted, what="the matching messages")
    assert {row["key"] for row in space.rows("start")} == {f"{space.queue}::/"}
    assert sorted(row["n"] for row in space.rows("start")) == sorted(wanted)
    wait_for(
        lambda: asyncio.run(rabbitmq.message_count(space.url, space.queue)) == 0,
        what="an empty queue",
    )
    assert daemon.stop() == 0
    assert asyncio.run(rabbitmq.drain(space.url, space.queue)) == []


def test_a_failed_batch_is_delivered_again_whole(space: Workspace) -> None:
    """The function fails a batch: every message of it comes again, redelivered, and is
    acknowledged once the function succeeds (esm-reference.md 8)."""
    daemon = space.daemon(space.config()).wait_ready()
    space.publish([{"n": 0}, {"n": 1, "fail": True}, {"n": 2}])
    wait_for(lambda: space.done() == {0, 1, 2}, what="the batch after its retry")
    first, *again = [row for row in space.rows("start") if row["n"] == 1]
    assert first["redelivered"] is False
    assert again and all(row["redelivered"] for row in again)
    assert daemon.stop() == 0
    assert asyncio.run(rabbitmq.drain(space.url, space.queue)) == []


def test_a_killed_daemon_loses_nothing(space: Workspace) -> None:
    """kill -9 while batches are in the function: the broker takes back what was not
    acknowledged, and a new daemon delivers it (redelivered); nothing is lost."""
    config = space.config("    maximum_concurrency: 2\n")
    daemon = space.daemon(config).wait_ready()
    space.publish([{"n": n, "slow": 0.5} for n in range(40)])
    wait_for(lambda: len(space.rows("start")) >= 20, what="batches in the function")
    daemon.kill()
    done_before = space.done()
    assert len(done_before) < 40
    space.daemon(config).wait_ready()
    wait_for(lambda: space.done() == set(range(40)), timeout=60, what="every message done")
    started_twice = [
        row for row in space.rows("start") if row["redelivered"] and row["n"] not in done_before
    ]
    assert started_twice, "the unacknowledged messages came back marked redelivered"

"""lambda-bridge run against a real ActiveMQ broker, end to end (Amazon MQ for ActiveMQ)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import activemq_helpers as amq
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

HANDLER = '''
"""Records every message it is given; a batch holding a poison message fails whole."""
import base64, json, os, time

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    assert event["eventSource"] == "aws:mq", event
    bodies = [json.loads(base64.b64decode(m["data"])) for m in event["messages"]]
    for body in bodies:
        time.sleep(body.get("slow", 0))
    failed = any(body.get("poison") for body in bodies)
    with open(LOG, "a") as out:
        for message, body in zip(event["messages"], bodies):
            out.write(json.dumps({
                "n": body["n"],
                "ok": not failed,
                "redelivered": message["redelivered"],
                "type": message["messageType"],
            }) + "\\n")
    if failed:
        raise ValueError("poison message in the batch")
    return {}
'''


class Workspace:
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.queue = amq.unique("orders")
        self.record_file = root / "calls.jsonl"
        (root / "mq_handler.py").write_text(HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, mapping: str = "", source: str = "") -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: mq_handler.py:handler, timeout: 10}}
mappings:
  - name: orders
    function: recorder
    source:
      type: activemq
      url: {self.url}
      queues: [{self.queue}]
      redelivery_delay_seconds: 0.1
{source}    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
{mapping}"""
        )
        return path

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file)})
        self.daemons.append(daemon.start())
        return daemon

    def calls(self) -> list[dict[str, Any]]:
        return read_jsonl(self.record_file)

    def delivered(self) -> set[int]:
        return {row["n"] for row in self.calls() if row["ok"]}

    def left_in_queue(self) -> list[Any]:
        return [json.loads(f.body) for f in amq.drain_now(self.url, self.queue, 1, timeout=1.0)]


@pytest.fixture
def space(tmp_path: Path, activemq_url: str) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path, activemq_url)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_messages_are_delivered_filtered_and_acknowledged(space: Workspace) -> None:
    """Every message reaches the function once, in batches; a message no filter matches
    is acknowledged without reaching it (esm-reference.md 11.5); the queue ends empty."""
    config = space.config(
        mapping="    filter_criteria:\n      filters:\n        - pattern: {data: {kind: [order]}}\n"
    )
    daemon = space.daemon(config).wait_ready()
    amq.send_now(space.url, space.queue, [{"n": n, "kind": "order"} for n in range(30)])
    amq.send_now(space.url, space.queue, [{"n": 99, "kind": "test"}])
    amq.send_now(space.url, space.queue, [{"n": 30, "kind": "order"}])
    wait_for(lambda: space.delivered() == set(range(31)), what="all 31 orders")
    assert sorted(row["n"] for row in space.calls()) == list(range(31))
    assert {row["type"] for row in space.calls()} == {"jms/text-message"}
    assert daemon.stop() == 0
    assert space.left_in_queue() == []


def test_a_failing_batch_is_redelivered_then_dead_lettered(space: Workspace) -> None:
    """A batch with a poison message fails whole and comes again, `redelivered`, until
    the poison message passed maximum_redeliveries; then it is in the dead-letter queue,
    and the messages that came after it are delivered."""
    daemon = space.daemon(space.config(source="      maximum_redeliveries: 2\n")).wait_ready()
    amq.send_now(space.url, space.queue, [{"n": 0, "poison": True}])
    [dead] = amq.drain_now(space.url, f"DLQ.{space.queue}", 1, timeout=30)
    assert json.loads(dead.body) == {"n": 0, "poison": True}
    poison = [row for row in space.calls() if row["n"] == 0]
    assert [row["redelivered"] for row in poison] == [False, True, True]
    amq.send_now(space.url, space.queue, [{"n": 1}, {"n": 2}])
    wait_for(lambda: space.delivered() == {1, 2}, what="the messages after it")
    assert daemon.stop() == 0
    assert space.left_in_queue() == []


def test_kill_9_mid_run_then_restart_loses_nothing(space: Workspace) -> None:
    """Messages unacknowledged when the daemon is killed are handed out again by the
    broker, marked redelivered, and delivered after the restart."""
    config = space.config()
    daemon = space.daemon(config).wait_ready()
    amq.send_now(space.url, space.queue, [{"n": n, "slow": 0.05} for n in range(60)])
    wait_for(lambda: len(space.calls()) >= 10, what="some progress")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    second = space.daemon(config).wait_ready()
    wait_for(lambda: space.delivered() == set(range(60)), timeout=60, what="all after restart")
    assert any(row["redelivered"] for row in space.calls())
    assert second.stop() == 0
    assert space.left_in_queue() == []

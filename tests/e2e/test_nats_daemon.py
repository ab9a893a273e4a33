"""lambda-bridge run against a real nats-server with JetStream, end to end: partial
batch responses and redelivery, filters on the decoded data, order per subject, and a
daemon killed with SIGKILL that loses nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

# Records every message it is given, then fails those whose body asks for it (up to
# `fail_times` deliveries) with a partial batch response, stopping the subject there.
HANDLER = """
import base64, json, os, time

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    failures, stopped, rows = [], set(), []
    for record in event["Records"]:
        body = json.loads(base64.b64decode(record["data"]))
        if body.get("slow"):
            time.sleep(body["slow"])
        subject = record["subject"]
        failing = subject in stopped or record["numDelivered"] <= body.get("fail_times", 0)
        if failing:
            stopped.add(subject)
            failures.append({"itemIdentifier": record["messageId"]})
        rows.append({"subject": subject, "seq": record["streamSequence"], "n": body["n"],
                     "kind": body.get("kind"), "delivered": record["numDelivered"],
                     "ok": not failing})
    with open(LOG, "a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\\n")
    return {"batchItemFailures": failures}
"""


async def _publish(url: str, stream: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish into `stream`, made first if it is not there yet."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for subject, body in messages:
            await js.publish(subject, json.dumps(body).encode())
    finally:
        await client.close()


async def _consumer_state(url: str, stream: str, consumer: str) -> tuple[int, int]:
    """(acknowledged up to this stream sequence, messages delivered and unacknowledged)."""
    client = await nats.connect(url)
    try:
        info = await client.jetstream().consumer_info(stream, consumer)
        return info.ack_floor.stream_seq or 0, info.num_ack_pending or 0
    finally:
        await client.close()


class NatsWorkspace:
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.stream = f"orders-{uuid.uuid4().hex[:10]}"
        self.record_file = root / "calls.jsonl"
        (root / "nats_handler.py").write_text(HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, mapping: str = "", source: str = "") -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: nats_handler.py:handler, timeout: 10}}
mappings:
  - name: orders
    function: recorder
    source:
      type: nats
      url: {self.url}
      stream: {self.stream}
      subject: {self.stream}.>
      create_stream: true
      ack_wait_seconds: 2
      fetch_wait_seconds: 0.2
{source}    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
    function_response_types: [ReportBatchItemFailures]
{mapping}"""
        )
        return path

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file)})
        self.daemons.append(daemon.start())
        return daemon

    def publish(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        asyncio.run(
            _publish(self.url, self.stream, [(f"{self.stream}.{s}", b) for s, b in messages])
        )

    def state(self) -> tuple[int, int]:
        return asyncio.run(_consumer_state(self.url, self.stream, "orders"))

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.record_file)

    def succeeded(self) -> list[int]:
        return sorted(row["n"] for row in self.rows() if row["ok"])


@pytest.fixture
def space(tmp_path: Path, nats_url: str) -> Iterator[NatsWorkspace]:
    workspace = NatsWorkspace(tmp_path, nats_url)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_failures_come_again_in_order_and_filtered_messages_never_reach_the_function(
    space: NatsWorkspace,
) -> None:
    """Ordered by subject, with a filter on the decoded data: heartbeats are acknowledged
    without an invocation; a message reported failed is nak'ed, comes again with
    numDelivered 2 and succeeds; each subject's successes are in stream order; in the end
    nothing is left unacknowledged."""
    messages: list[tuple[str, dict[str, Any]]] = []
    for n in range(40):
        subject = ("eu", "us", "ap")[n % 3]
        body: dict[str, Any] = {"n": n, "kind": "order"}
        if n % 9 == 4:
            body["fail_times"] = 1
        messages.append((subject, body))
        if n % 5 == 0:
            messages.append((subject, {"n": 1000 + n, "kind": "heartbeat"}))
    space.publish(messages)
    config = space.config(
        source="      ordered_by_subject: true\n",
        mapping="    filter_criteria:\n      filters:\n"
        '        - pattern: \'{"data": {"kind": ["order"]}}\'\n',
    )
    daemon = space.daemon(config).wait_ready()
    wait_for(lambda: space.succeeded() == list(range(40)), timeout=60, what="every order")
    wait_for(lambda: space.state() == (len(messages), 0), what="every message acknowledged")
    rows = space.rows()
    assert not [row for row in rows if row["kind"] == "heartbeat"], "a filtered message"
    retried = {row["n"]: row["delivered"] for row in rows if row["ok"] and row["delivered"] > 1}
    assert set(retried) >= {n for n in range(40) if n % 9 == 4}
    by_subject: dict[str, list[int]] = {}
    for row in rows:
        if row["ok"]:
            by_subject.setdefault(row["subject"], []).append(row["seq"])
    for subject, sequences in by_subject.items():
        assert sequences == sorted(sequences), f"{subject} went backwards"
    assert daemon.stop() == 0


def test_a_daemon_killed_with_sigkill_loses_nothing(space: NatsWorkspace) -> None:
    """kill -9 while batches are with the function: the messages it had not settled are
    delivered again by the server after their ack wait, to the next daemon."""
    space.publish([("eu", {"n": n, "slow": 0.05}) for n in range(60)])
    config = space.config()
    first = space.daemon(config).wait_ready()
    wait_for(lambda: len(space.succeeded()) >= 10, timeout=60, what="some deliveries")
    assert first.process is not None
    first.process.kill()
    first.wait(10)
    assert len(set(space.succeeded())) < 60, "everything was done before the kill"
    second = space.daemon(config).wait_ready()
    wait_for(lambda: set(space.succeeded()) == set(range(60)), timeout=60, what="all 60")
    wait_for(lambda: space.state() == (60, 0), what="every message acknowledged")
    assert second.stop() == 0

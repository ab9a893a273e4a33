"""lambda-bridge run against a real Mosquitto, end to end, with the `mqtt` source."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.e2e import mqtt_helpers as mqtt
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

# Every payload is JSON: {"n": <int>, "poison": bool?, "slow": seconds?}.
HANDLER = '''
"""Records each message it is given; fails a batch holding a poison message."""
import base64, json, os, time

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    rows = [(item, json.loads(base64.b64decode(item["payload"]))) for item in event["Records"]]
    for _, body in rows:
        time.sleep(body.get("slow", 0))
    poisoned = any(body.get("poison") for _, body in rows)
    with open(LOG, "a") as out:
        for item, body in rows:
            row = {"n": body["n"], "ok": not poisoned, "dup": item["dup"], "topic": item["topic"],
                   "request": context.aws_request_id, "size": len(rows)}
            out.write(json.dumps(row) + "\\n")
    if poisoned:
        raise ValueError("poison message in the batch")
'''


class MqttWorkspace:
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.base = mqtt.unique("plant")
        self.client_id = mqtt.unique("bridge")
        self.record_file = root / "calls.jsonl"
        self.failures = root / "failed" / "sensors.jsonl"
        (root / "handler.py").write_text(HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, mapping: str = "", url: str | None = None) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: handler.py:handler, timeout: 10}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: sensors
    function: recorder
    source:
      type: mqtt
      url: {url or self.url}
      topics: [{self.base}/+/temperature, {self.base}/alarms/#]
      client_id: {self.client_id}
      keepalive_seconds: 5
    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{mapping}
"""
        )
        return path

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file)}).start()
        self.daemons.append(daemon)
        return daemon

    def publish(
        self, numbers: range, room: str = "hall", url: str | None = None, **extra: Any
    ) -> None:
        mqtt.publish_json(
            url or self.url, f"{self.base}/{room}/temperature", [{"n": n, **extra} for n in numbers]
        )

    def delivered(self) -> set[int]:
        return {row["n"] for row in read_jsonl(self.record_file) if row["ok"]}

    def first_deliveries(self) -> list[int]:
        seen: list[int] = []
        for row in read_jsonl(self.record_file):
            if row["ok"] and row["n"] not in seen:
                seen.append(row["n"])
        return seen


@pytest.fixture
def space(tmp_path: Path, mqtt_url: str) -> Iterator[MqttWorkspace]:
    workspace = MqttWorkspace(tmp_path, mqtt_url)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_messages_arrive_in_order_filtered_and_acknowledged(space: MqttWorkspace) -> None:
    """Messages of the matching topics reach the function in order, those the filter
    leaves out do not, and all are acknowledged: a restart delivers none again."""
    config = space.config(
        mapping="""\
    filter_criteria:
      filters:
        - pattern: '{"payload": {"n": [{"numeric": ["<", 40]}]}}'
"""
    )
    daemon = space.daemon(config).wait_ready()
    space.publish(range(50))
    mqtt.publish_json(space.url, f"{space.base}/hall/humidity", [{"n": 1000}])
    wait_for(lambda: space.delivered() == set(range(40)), what="the 40 matching messages")
    assert space.first_deliveries() == list(range(40))
    assert daemon.stop() == 0
    [stopped] = daemon.events("mapping.stopped")
    assert stopped["filtered_out"] == 10
    calls_before = len(read_jsonl(space.record_file))
    again = space.daemon(config).wait_ready()
    space.publish(range(-1, 0))
    wait_for(lambda: -1 in space.delivered(), what="the next message")
    assert len(read_jsonl(space.record_file)) == calls_before + 1
    assert again.stop() == 0


def test_messages_published_while_the_daemon_is_down_come_after(space: MqttWorkspace) -> None:
    config = space.config()
    daemon = space.daemon(config).wait_ready()
    space.publish(range(5))
    wait_for(lambda: space.delivered() == set(range(5)), what="the first five")
    assert daemon.stop() == 0
    space.publish(range(5, 25))
    second = space.daemon(config).wait_ready()
    wait_for(lambda: space.delivered() == set(range(25)), what="those published meanwhile")
    assert space.first_deliveries() == list(range(25))
    assert second.stop() == 0


def test_kill_9_mid_batch_then_restart_loses_nothing(space: MqttWorkspace) -> None:
    """Messages in flight when the daemon is killed were never acknowledged: the broker
    delivers them again (DUP) to the restarted daemon, after the ones settled before."""
    config = space.config()
    daemon = space.daemon(config).wait_ready()
    space.publish(range(60), slow=0.05)
    wait_for(lambda: len(space.delivered()) >= 10, what="some progress")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    before = space.delivered()
    assert before != set(range(60))
    second = space.daemon(config).wait_ready()
    wait_for(lambda: space.delivered() == set(range(60)), timeout=60, what="every message")
    assert space.first_deliveries() == list(range(60))
    assert any(row["dup"] for row in read_jsonl(space.record_file))
    assert second.stop() == 0


def test_a_failing_batch_is_retried_then_sent_to_the_destination(space: MqttWorkspace) -> None:
    """MQTT cannot hand a message back: the bridge retries the failing batch itself, in
    order, then writes a failure record, acknowledges it and goes on."""
    daemon = space.daemon(
        space.config(
            mapping="""\
    maximum_retry_attempts: 2
    bisect_batch_on_function_error: true
"""
        )
    ).wait_ready()
    space.publish(range(3))
    space.publish(range(3, 4), poison=True)
    space.publish(range(4, 8))
    wait_for(lambda: space.delivered() == set(range(8)) - {3}, what="the good messages")
    [failure] = wait_for(lambda: read_jsonl(space.failures), what="the failure record")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    info = failure["MqttBatchInfo"]
    assert (info["clientId"], info["batchSize"]) == (space.client_id, 1)
    [item] = failure["payload"]["Records"]
    assert mqtt.payload_of(item) == {"n": 3, "poison": True}
    assert space.first_deliveries() == [0, 1, 2, 4, 5, 6, 7]
    assert daemon.stop() == 0
    again = space.daemon(space.config()).wait_ready()
    space.publish(range(100, 101))
    wait_for(lambda: 100 in space.delivered(), what="the next message")
    assert 3 not in space.delivered()
    assert again.stop() == 0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[services.ServerProcess]:
    server = services.mosquitto_server(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()


def test_broker_restart_mid_run_loses_nothing(
    tmp_path: Path, own_broker: services.ServerProcess
) -> None:
    """The broker restarts (its sessions saved on disk) while the daemon runs: the
    mapping reports the lost connection, reconnects with backoff, resumes its session
    and delivers everything, published before and after the outage."""
    url = f"mqtt://127.0.0.1:{own_broker.port}"
    space = MqttWorkspace(tmp_path, url)
    daemon = space.daemon(space.config())
    try:
        daemon.wait_ready()
        space.publish(range(10))
        wait_for(lambda: space.delivered() == set(range(10)), what="before the restart")
        own_broker.stop()
        daemon.wait_for_log("mapping.source_failed")
        own_broker.start()
        space.publish(range(10, 30))
        wait_for(lambda: space.delivered() == set(range(30)), timeout=60, what="after the restart")
        assert daemon.events("mapping.reconnecting")
        assert space.first_deliveries() == list(range(30))
        assert daemon.stop() == 0
    finally:
        daemon.kill()

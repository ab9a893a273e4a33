"""lambda-bridge run against a real Kafka-protocol broker (Tansu), end to end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import KafkaSelfManagedEventModel

from tests.e2e import kafka_helpers as kafka
from tests.e2e.streams import (
    calls,
    delivered,
    failed_numbers,
    successes_by_partition,
    write_handler,
)
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


class KafkaWorkspace:
    def __init__(self, root: Path, bootstrap: str) -> None:
        self.root = root
        self.bootstrap = bootstrap
        self.topic = kafka.unique("orders")
        self.group = kafka.unique("group")
        self.record_file = root / "calls.jsonl"
        self.failures = root / "failed" / "orders.jsonl"
        write_handler(root)
        self.daemons: list[DaemonProcess] = []

    def config(
        self, mapping: str = "", source: str = "", name: str = "bridge.yaml", state: str = "state"
    ) -> Path:
        path = self.root / name
        path.write_text(
            f"""\
state_dir: ./{state}
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: stream_handler.py:handler, timeout: 10}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: orders
    function: recorder
    source:
      type: kafka
      bootstrap_servers: {self.bootstrap}
      topics: [{self.topic}]
      consumer_group_id: {self.group}
      starting_position: TRIM_HORIZON
      session_timeout_seconds: 6
      heartbeat_interval_seconds: 0.2
{source}
    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{mapping}
"""
        )
        return path

    def daemon(self, config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(
            config, self.root, env={"RECORD_TO": str(self.record_file), **env}
        ).start()
        self.daemons.append(daemon)
        return daemon


@pytest.fixture
def space(tmp_path: Path, kafka_bootstrap: str) -> Any:
    workspace = KafkaWorkspace(tmp_path, kafka_bootstrap)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def assert_in_order(space: KafkaWorkspace) -> None:
    for partition, offsets in successes_by_partition(space.record_file).items():
        assert offsets == sorted(offsets), f"{partition} went backwards: {offsets}"
        assert len(offsets) == len(set(offsets)), f"{partition} delivered twice: {offsets}"


def test_records_arrive_in_order_per_partition_as_kafka_events(space: KafkaWorkspace) -> None:
    """Each partition's records reach the function in offset order, in events of the
    self-managed Kafka shape; offsets are committed after them."""
    kafka.create_topic(space.bootstrap, space.topic, 3)
    daemon = space.daemon(space.config()).wait_ready()
    kafka.produce(space.bootstrap, space.topic, kafka.numbered(90, 3))
    wait_for(lambda: delivered(space.record_file) == set(range(90)), what="all 90 records")
    assert_in_order(space)
    wait_for(
        lambda: (
            kafka.committed(space.bootstrap, space.group, space.topic, 3) == {0: 30, 1: 30, 2: 30}
        ),
        what="committed offsets",
    )
    assert daemon.stop() == 0


def test_event_shape_is_the_self_managed_kafka_event(tmp_path: Path, kafka_bootstrap: str) -> None:
    """The event handed to the function validates against Powertools' strict model, with
    records keyed by topic-partition and base64 keys and values."""
    topic = kafka.unique("shape")
    kafka.create_topic(kafka_bootstrap, topic, 1)
    (tmp_path / "capture.py").write_text(
        "import json, os\ndef handler(event, context):\n    open(os.environ['RECORD_TO'], 'a').write(json.dumps(event) + '\\n')\n"
    )
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"state_dir: ./state\nfunctions:\n  f: {{invoker: python, handler: capture.py:handler}}\n"
        f"mappings:\n  - name: m\n    function: f\n    source: {{type: kafka, bootstrap_servers: '{kafka_bootstrap}', topics: [{topic}], starting_position: TRIM_HORIZON, heartbeat_interval_seconds: 0.2}}\n"
    )
    record_file = tmp_path / "events.jsonl"
    daemon = DaemonProcess(config, tmp_path, env={"RECORD_TO": str(record_file)}).start()
    try:
        daemon.wait_ready()
        kafka.produce(kafka_bootstrap, topic, kafka.numbered(3, 1))
        [event] = wait_for(lambda: read_jsonl(record_file), what="an event")
        KafkaSelfManagedEventModel.model_validate(event)
        assert event["eventSource"] == "SelfManagedKafka"
        assert event["bootstrapServers"] == kafka_bootstrap
        assert list(event["records"]) == [f"{topic}-0"]
        assert [record["offset"] for record in event["records"][f"{topic}-0"]] == [0, 1, 2]
        assert kafka.kafka_bodies(event) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_random_partial_failures_lose_nothing_and_never_go_backwards(space: KafkaWorkspace) -> None:
    """A handler failing records at random with partial batch responses: every record is
    delivered or in the failure destination, and per partition the successes never go
    back in offset order."""
    kafka.create_topic(space.bootstrap, space.topic, 2)
    config = space.config(
        mapping="    function_response_types: [ReportBatchItemFailures]\n    maximum_retry_attempts: 3\n"
    )
    daemon = space.daemon(config, FAIL_RATE="0.15").wait_ready()
    kafka.produce(space.bootstrap, space.topic, kafka.numbered(120, 2))

    def accounted() -> bool:
        return delivered(space.record_file) | failed_numbers(
            space.failures, kafka.kafka_bodies
        ) == set(range(120))

    wait_for(accounted, timeout=60, what="every record delivered or discarded")
    assert_in_order(space)
    assert delivered(space.record_file).isdisjoint(
        failed_numbers(space.failures, kafka.kafka_bodies)
    )
    assert daemon.stop() == 0


def test_bisect_isolates_one_poison_record(space: KafkaWorkspace) -> None:
    """With bisect on, a poison record ends in the destination alone; the rest are delivered."""
    kafka.create_topic(space.bootstrap, space.topic, 1)
    config = space.config(
        mapping="    bisect_batch_on_function_error: true\n    maximum_retry_attempts: 1\n"
    )
    daemon = space.daemon(config).wait_ready()
    bodies = [(0, {"n": n, "poison": n == 7}) for n in range(20)]
    kafka.produce(space.bootstrap, space.topic, bodies)
    wait_for(lambda: delivered(space.record_file) == set(range(20)) - {7}, what="good records")
    [failure] = wait_for(lambda: read_jsonl(space.failures), what="failure record")
    assert kafka.kafka_bodies(failure["payload"]) == [{"n": 7, "poison": True}]
    info = failure["KafkaBatchInfo"]
    assert (
        info["batchSize"] == 1
        and info["recordsInfo"][f"{space.topic}-0"]["firstRecordOffset"] == "7"
    )
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert_in_order(space)
    assert daemon.stop() == 0


def test_old_records_expire_to_the_destination(space: KafkaWorkspace) -> None:
    """Records older than maximum_record_age_in_seconds go to the destination with
    RecordAgeExceeded without reaching the function."""
    kafka.create_topic(space.bootstrap, space.topic, 1)
    config = space.config(mapping="    maximum_record_age_in_seconds: 60\n")
    daemon = space.daemon(config).wait_ready()
    kafka.produce(
        space.bootstrap,
        space.topic,
        kafka.numbered(3, 1),
        timestamp_ms=int((time.time() - 3600) * 1000),
    )
    kafka.produce(space.bootstrap, space.topic, kafka.numbered(2, 1, start=3))
    wait_for(lambda: delivered(space.record_file) == {3, 4}, what="fresh records")
    failures = wait_for(lambda: read_jsonl(space.failures), what="age failure")
    assert failed_numbers(space.failures, kafka.kafka_bodies) == {0, 1, 2}
    assert all(
        failure["requestContext"]["condition"] == "RecordAgeExceeded" for failure in failures
    )
    assert all("responseContext" not in failure for failure in failures)
    assert daemon.stop() == 0


def test_kill_9_mid_run_then_restart_loses_nothing(space: KafkaWorkspace) -> None:
    """Records in flight when the daemon is killed are delivered after a restart."""
    kafka.create_topic(space.bootstrap, space.topic, 2)
    config = space.config()
    daemon = space.daemon(config).wait_ready()
    kafka.produce(
        space.bootstrap, space.topic, [(n % 2, {"n": n, "slow": 0.05}) for n in range(60)]
    )
    wait_for(lambda: len(calls(space.record_file)) >= 10, what="some progress")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    second = space.daemon(config).wait_ready()
    wait_for(
        lambda: delivered(space.record_file) == set(range(60)),
        timeout=60,
        what="every record after restart",
    )
    assert second.stop() == 0


def test_two_instances_split_the_partitions(space: KafkaWorkspace) -> None:
    """Two daemons with the same config share the group's partitions; between them every
    record is delivered, and each partition is read by one of them at a time."""
    kafka.create_topic(space.bootstrap, space.topic, 4)
    first = space.daemon(space.config(name="a.yaml", state="state-a")).wait_ready()
    second = space.daemon(space.config(name="b.yaml", state="state-b")).wait_ready()

    def both_assigned() -> bool:
        for daemon in (first, second):
            assigned = daemon.events("kafka.partitions_assigned")
            if not assigned or not assigned[-1]["partitions"]:
                return False
        latest = [
            set(daemon.events("kafka.partitions_assigned")[-1]["partitions"])
            for daemon in (first, second)
        ]
        return latest[0].isdisjoint(latest[1]) and len(latest[0] | latest[1]) == 4

    wait_for(both_assigned, timeout=40, what="the partitions split between the two")
    kafka.produce(space.bootstrap, space.topic, kafka.numbered(80, 4))
    wait_for(
        lambda: delivered(space.record_file) == set(range(80)), timeout=40, what="every record"
    )
    requests_by_daemon = {row["request"] for row in calls(space.record_file)}
    assert len(requests_by_daemon) >= 2
    assert first.stop() == 0
    assert second.stop() == 0

"""Filters through lambda-bridge run (esm-reference.md 11): records that match no filter
never reach the function and are settled as AWS settles them: deleted from SQS,
checkpointed past on Kinesis, committed on Kafka, acknowledged on Redis, and counted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import aws_helpers as aws
from tests.e2e import kafka_helpers as kafka
from tests.e2e import redis_helpers as rd
from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


KEEP_HANDLER = """
import base64, json, os


def handler(event, context):
    with open(os.environ["RECORD_TO"], "a") as out:
        for record in event.get("Records", []):
            out.write(json.dumps(record["redis"]["fields"]) + "\\n")
        for records in event.get("records", {}).values():
            for record in records:
                out.write(json.dumps(json.loads(base64.b64decode(record["value"]))) + "\\n")
"""


def start(
    daemons: list[DaemonProcess], root: Path, body: str, handler: str = "aws_handler.py:handler"
) -> DaemonProcess:
    aws.write_handler(root)
    (root / "keep.py").write_text(KEEP_HANDLER)
    config = root / "bridge.yaml"
    config.write_text(
        f"""\
state_dir: ./state
log: {{level: debug}}
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: "{handler}", timeout: 10}}
mappings:
  - name: filtered
    function: recorder
{body}"""
    )
    daemon = DaemonProcess(config, root, env={"RECORD_TO": str(root / "calls.jsonl")}).start()
    daemons.append(daemon)
    return daemon.wait_ready()


def filtered_out(daemon: DaemonProcess) -> int:
    assert daemon.stop() == 0
    [stopped] = daemon.events("mapping.stopped")
    return int(stopped["filtered_out"])


def test_sqs_messages_that_match_no_filter_are_deleted_unseen(
    tmp_path: Path, aws_endpoint: str, daemons: list[DaemonProcess]
) -> None:
    """Two OR-ed filters on the JSON body; the other messages (a different status, or a
    body that is not JSON) are deleted from the queue at once and counted."""
    url, _ = aws.new_queue(aws_endpoint, visibility=30)
    daemon = start(
        daemons,
        tmp_path,
        f"""\
    source: {{type: sqs, queue_url: "{url}", endpoint_url: "{aws_endpoint}", wait_time_seconds: 1}}
    filter_criteria:
      filters:
        - pattern: '{{"body": {{"status": ["paid"]}}}}'
        - pattern: '{{"body": {{"total": [{{"numeric": [">=", 100]}}]}}}}'
""",
    )
    bodies = [
        {"n": n, "status": "paid" if n % 3 == 0 else "open", "total": 10 * n} for n in range(12)
    ]
    aws.send(aws_endpoint, url, bodies)
    aws.client("sqs", aws_endpoint).send_message(QueueUrl=url, MessageBody="not json")
    expected = {n for n in range(12) if n % 3 == 0 or 10 * n >= 100}
    wait_for(
        lambda: set(aws.succeeded(tmp_path / "calls.jsonl")) == expected,
        what="the matching messages",
    )
    wait_for(lambda: aws.queue_depth(aws_endpoint, url) == 0, what="every message deleted")
    assert sorted(aws.succeeded(tmp_path / "calls.jsonl")) == sorted(expected)
    assert filtered_out(daemon) == 13 - len(expected)


def test_kinesis_records_that_match_no_filter_are_checkpointed_past(
    tmp_path: Path, aws_endpoint: str, daemons: list[DaemonProcess]
) -> None:
    """The base64 data is decoded and matched as JSON; the checkpoint moves to the last
    record of the shard even though the last records were filtered out."""
    stream = aws.new_stream(aws_endpoint)
    [shard] = aws.shard_ids(aws_endpoint, stream)
    daemon = start(
        daemons,
        tmp_path,
        f"""\
    source: {{type: kinesis, stream: {stream}, endpoint_url: "{aws_endpoint}", starting_position: TRIM_HORIZON, poll_interval_seconds: 0.2}}
    filter_criteria:
      filters:
        - pattern: '{{"data": {{"kind": ["order"]}}}}'
""",
    )
    bodies = [{"n": n, "kind": "order" if n < 5 else "heartbeat"} for n in range(10)]
    aws.put_records(aws_endpoint, stream, bodies)
    wait_for(
        lambda: sorted(aws.succeeded(tmp_path / "calls.jsonl")) == list(range(5)), what="the orders"
    )
    last = aws.client("kinesis", aws_endpoint).get_records(
        ShardIterator=aws.client("kinesis", aws_endpoint).get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    )["Records"][-1]["SequenceNumber"]

    def saved() -> str | None:
        path = tmp_path / "state" / "checkpoints.sqlite3"
        if not path.exists():
            return None
        with sqlite3.connect(path) as connection:
            row = connection.execute(
                "SELECT value FROM checkpoints WHERE partition = ?", (shard,)
            ).fetchone()
        return row[0] if row else None

    wait_for(lambda: saved() == last, what="the checkpoint past the filtered records")
    assert filtered_out(daemon) == 5


def test_kafka_records_are_filtered_on_their_value_and_committed(
    tmp_path: Path, kafka_bootstrap: str, daemons: list[DaemonProcess]
) -> None:
    """Kafka values are decoded and matched; the group's offset covers the filtered ones."""
    topic, group = kafka.unique("orders"), kafka.unique("group")
    kafka.create_topic(kafka_bootstrap, topic, 1)
    daemon = start(
        daemons,
        tmp_path,
        f"""\
    source: {{type: kafka, bootstrap_servers: {kafka_bootstrap}, topics: [{topic}], consumer_group_id: {group}, starting_position: TRIM_HORIZON}}
    batch_size: 10
    maximum_batching_window_in_seconds: 0.2
    filter_criteria:
      filters:
        - pattern: '{{"value": {{"n": [{{"numeric": ["<", 3]}}]}}}}'
""",
        handler="keep.py:handler",
    )
    kafka.produce(kafka_bootstrap, topic, [(0, {"n": n}) for n in range(8)])
    wait_for(
        lambda: read_jsonl(tmp_path / "calls.jsonl") == [{"n": 0}, {"n": 1}, {"n": 2}], what="n < 3"
    )
    wait_for(
        lambda: kafka.committed(kafka_bootstrap, group, topic, 1) == {0: 8},
        what="offset 8 committed",
    )
    assert filtered_out(daemon) == 5


def test_redis_entries_are_filtered_as_delivered_and_acknowledged(
    tmp_path: Path, redis_url: str, daemons: list[DaemonProcess]
) -> None:
    """Redis Streams has no data key: the pattern matches the record as delivered."""
    stream, group = rd.unique("orders"), rd.unique("group")
    daemon = start(
        daemons,
        tmp_path,
        f"""\
    source: {{type: redis-streams, url: "{redis_url}", streams: [{stream}], group: {group}, starting_position: TRIM_HORIZON, block_seconds: 0.2}}
    filter_criteria:
      filters:
        - pattern: '{{"redis": {{"fields": {{"kind": ["order"]}}}}}}'
""",
        handler="keep.py:handler",
    )
    client = rd.client(redis_url)
    for n in range(6):
        client.xadd(stream, {"kind": "order" if n % 2 else "ping", "n": str(n)})
    wait_for(
        lambda: sorted(row["n"] for row in read_jsonl(tmp_path / "calls.jsonl")) == ["1", "3", "5"],
        what="the orders",
    )
    wait_for(
        lambda: rd.pending(redis_url, stream, group) == 0 and filtered_count(daemon) == 3,
        what="all acknowledged",
    )
    client.close()
    assert filtered_out(daemon) == 3


def filtered_count(daemon: DaemonProcess) -> int:
    return sum(event["count"] for event in daemon.events("records.filtered"))


def test_files_are_filtered_on_their_key(workspace: Workspace) -> None:
    """The files source's records are S3 notifications: a suffix filter on the key."""
    filters = '    filter_criteria:\n      filters:\n        - pattern: \'{"s3": {"object": {"key": [{"suffix": ".csv"}]}}}\'\n'
    config = workspace.write_config(mapping_extra=filters, top_extra="log: {level: debug}")
    daemon = workspace.daemon(config).wait_ready()
    for name in ("a.csv", "b.txt", "c.csv", "d.log"):
        (workspace.inbox / name).write_text(name)

    def keys() -> list[str]:
        return sorted(
            key
            for call in read_jsonl(workspace.record_file)
            if call["phase"] == "done"
            for key in call["keys"]
        )

    wait_for(
        lambda: keys() == ["a.csv", "c.csv"] and filtered_count(daemon) == 2, what="the csv files"
    )
    assert filtered_out(daemon) == 2

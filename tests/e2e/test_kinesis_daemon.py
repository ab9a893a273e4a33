"""lambda-bridge run against Kinesis (moto in server mode), end to end: order per shard,
partial batch responses, failure records in SQS and S3, resuming from the checkpoint
after kill -9, resharding, and tumbling windows."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel

from tests.e2e import aws_helpers as aws
from tests.exposition import value
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:recorder"

WINDOW_HANDLER = '''
"""Sums `n` per tumbling window, passing the running sum on as state."""
import base64, json, os


def handler(event, context):
    total = event["state"].get("sum", 0)
    for record in event["Records"]:
        total += json.loads(base64.b64decode(record["kinesis"]["data"]))["n"]
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps({
            "window": event["window"], "state": event["state"], "final": event["isFinalInvokeForWindow"],
            "early": event["isWindowTerminatedEarly"], "shard": event["shardId"],
            "arn": event["eventSourceARN"], "numbers": [json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in event["Records"]],
        }) + "\\n")
    return {"state": {"sum": total}}
'''


class KinesisWorkspace:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.record_file = root / "calls.jsonl"
        aws.write_handler(root)
        (root / "window_handler.py").write_text(WINDOW_HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(
        self,
        stream: str,
        mapping: str = "",
        destinations: str = "",
        handler: str = "aws_handler.py",
    ) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
functions:
  recorder: {{invoker: python, handler: "{handler}:handler", timeout: 10}}
destinations:
  none: {{type: file, path: ./unused}}
{destinations}
mappings:
  - name: events
    function: recorder
    source:
      type: kinesis
      stream: {stream}
      endpoint_url: "{self.endpoint}"
      starting_position: TRIM_HORIZON
      poll_interval_seconds: 0.2
      shard_discovery_interval_seconds: 0.5
    batch_size: 10
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{mapping}"""
        )
        return path

    def daemon(self, config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file), **env})
        self.daemons.append(daemon.start())
        return daemon

    def checkpoints(self) -> dict[str, str]:
        path = self.root / "state" / "checkpoints.sqlite3"
        if not path.exists():
            return {}
        with sqlite3.connect(path) as connection:
            return dict(connection.execute("SELECT partition, value FROM checkpoints"))


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[KinesisWorkspace]:
    workspace = KinesisWorkspace(tmp_path, aws_endpoint)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def sequence_numbers_by_shard(record_file: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for row in aws.rows(record_file):
        if row["ok"]:
            found[row["group"]].append(int(row["id"]))
    return found


def test_shards_in_order_partial_failures_and_an_sqs_failure_record(
    space: KinesisWorkspace,
) -> None:
    """Two shards: each delivers in sequence order; a partial batch response retries from
    the failed record; a poison record ends, after its retries, as a KinesisBatchInfo
    record in the SQS destination and the shard goes on (esm-reference.md 6, 10.1)."""
    stream = aws.new_stream(space.endpoint, shards=2)
    queue_url, _ = aws.new_queue(space.endpoint)
    destinations = (
        f'  failed: {{type: sqs, queue_url: "{queue_url}", endpoint_url: "{space.endpoint}"}}\n'
    )
    mapping = (
        "    function_response_types: [ReportBatchItemFailures]\n"
        "    maximum_retry_attempts: 2\n"
        "    destination_config: {on_failure: {destination: failed}}\n"
    )
    daemon = space.daemon(space.config(stream, mapping, destinations)).wait_ready()
    bodies: list[dict[str, Any]] = [{"n": n} for n in range(40)]
    bodies[17]["poison"] = True
    aws.put_records(space.endpoint, stream, bodies)

    failures = wait_for(
        lambda: aws.drain(space.endpoint, queue_url), timeout=60, what="the failure record"
    )
    assert len(failures) == 1
    [failure] = failures
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"] == FUNCTION_ARN
    assert failure["responseContext"]["functionError"] is None  # the last answer was partial
    assert "payload" not in failure, "SQS failure records carry metadata only"
    info = failure["KinesisBatchInfo"]
    assert set(info) == {
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    }
    assert info["streamArn"].endswith(f":stream/{stream}")
    # The retried batch starts at the poison record (the handler fails it and, keeping the
    # shard in order, everything after it); that whole batch is what gets discarded.
    poison_row = next(row for row in aws.rows(space.record_file) if row["n"] == 17)
    assert (
        info["startSequenceNumber"] == poison_row["id"] and info["shardId"] == poison_row["group"]
    )
    first, last = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    discarded = {
        row["n"]
        for row in aws.rows(space.record_file)
        if row["group"] == info["shardId"] and first <= int(row["id"]) <= last
    }
    assert len(discarded) == info["batchSize"]
    expected = set(range(40)) - discarded
    wait_for(
        lambda: set(aws.succeeded(space.record_file)) == expected,
        timeout=60,
        what="the other records",
    )
    assert not discarded & set(aws.succeeded(space.record_file))

    for shard, numbers in sequence_numbers_by_shard(space.record_file).items():
        assert numbers == sorted(numbers), f"{shard} went backwards"
        assert len(numbers) == len(set(numbers)), f"{shard} delivered a success twice"
    assert daemon.stop() == 0


def test_events_validate_as_kinesis_data_stream_events(
    space: KinesisWorkspace, tmp_path: Path
) -> None:
    """The event a handler receives under `lambda-bridge run` passes powertools' strict
    KinesisDataStreamModel."""
    (tmp_path / "keep_handler.py").write_text(
        "import json, os\n"
        "def handler(event, context):\n"
        "    with open(os.environ['RECORD_TO'], 'a') as out:\n"
        "        out.write(json.dumps(event) + '\\n')\n"
    )
    stream = aws.new_stream(space.endpoint)
    daemon = space.daemon(space.config(stream, handler="keep_handler.py")).wait_ready()
    aws.put_records(space.endpoint, stream, [{"n": n} for n in range(3)])

    def events() -> list[dict[str, Any]]:
        found = read_jsonl(space.record_file)
        return found if sum(len(event["Records"]) for event in found) == 3 else []

    models = [
        KinesisDataStreamModel.model_validate(event) for event in wait_for(events, what="3 records")
    ]
    data = [json.loads(record.kinesis.data) for model in models for record in model.Records]
    assert data == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert daemon.stop() == 0


def test_a_poison_record_goes_to_s3_with_the_whole_event(space: KinesisWorkspace) -> None:
    """The S3 destination stores the failure record with the discarded event under
    `payload`, at aws/lambda/<mapping uuid>/<shard id>/YYYY/MM/DD/... (esm-reference.md 10.2)."""
    s3 = aws.client("s3", space.endpoint)
    bucket = aws.unique("failures")
    s3.create_bucket(Bucket=bucket)
    stream = aws.new_stream(space.endpoint)
    destinations = f'  failed: {{type: s3, bucket: "{bucket}", endpoint_url: "{space.endpoint}"}}\n'
    mapping = "    maximum_retry_attempts: 0\n    destination_config: {on_failure: {destination: failed}}\n"
    daemon = space.daemon(
        space.config(stream, mapping, destinations), RAISE_ON_FAILURE="1"
    ).wait_ready()
    aws.put_records(space.endpoint, stream, [{"n": 0, "poison": True}])

    def objects() -> list[dict[str, Any]]:
        return s3.list_objects_v2(Bucket=bucket).get("Contents", [])

    [stored] = wait_for(objects, timeout=30, what="the failure object")
    [shard] = aws.shard_ids(space.endpoint, stream)
    parts = stored["Key"].split("/")
    assert parts[:2] == ["aws", "lambda"] and parts[3] == shard and len(parts) == 8
    assert parts[7].startswith(f"{parts[4]}-{parts[5]}-{parts[6]}T")
    document = json.loads(s3.get_object(Bucket=bucket, Key=stored["Key"])["Body"].read())
    assert document["KinesisBatchInfo"]["shardId"] == shard
    assert document["responseContext"]["functionError"] == "Unhandled"
    payload = document["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    KinesisDataStreamModel.model_validate(payload)
    assert daemon.stop() == 0


def test_kill_9_resumes_after_the_saved_checkpoint(space: KinesisWorkspace) -> None:
    """After kill -9 the mapping resumes after the last saved sequence number: nothing is
    lost, and nothing at or before the checkpoint is delivered again."""
    stream = aws.new_stream(space.endpoint)
    [shard] = aws.shard_ids(space.endpoint, stream)
    config = space.config(stream)
    daemon = space.daemon(config).wait_ready()
    aws.put_records(space.endpoint, stream, [{"n": n, "slow": 0.05} for n in range(30)])
    checkpoint = int(wait_for(lambda: space.checkpoints().get(shard), what="a saved checkpoint"))
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    saved = int(space.checkpoints()[shard])
    assert saved >= checkpoint
    delivered_before = len(aws.rows(space.record_file))
    aws.put_records(space.endpoint, stream, [{"n": n} for n in range(30, 60)])

    second = space.daemon(config).wait_ready()
    wait_for(
        lambda: set(aws.succeeded(space.record_file)) == set(range(60)), timeout=60, what="all 60"
    )
    after_restart = aws.rows(space.record_file)[delivered_before:]
    assert after_restart, "the restarted daemon delivered nothing"
    assert min(int(row["id"]) for row in after_restart) > saved
    assert second.stop() == 0


def test_a_tumbling_window_passes_state_and_ends_with_a_final_call(space: KinesisWorkspace) -> None:
    """tumbling_window_in_seconds: each invocation gets the state the previous one of its
    window returned; the final call (no records, isFinalInvokeForWindow) holds the sum of
    all the window's records (esm-reference.md 1.9)."""
    stream = aws.new_stream(space.endpoint)
    config = space.config(
        stream,
        "    tumbling_window_in_seconds: 2\n    batch_size: 3\n",
        handler="window_handler.py",
    )
    config.write_text(config.read_text().replace("    batch_size: 10\n", "", 1))
    daemon = space.daemon(config).wait_ready()
    aws.put_records(space.endpoint, stream, [{"n": n} for n in range(1, 13)])

    def finals() -> list[dict[str, Any]]:
        calls = read_jsonl(space.record_file)
        ends = [call for call in calls if call["final"]]
        counted = sum(n for call in calls for n in call["numbers"])
        return ends if counted == sum(range(1, 13)) and ends and not calls[-1]["numbers"] else []

    wait_for(finals, timeout=30, what="every window's final call")
    calls = read_jsonl(space.record_file)
    by_window: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_window[call["window"]["start"]].append(call)
    total = 0
    for window_calls in by_window.values():
        running = 0
        for call in window_calls[:-1]:
            assert call["state"] == ({"sum": running} if running else {})
            assert not call["final"] and call["numbers"]
            running += sum(call["numbers"])
        final = window_calls[-1]
        assert final["final"] and final["numbers"] == [] and final["state"] == {"sum": running}
        total += running
    assert total == sum(range(1, 13))
    assert all(call["arn"].endswith(f":stream/{stream}") and call["shard"] for call in calls)
    assert daemon.stop() == 0


def test_after_a_merge_the_child_is_read_once_both_parents_are_done(
    tmp_path: Path, aws_endpoint: str
) -> None:
    """Resharding: after MergeShards both parents are read to their end, then the child;
    no child record is delivered before the last record of either parent, and the parents
    are saved as finished so a restart does not read them again. (moto copies the parents'
    records into the merged child, which Kinesis does not; new records reach the child
    through PutRecord with an ExplicitHashKey in its range.)"""
    space = KinesisWorkspace(tmp_path, aws_endpoint)
    kinesis = aws.client("kinesis", aws_endpoint)
    stream = aws.new_stream(aws_endpoint, shards=2)
    listed = kinesis.list_shards(StreamName=stream)["Shards"]
    parents = [shard["ShardId"] for shard in listed]
    config = space.config(stream)
    daemon = space.daemon(config).wait_ready()
    try:
        aws.put_records(aws_endpoint, stream, [{"n": n} for n in range(6)])
        wait_for(
            lambda: sorted(aws.succeeded(space.record_file)) == list(range(6)),
            what="parent records",
        )
        kinesis.merge_shards(
            StreamName=stream, ShardToMerge=parents[0], AdjacentShardToMerge=parents[1]
        )
        [child] = [shard for shard in aws.shard_ids(aws_endpoint, stream) if shard not in parents]
        child_key = listed[0]["HashKeyRange"]["EndingHashKey"]
        for n in (100, 101, 102):
            kinesis.put_record(
                StreamName=stream,
                Data=json.dumps({"n": n}).encode(),
                PartitionKey="k",
                ExplicitHashKey=child_key,
            )
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=child, ShardIteratorType="TRIM_HORIZON"
        )
        held = [
            json.loads(r["Data"])["n"]
            for r in kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        ]
        assert held[-3:] == [100, 101, 102]

        def child_rows() -> list[dict[str, Any]]:
            return [row for row in aws.rows(space.record_file) if row["group"] == child]

        wait_for(
            lambda: [row["n"] for row in child_rows()] == held, timeout=30, what="child records"
        )
        rows = aws.rows(space.record_file)
        last_parent = max(index for index, row in enumerate(rows) if row["group"] in parents)
        first_child = min(index for index, row in enumerate(rows) if row["group"] == child)
        assert last_parent < first_child
        for parent in parents:
            wait_for(
                lambda parent=parent: space.checkpoints().get(parent) == "SHARD_END",
                what="the parents saved as finished",
            )
        assert daemon.stop() == 0

        before = len(aws.rows(space.record_file))
        again = space.daemon(config).wait_ready()
        again.wait_for_log("stream.reading")
        assert again.events("stream.reading")[-1]["resumed"] is True
        assert len(aws.rows(space.record_file)) == before
        assert again.stop() == 0
    finally:
        for started in space.daemons:
            started.kill()


def test_a_position_past_the_retention_resumes_at_the_oldest_record(
    space: KinesisWorkspace,
) -> None:
    """After the daemon was down past the stream's retention, its saved position points at
    records that are gone: it reads on from the oldest record left, says so
    (`stream.records_expired`), counts it (`lambda_bridge_retention_gaps_total`) and stays
    Enabled, instead of stopping the mapping. (moto keeps records: the saved position is
    set below the oldest record in the daemon's checkpoint file while it is stopped.)"""
    stream = aws.new_stream(space.endpoint)
    [shard] = aws.shard_ids(space.endpoint, stream)
    config = space.config(stream)
    daemon = space.daemon(config).wait_ready()
    aws.put_records(space.endpoint, stream, [{"n": n} for n in range(3)])
    wait_for(lambda: sorted(aws.succeeded(space.record_file)) == [0, 1, 2], what="the records")
    assert daemon.stop() == 0
    oldest = min(int(row["id"]) for row in aws.rows(space.record_file))
    with sqlite3.connect(space.root / "state" / "checkpoints.sqlite3") as connection:
        connection.execute(
            "UPDATE checkpoints SET value = ? WHERE partition = ?", (str(oldest - 1), shard)
        )
    again = space.daemon(config).wait_ready()
    [expired] = again.wait_for_log("stream.records_expired")
    assert expired["shard"] == shard and expired["oldest_sequence"] == str(oldest)
    wait_for(
        lambda: sorted(aws.succeeded(space.record_file)) == [0, 0, 1, 1, 2, 2], what="read again"
    )
    status, body = again.admin("/readyz")
    assert status == 200 and json.loads(body)["mappings"][0]["State"] == "Enabled"
    gaps = value(again.admin("/metrics")[1], "lambda_bridge_retention_gaps_total", mapping="events")
    assert gaps == 1
    assert again.stop() == 0

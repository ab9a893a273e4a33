"""One lambda-bridge daemon running every supported DynamoDB Streams case at once, against
moto: a table (with its stream), a function and a destination per case, one mapping each.

Every case's items are written before the daemon starts (the mappings read from
TRIM_HORIZON, so they see the same records in the same order as AWS did, in one read);
then the run waits until every mapping has settled all its stream's records, collects
what each function received and what reached each destination, and stops the daemon.
"""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conformance import dynamodb_cases as cases
from tests.conformance.snapshots import Case
from tests.e2e import aws_helpers as aws
from tests.exposition import samples
from tests.support import DaemonProcess, read_jsonl, wait_for

ACCOUNT = "123456789012"  # moto's account; lambda-bridge's function ARNs use it too
REGION = aws.REGION
SETTLED = (
    "filtered_out_events_total",
    "succeeded_events_total",
    "on_failure_destination_delivered_events_total",
    "dropped_events_total",
)


@dataclass
class CaseRun:
    """One case's resources and, after the run, what happened."""

    case: Case
    mapping: str
    function: str
    table: str = ""
    stream_arn: str = ""
    destination: str | None = None  # sqs, sns or s3
    queue_url: str = ""  # the SQS destination, or the queue subscribed to the SNS topic
    topic_arn: str = ""
    bucket: str = ""
    # What the stream holds (SequenceNumber -> GetRecords' record), read from moto.
    stream_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Written once the mapping is disabled (test_disabled_...), and the witness mapping
    # on the same table that shows they were there to be read.
    later_items: list[dict[str, Any]] = field(default_factory=list)
    witness: str = ""
    witness_events: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class DynamoDBRun:
    def __init__(self, root: Path, endpoint: str, selected: list[Case]) -> None:
        self.root = root
        self.endpoint = endpoint
        self.record_dir = root / "records"
        self.record_dir.mkdir()
        self.runs: dict[str, CaseRun] = {}
        for index, case in enumerate(selected):
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", case.name.removeprefix("test_")).strip("-")
            self.runs[case.name] = CaseRun(
                case, mapping=f"c{index:02d}-{slug}"[:100], function=f"fn-c{index:02d}"
            )
        self.daemon: DaemonProcess | None = None
        self.disabled: set[str] = set()

    # -- before the daemon starts -----------------------------------------------------

    def prepare(self) -> None:
        dynamodb = aws.client("dynamodb", self.endpoint)
        returns = {}
        for run in self.runs.values():
            case = run.case
            key = case.source_setup["table"]["partition_key"]
            run.table = aws.unique("conformance")
            reply = dynamodb.create_table(
                TableName=run.table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={
                    "StreamEnabled": True,
                    "StreamViewType": case.source_setup["stream"]["StreamViewType"],
                },
            )
            run.stream_arn = reply["TableDescription"]["LatestStreamArn"]
            run.destination = cases.destination_kind(case)
            self._destination(run)
            items = cases.items_of(case)
            if cases.group(case) == "disabled":
                items, run.later_items = items[:1], items[1:]
                run.witness = f"{run.function}-witness"
            for item in items:
                dynamodb.put_item(TableName=run.table, Item=item)
            run.stream_records = self._stream_records(run.stream_arn)
            if cases.handler_of(case) == "fixed_value":
                returns[run.function] = case.function_returns
        (self.record_dir / "returns.json").write_text(json.dumps(returns))
        (self.root / "conformance_handlers.py").write_text(cases.HANDLERS)

    def _destination(self, run: CaseRun) -> None:
        if run.destination == "sqs":
            run.queue_url, _ = aws.new_queue(self.endpoint)
        elif run.destination == "sns":
            run.topic_arn, run.queue_url = aws.topic_into_queue(self.endpoint)
        elif run.destination == "s3":
            run.bucket = aws.unique("failures")
            aws.client("s3", self.endpoint).create_bucket(Bucket=run.bucket)

    def _stream_records(self, stream_arn: str) -> dict[str, dict[str, Any]]:
        streams = aws.client("dynamodbstreams", self.endpoint)
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        found: dict[str, dict[str, Any]] = {}
        for shard in shards:
            iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                reply = streams.get_records(ShardIterator=iterator)
                if not reply["Records"]:
                    break
                for record in reply["Records"]:
                    found[record["dynamodb"]["SequenceNumber"]] = record
                iterator = reply.get("NextShardIterator")
        return found

    def config(self) -> Path:
        destinations: dict[str, Any] = {}
        mappings = []
        for run in self.runs.values():
            name = None
            if run.destination is not None:
                name = f"to-{run.mapping}"
                destinations[name] = self._destination_config(run)
            source = {
                "type": "dynamodb-streams",
                "table": run.table,
                "endpoint_url": self.endpoint,
                "starting_position": run.case.esm_parameters["StartingPosition"],
                "poll_interval_seconds": 0.2,
            }
            mapping = {
                "name": run.mapping,
                "function": run.function,
                "source": source,
                **cases.mapping_settings(run.case, name),
            }
            if run.mapping in self.disabled:
                mapping["enabled"] = False
            mappings.append(mapping)
            if run.witness:
                mappings.append(
                    {"name": f"{run.mapping}-witness", "function": run.witness, "source": source}
                )
        functions = {}
        for run in self.runs.values():
            handler = f"conformance_handlers.py:{cases.handler_of(run.case)}"
            functions[run.function] = {"invoker": "python", "handler": handler, "timeout": 10}
            if run.witness:
                functions[run.witness] = {
                    **functions[run.function],
                    "handler": "conformance_handlers.py:echo",
                }
        config = {
            "state_dir": "./state",
            "drain_timeout_seconds": 5,
            "aws": {"region": REGION, "account_id": ACCOUNT},
            "functions": functions,
            "destinations": destinations,
            "mappings": mappings,
        }
        path = self.root / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _destination_config(self, run: CaseRun) -> dict[str, Any]:
        common = {"endpoint_url": self.endpoint}
        if run.destination == "sqs":
            return {"type": "sqs", "queue_url": run.queue_url, **common}
        if run.destination == "sns":
            return {"type": "sns", "topic_arn": run.topic_arn, **common}
        return {"type": "s3", "bucket": run.bucket, **common}

    # -- the run -----------------------------------------------------------------------

    def start(self) -> None:
        self.daemon = DaemonProcess(
            self.config(), self.root, env={"CONFORMANCE_RECORD_DIR": str(self.record_dir)}
        ).start()
        # Generous: every mapping opens its clients and looks its table up at start.
        witnesses = sum(1 for run in self.runs.values() if run.witness)
        self.daemon.wait_for_log("mapping.started", timeout=60, count=len(self.runs) + witnesses)

    def wait_settled(self, timeout: float = 40.0) -> None:
        """Until every mapping settled (delivered, filtered out or gave up) each record of
        its stream, with no batch in flight."""
        assert self.daemon is not None
        daemon = self.daemon

        def unsettled() -> list[str]:
            status, body = daemon.admin("/metrics")
            assert status == 200, body
            values = _metrics(body)
            return [
                run.mapping
                for run in self.runs.values()
                if sum(values.get((name, run.mapping), 0) for name in SETTLED)
                < len(run.stream_records)
                or values.get(("in_flight_batches", run.mapping), 0) > 0
            ]

        deadline = time.monotonic() + timeout
        while left := unsettled():
            if time.monotonic() > deadline:
                raise AssertionError(f"cases not settled after {timeout} s: {left}")
            time.sleep(0.1)

    def collect(self) -> None:
        sqs = aws.client("sqs", self.endpoint)
        s3 = aws.client("s3", self.endpoint)
        for run in self.runs.values():
            run.events = self._events(run.function)
            if run.queue_url:
                reply = sqs.receive_message(
                    QueueUrl=run.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
                run.messages = reply.get("Messages", [])
            if run.bucket:
                listed = wait_for(
                    lambda run=run: s3.list_objects_v2(Bucket=run.bucket).get("Contents"),
                    timeout=5,
                    what=f"the failure object of {run.mapping}",
                )
                for stored in listed:
                    body = s3.get_object(Bucket=run.bucket, Key=stored["Key"])["Body"].read()
                    run.objects.append((stored["Key"], json.loads(body)))

    def disable(self) -> None:
        """UpdateEventSourceMapping Enabled=false, as a config reload: the mappings with
        items still to write are disabled, then the items are written; once the witness
        mapping on the same table has read them (and two more polls have passed), the
        disabled mapping had every chance to read them too."""
        assert self.daemon is not None
        waiting = [run for run in self.runs.values() if run.later_items]
        if not waiting:
            return
        self.disabled = {run.mapping for run in waiting}
        self.config()
        applied = len(self.daemon.events("reload.applied"))
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_for_log("reload.applied", count=applied + 1)
        dynamodb = aws.client("dynamodb", self.endpoint)
        for run in waiting:
            for item in run.later_items:
                dynamodb.put_item(TableName=run.table, Item=item)
            everything = len(run.stream_records) + len(run.later_items)
            wait_for(
                lambda run=run, everything=everything: len(self._events(run.witness)) >= everything,
                what=f"the witness of {run.mapping} to read every item",
            )
        time.sleep(0.4)  # two of the disabled mappings' polls, had they been enabled
        for run in waiting:
            run.witness_events = self._events(run.witness)
            run.events = self._events(run.function)

    def _events(self, function: str) -> list[dict[str, Any]]:
        return read_jsonl(self.record_dir / f"{function}.jsonl")

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.process is not None:
            if self.daemon.process.poll() is None:
                self.daemon.stop()
            else:
                self.daemon.kill()


def _metrics(text: str) -> dict[tuple[str, str], float]:
    """`lambda_bridge_<name>{mapping="..."}` values, by (name, mapping)."""
    return {
        (sample.name.removeprefix("lambda_bridge_"), sample.labels["mapping"]): float(sample.value)
        for sample in samples(text)
        if list(sample.labels) == ["mapping"]
    }

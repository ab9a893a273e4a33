"""lambda-bridge run against DynamoDB Streams (moto in server mode), end to end: item
changes in order, a failure record through SNS, and positions kept in the DynamoDB
checkpoint store across a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel

from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

KEEPING_HANDLER = """
import json, os


def handler(event, context):
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps(event) + "\\n")
    if any("poison" in (r["dynamodb"].get("NewImage") or {}) for r in event["Records"]):
        raise ValueError("poison item")
"""


class DynamoDBWorkspace:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.record_file = root / "events.jsonl"
        (root / "keeping_handler.py").write_text(KEEPING_HANDLER)
        self.daemons: list[DaemonProcess] = []

    def config(self, table: str, positions_table: str, topic_arn: str) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
checkpoint_store:
  type: dynamodb
  table: {positions_table}
  create_table: true
  endpoint_url: "{self.endpoint}"
functions:
  recorder: {{invoker: python, handler: "keeping_handler.py:handler", timeout: 10}}
destinations:
  failed: {{type: sns, topic_arn: "{topic_arn}", endpoint_url: "{self.endpoint}"}}
mappings:
  - name: items
    function: recorder
    source:
      type: dynamodb-streams
      table: {table}
      endpoint_url: "{self.endpoint}"
      starting_position: TRIM_HORIZON
      poll_interval_seconds: 0.1
    batch_size: 5
    maximum_retry_attempts: 1
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
"""
        )
        return path

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file)})
        self.daemons.append(daemon.start())
        return daemon

    def changes(self) -> list[tuple[str, str]]:
        """(eventName, key) of every record delivered, in delivery order."""
        return [
            (record["eventName"], record["dynamodb"]["Keys"]["pk"]["S"])
            for event in read_jsonl(self.record_file)
            for record in event["Records"]
        ]


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[DynamoDBWorkspace]:
    workspace = DynamoDBWorkspace(tmp_path, aws_endpoint)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_item_changes_in_order_a_failure_through_sns_and_positions_in_dynamodb(
    space: DynamoDBWorkspace,
) -> None:
    """INSERT, MODIFY and REMOVE records arrive in stream order as DynamoDBStreamModel
    events; a poison item's batch ends, after one retry, as a DDBStreamBatchInfo record
    published to SNS; a restarted daemon resumes from the positions in the DynamoDB
    checkpoint table and delivers nothing twice."""
    table, stream_arn = aws.new_table(space.endpoint)
    topic_arn, subscriber_url = aws.topic_into_queue(space.endpoint)
    config = space.config(table, aws.unique("positions"), topic_arn)
    daemon = space.daemon(config).wait_ready()
    dynamodb = aws.client("dynamodb", space.endpoint)
    for n in range(4):
        aws.put_item(space.endpoint, table, n)
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "item-1"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "11"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "item-2"}})
    expected = [("INSERT", f"item-{n}") for n in range(4)] + [
        ("MODIFY", "item-1"),
        ("REMOVE", "item-2"),
    ]
    wait_for(lambda: space.changes() == expected, what="the six changes in order")
    for event in read_jsonl(space.record_file):
        model = DynamoDBStreamModel.model_validate(event)
        assert all(record.eventSourceARN == stream_arn for record in model.Records)

    aws.put_item(space.endpoint, table, 99, poison=True)
    [envelope] = wait_for(
        lambda: aws.drain(space.endpoint, subscriber_url), timeout=30, what="the failure record"
    )
    failure: dict[str, Any] = json.loads(envelope["Message"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["DDBStreamBatchInfo"]
    assert info["streamArn"] == stream_arn and info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert "." not in info["approximateArrivalOfFirstRecord"], "DynamoDB times are to the second"
    assert daemon.stop() == 0

    delivered = len(space.changes())
    again = space.daemon(config).wait_ready()
    aws.put_item(space.endpoint, table, 5)
    wait_for(
        lambda: space.changes()[delivered:] == [("INSERT", "item-5")], what="only the new change"
    )
    assert again.stop() == 0

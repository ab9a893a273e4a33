"""`lambda-bridge run --template ... --create-resources` as a real process against moto:
the resources the template declares are created with its properties, and records put
into them reach the template's handler (a `runtime` function with awslambdaric)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import aws_helpers as aws
from tests.importing.support import result_files
from tests.services import free_port
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

TEMPLATES = Path(__file__).parent / "templates"


class Workspace:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.results = root / "results"
        self.stack = aws.unique("sam")
        self.daemons: list[DaemonProcess] = []

    def run(self, template: str, *extra: str, mappings: int = 1) -> DaemonProcess:
        args = [
            "--template",
            str(TEMPLATES / template / "template.yaml"),
            "--create-resources",
            "--endpoint-url",
            self.endpoint,
            "--stack-name",
            self.stack,
            "--parameter-overrides",
            f"ResultsDir={self.results}",
            *extra,
        ]
        daemon = DaemonProcess(None, self.root, extra_args=args)
        self.daemons.append(daemon.start())
        return daemon.wait_ready(mappings) if mappings else daemon

    def result_files(self, pattern: str = "*.json") -> dict[str, Any]:
        """The handler's result files, but those it is still writing."""
        return result_files(self.results, pattern)


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path, aws_endpoint)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_sqs_partial_batch_responses_and_the_queues_dead_letter_queue(space: Workspace) -> None:
    """SQS to Lambda with ReportBatchItemFailures: the queue and its DLQ are created with
    the template's redrive policy, good orders are processed by the handler (with its
    layer, Globals and resolved environment), a bad one goes to the DLQ after
    maxReceiveCount receives."""
    space.run("sqs-orders")
    sqs = aws.client("sqs", space.endpoint)
    url = sqs.get_queue_url(QueueName=f"{space.stack}-orders")["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{space.stack}-orders-dlq")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "5"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 2
    aws.send(space.endpoint, url, [{"id": n} for n in range(6)] + [{"id": 99, "bad": True}])

    wait_for(lambda: len(space.result_files()) == 6, timeout=60, what="six processed orders")
    row = space.result_files()["3.json"]
    assert row == {
        "key": "order-3",
        "stage": "dev",
        "log": "DEBUG",
        "region": "eu-west-1",
        "queue_region": "us-east-1",
        "text": "${NOT_A_VARIABLE}",
    }
    wait_for(
        lambda: aws.queue_depth(space.endpoint, dlq_url) == 1,
        timeout=60,
        what="the bad order in the DLQ",
    )
    assert aws.drain(space.endpoint, dlq_url) == [{"id": 99, "bad": True}]


def test_kinesis_tumbling_windows(space: Workspace) -> None:
    """Kinesis with TumblingWindowInSeconds: the stream is created, the handler's state
    is carried through each window and the final invocation writes the total."""
    space.run("kinesis-windows")
    kinesis = aws.client("kinesis", space.endpoint)
    stream = f"{space.stack}-ClickStream"
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert (summary["OpenShardCount"], summary["RetentionPeriodHours"]) == (1, 48)
    for count in (1, 2, 3, 4):
        kinesis.put_record(
            StreamName=stream, Data=json.dumps({"count": count}).encode(), PartitionKey="k"
        )

    def total() -> int:
        return sum(state.get("clicks", 0) for state in space.result_files("window-*.json").values())

    wait_for(lambda: total() == 10, timeout=60, what="the windows' totals to add up to 10")


def test_dynamodb_stream_with_filter_criteria(space: Workspace) -> None:
    """DynamoDB with FilterCriteria: the table is created with its stream, and only the
    urgent inserts reach the handler."""
    space.run("dynamodb-filters")
    dynamodb = aws.client("dynamodb", space.endpoint)
    table = f"{space.stack}-tickets"
    for ticket, priority in (("t1", "urgent"), ("t2", "low"), ("t3", "urgent")):
        dynamodb.put_item(TableName=table, Item={"id": {"S": ticket}, "priority": {"S": priority}})
    dynamodb.update_item(
        TableName=table,
        Key={"id": {"S": "t2"}},
        UpdateExpression="SET priority = :p",
        ExpressionAttributeValues={":p": {"S": "urgent"}},
    )
    wait_for(
        lambda: set(space.result_files()) == {"t1.json", "t3.json"},
        timeout=60,
        what="the urgent inserts",
    )
    assert space.result_files()["t1.json"] == {"event": "INSERT", "table": table}


def test_schedule_and_http_api(space: Workspace) -> None:
    """A ScheduleV2 function fires (its expression overridden to every second), and the
    HttpApi and Api routes answer on --api-listen with payload formats 2.0 and 1.0."""
    port = free_port()
    space.run(
        "schedule-http",
        "ReportSchedule=rate(1 second)",
        "--api-listen",
        f"127.0.0.1:{port}",
        mappings=2,
    )
    wait_for(
        lambda: any(
            event.get("report") == "frequent" for event in space.result_files("report-*").values()
        ),
        timeout=30,
        what="a firing of the frequent schedule",
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/orders/42", timeout=20) as answer:
        assert json.loads(answer.read()) == {
            "version": "2.0",
            "method": "GET",
            "id": "42",
            "function_version": "$LATEST",
        }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/orders",
        data=b'{"item": "tea"}',
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as answer:
        assert answer.status == 201
        assert json.loads(answer.read())["created"] == {"item": "tea"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/legacy/orders/7", timeout=20) as answer:
        assert json.loads(answer.read())["version"] == "1.0"


def test_a_reload_imports_the_template_again(space: Workspace) -> None:
    """SIGHUP re-reads the template (not a file of config): a changed BatchSize restarts
    the mapping; a template broken meanwhile is rejected with its line, the daemon keeps
    running."""
    copy = space.root / "app"
    shutil.copytree(TEMPLATES / "dynamodb-filters", copy)
    args = [
        "--template",
        str(copy / "template.yaml"),
        "--create-resources",
        "--endpoint-url",
        space.endpoint,
        "--stack-name",
        space.stack,
        "--parameter-overrides",
        f"ResultsDir={space.results}",
    ]
    daemon = DaemonProcess(None, space.root, extra_args=args)
    space.daemons.append(daemon.start())
    daemon.wait_ready()
    template = copy / "template.yaml"
    template.write_text(template.read_text().replace("BatchSize: 10", "BatchSize: 5"))
    daemon.signal(signal.SIGHUP)
    applied = daemon.wait_for_log("reload.applied")
    assert applied[0]["restarted"] == ["EscalateFunction-UrgentTickets"]
    template.write_text(
        template.read_text().replace("!GetAtt TicketsTable.StreamArn", "!GetAtt Nothing.StreamArn")
    )
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_for_log("reload.rejected")
    assert rejected[0]["problems"] == [
        f"{template}:41: Resources.EscalateFunction.Properties.Events.UrgentTickets.Properties.Stream.Fn::GetAtt: "
        "no parameter or resource named 'Nothing'"
    ]
    assert daemon.process is not None and daemon.process.poll() is None


SCHEDULED = """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.11
      Environment:
        Variables: {NAME: report}
      Events:
        Daily:
          Type: Schedule
          Properties: {Schedule: rate(1 day)}
"""


def test_a_reload_of_a_template_no_rule_foresaw_is_refused_with_one_line(tmp_path: Path) -> None:
    """A template that gains a shape no rule foresaw (a list where a mapping belongs) is
    refused as `import` refuses it, by `lambda-bridge reload` (exit 2, the one line) and
    by SIGHUP (reload.rejected); the daemon keeps running its config."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    template = tmp_path / "template.yaml"
    template.write_text(SCHEDULED)
    daemon = DaemonProcess(None, tmp_path, extra_args=["--template", str(template)]).start()
    try:
        daemon.wait_ready()
        template.write_text(SCHEDULED.replace("{NAME: report}", "[NAME]"))
        reason = f"{template}: cannot be imported: AttributeError: 'list' object has no attribute 'items'"
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "reload", "--url", daemon.admin_url()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == f"error: {reason}\nreload rejected: the running config stays\n"
        daemon.signal(signal.SIGHUP)
        rejected = daemon.wait_for_log("reload.rejected", count=2)
        assert [event["problems"] for event in rejected] == [[reason]] * 2
        assert daemon.process is not None and daemon.process.poll() is None
        assert daemon.admin("/healthz")[0] == 200
        assert not any(
            "Traceback" in line or "never retrieved" in line for line in daemon.raw_stderr
        )
    finally:
        daemon.kill()

"""`lambda-bridge run --serverless serverless.yml --create-resources` as a real process
against moto: the service's resources are created, and its sqs, stream, schedule,
httpApi, http and s3 events reach its handlers."""

from __future__ import annotations

import json
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

SERVICES = Path(__file__).parent / "serverless"


class Workspace:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        self.results = root / "results"
        self.stage = aws.unique("t").replace("-", "")
        self.daemons: list[DaemonProcess] = []

    def run(
        self, service: str, *extra: str, mappings: int, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        args = [
            "--serverless",
            str(SERVICES / service / "serverless.yml"),
            "--stage",
            self.stage,
            "--create-resources",
            "--endpoint-url",
            self.endpoint,
            *extra,
        ]
        environment = {"RESULTS_DIR": str(self.results), **(env or {})}
        daemon = DaemonProcess(None, self.root, extra_args=args, env=environment)
        self.daemons.append(daemon.start())
        return daemon.wait_ready(mappings)

    def result_files(self, pattern: str) -> dict[str, Any]:
        """The handler's result files, but those it is still writing."""
        return result_files(self.results, pattern)


@pytest.fixture
def space(tmp_path: Path, aws_endpoint: str) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path, aws_endpoint)
    yield workspace
    for daemon in workspace.daemons:
        daemon.kill()


def test_orders_service_sqs_http_schedule_and_s3(space: Workspace) -> None:
    """sqs with partial batch responses and a filter, httpApi and http routes, a schedule
    (its rate from ${env:...}) and an s3 event on a folder named by --bucket-folder."""
    port = free_port()
    space.run(
        "orders-service",
        "--api-listen",
        f"127.0.0.1:{port}",
        "--bucket-folder",
        f"orders-uploads={space.root / 'uploads'}",
        mappings=3,
        env={"NIGHTLY_RATE": "rate(1 second)"},
    )
    sqs = aws.client("sqs", space.endpoint)
    queue = f"orders-{space.stage}-orders"
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    aws.send(
        space.endpoint,
        url,
        [
            {"kind": "order", "id": 1},
            {"kind": "order", "id": 2},
            {"kind": "refund", "id": 3},
        ],
    )
    wait_for(
        lambda: len(space.result_files("order-*.json")) == 2, timeout=60, what="the two orders"
    )
    assert space.result_files("order-*.json")["order-1.json"] == {
        "text": "order 1",
        "stage": space.stage,
        "queue": queue,
        "region_text": "${AWS::Region} stays for Fn::Sub",
    }
    wait_for(
        lambda: aws.queue_depth(space.endpoint, url) == 0, timeout=30, what="the queue to empty"
    )

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/orders/5", timeout=20) as answer:
        assert json.loads(answer.read()) == {"version": "2.0", "method": "GET", "id": "5"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/legacy/orders/6", timeout=20) as answer:
        assert json.loads(answer.read()) == {"version": "1.0", "method": "GET", "id": "6"}

    (space.root / "uploads" / "incoming").mkdir(parents=True, exist_ok=True)
    (space.root / "uploads" / "incoming" / "day.csv").write_text("a,b\n")
    (space.root / "uploads" / "skipped.txt").write_text("not matched\n")

    def reports() -> list[dict[str, Any]]:
        return list(space.result_files("report-*.json").values())

    wait_for(
        lambda: any(event.get("report") == "nightly" for event in reports()),
        timeout=30,
        what="a scheduled firing",
    )
    wait_for(
        lambda: any("Records" in event for event in reports()),
        timeout=30,
        what="the file's S3 event",
    )
    keys = [event["Records"][0]["s3"]["object"]["key"] for event in reports() if "Records" in event]
    assert keys == ["incoming/day.csv"]


def test_streams_service_kinesis_windows_and_dynamodb_filters(space: Workspace) -> None:
    """stream events of both kinds: Kinesis with a tumbling window, DynamoDB with a
    filter pattern; the kafka event's broker is unreachable and holds nothing up."""
    space.run("streams-service", mappings=2, env={"KAFKA_BROKERS": f"127.0.0.1:{free_port()}"})
    kinesis = aws.client("kinesis", space.endpoint)
    stream = f"streams-{space.stage}-ClickStream"
    for count in (5, 6):
        kinesis.put_record(
            StreamName=stream, Data=json.dumps({"count": count}).encode(), PartitionKey="p"
        )
    dynamodb = aws.client("dynamodb", space.endpoint)
    table = f"streams-{space.stage}-tickets"
    dynamodb.put_item(TableName=table, Item={"id": {"S": "a"}})
    dynamodb.put_item(TableName=table, Item={"id": {"S": "a"}, "seen": {"BOOL": True}})

    def total() -> int:
        return sum(state["clicks"] for state in space.result_files("window-*.json").values())

    wait_for(lambda: total() == 11, timeout=60, what="the clicks' window total")
    wait_for(
        lambda: space.result_files("ticket-*.json") == {"ticket-a.json": {"event": "INSERT"}},
        timeout=60,
        what="the insert",
    )

"""Lambda's event source mapping API of a running daemon, driven by boto3 (and the aws cli)
against moto's SQS: config mappings listed and described with stable UUIDs, a mapping made
through the API that delivers, updates applied live (batch size, filters, disable and
enable), deletes, AWS's errors, and everything kept across a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = uuid.UUID("4f1c7a52-2b0e-5d5c-9a64-6c616d626461")
CONFIG = """\
state_dir: ./state
drain_timeout_seconds: 5
aws: {{region: us-east-1, account_id: "123456789012"}}
api: {{listen: "127.0.0.1:0", aws: {{endpoint_url: "{endpoint}"}}}}
functions:
  recorder: {{invoker: python, handler: aws_handler.py:handler, timeout: 2}}
  other: {{invoker: python, handler: aws_handler.py:handler, timeout: 2, versions: {{"1": {{}}}}}}
mappings:
  - name: inbox
    function: recorder
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
  - name: orders
    function: recorder
    source: {{type: sqs, queue_url: "{queue_url}", endpoint_url: "{endpoint}", wait_time_seconds: 1}}
    batch_size: {batch_size}
"""


class Daemon:
    """A daemon with a Lambda API, its folder and a boto3 client of that API."""

    def __init__(self, root: Path, endpoint: str, queue_url: str) -> None:
        self.root, self.endpoint, self.queue_url = root, endpoint, queue_url
        self.record_file = root / "calls.jsonl"
        aws.write_handler(root)
        self.write_config(batch_size=5)
        self.process: DaemonProcess | None = None

    def write_config(self, batch_size: int) -> None:
        (self.root / "bridge.yaml").write_text(
            CONFIG.format(endpoint=self.endpoint, queue_url=self.queue_url, batch_size=batch_size)
        )

    def start(self) -> Any:
        env = {"RECORD_TO": str(self.record_file)}
        self.process = DaemonProcess(self.root / "bridge.yaml", self.root, env=env).start()
        [listening] = self.process.wait_for_log("api.listening")
        self.url = f"http://127.0.0.1:{listening['address'].rpartition(':')[2]}"
        return self.client()

    def client(self) -> Any:
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="AKIDANY",
            aws_secret_access_key="any",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
        )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str) -> Iterator[Daemon]:
    url, _ = aws.new_queue(aws_endpoint)
    running = Daemon(tmp_path_factory.mktemp("esm"), aws_endpoint, url)
    running.start()
    yield running
    assert running.process is not None
    running.process.kill()


@pytest.fixture
def api(daemon: Daemon) -> Any:
    return daemon.client()


def error(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response  # type: ignore[no-any-return]


def received(daemon: Daemon, count: int) -> list[int]:
    def enough() -> list[int] | None:
        numbers = aws.succeeded(daemon.record_file)
        return numbers if len(numbers) >= count else None

    return wait_for(enough, timeout=20, what=f"{count} records delivered")  # type: ignore[no-any-return]


def test_config_mappings_are_listed_with_uuids_derived_from_their_names(api: Any) -> None:
    """UUIDs of config mappings are uuid5 of the name (stable across restarts); List pages
    with MaxItems and NextMarker; the shape per source type is AWS's."""
    listed = api.list_event_source_mappings()["EventSourceMappings"]
    by_uuid = {item["UUID"]: item for item in listed}
    orders = by_uuid[str(uuid.uuid5(NAMESPACE, "orders"))]
    assert str(uuid.uuid5(NAMESPACE, "inbox")) in by_uuid
    assert orders["EventSourceArn"].startswith("arn:aws:sqs:us-east-1:")
    assert orders["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:recorder"
    assert orders["EventSourceMappingArn"].endswith(f":event-source-mapping:{orders['UUID']}")
    assert (orders["State"], orders["StateTransitionReason"]) == ("Enabled", "USER_INITIATED")
    assert (orders["BatchSize"], orders["MaximumBatchingWindowInSeconds"]) == (5, 0)
    assert orders["FunctionResponseTypes"] == []
    assert "MaximumRetryAttempts" not in orders  # not a queue's setting
    first = api.list_event_source_mappings(MaxItems=1)
    assert len(first["EventSourceMappings"]) == 1
    second = api.list_event_source_mappings(MaxItems=1, Marker=first["NextMarker"])
    assert second["EventSourceMappings"][0]["UUID"] != first["EventSourceMappings"][0]["UUID"]
    pages = api.get_paginator("list_event_source_mappings").paginate(
        PaginationConfig={"PageSize": 1}
    )
    assert sum(len(page["EventSourceMappings"]) for page in pages) == len(listed)
    got = api.get_event_source_mapping(UUID=orders["UUID"])
    assert {key: got[key] for key in orders} == orders
    only = api.list_event_source_mappings(FunctionName="other")["EventSourceMappings"]
    assert all(item["FunctionArn"].endswith(":function:other") for item in only)
    by_queue = api.list_event_source_mappings(EventSourceArn=orders["EventSourceArn"])
    assert [item["UUID"] for item in by_queue["EventSourceMappings"]] == [orders["UUID"]]


def test_the_aws_cli_lists_the_mappings(daemon: Daemon) -> None:
    """`aws lambda list-event-source-mappings --endpoint-url` works unchanged."""
    if shutil.which("aws") is None:
        pytest.skip("the aws cli is not installed")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDANY", "AWS_SECRET_ACCESS_KEY": "any"}
    result = subprocess.run(
        ["aws", "lambda", "list-event-source-mappings", "--endpoint-url", daemon.url,
         "--region", "us-east-1", "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    names = {item["UUID"] for item in json.loads(result.stdout)["EventSourceMappings"]}
    assert str(uuid.uuid5(NAMESPACE, "orders")) in names


def test_errors_are_awss(api: Any, daemon: Daemon) -> None:
    """Unknown UUID 404; no source, unknown function, a version of a function, a queue
    that does not exist, a source of no supported type and a batch over 10 without a
    window 400; a config mapping cannot be deleted."""
    unknown = str(uuid.uuid4())
    for call in (api.get_event_source_mapping, api.delete_event_source_mapping):
        answer = error(call, UUID=unknown)
        assert answer["Error"]["Code"] == "ResourceNotFoundException"
        assert answer["Error"]["Message"] == "The resource you requested does not exist."
    answer = error(api.update_event_source_mapping, UUID=unknown, BatchSize=2)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 404
    _, arn = aws.new_queue(daemon.endpoint)
    cases = [
        ({"FunctionName": "recorder"}, "Unrecognized event source."),
        ({"FunctionName": "missing", "EventSourceArn": arn}, "Function does not exist"),
        (
            {"FunctionName": "recorder", "EventSourceArn": arn, "BatchSize": 11},
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
            "greater than 10",
        ),
        (
            {"FunctionName": "recorder", "EventSourceArn": arn, "MaximumRetryAttempts": 1},
            "Unsupported MaximumRetryAttempts parameter for given event source mapping type.",
        ),
        (
            {"FunctionName": "other:1", "EventSourceArn": arn},
            "lambda-bridge's event source mappings invoke a function's $LATEST: name 'other' "
            "without the qualifier '1'",
        ),
        (
            {"FunctionName": "recorder", "EventSourceArn": arn + "-not-there"},
            "Error occurred while ReceiveMessage. SQS Error Code: "
            "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue "
            "does not exist.",
        ),
    ]
    for arguments, message in cases:
        answer = error(api.create_event_source_mapping, **arguments)
        assert (answer["Error"]["Code"], answer["Error"]["Message"]) == (
            "InvalidParameterValueException",
            message,
        )
    answer = error(
        api.create_event_source_mapping,
        FunctionName="recorder",
        EventSourceArn="arn:aws:sns:us-east-1:123456789012:topic",
    )
    assert "SQS queues, Kinesis streams" in answer["Error"]["Message"]
    answer = error(api.delete_event_source_mapping, UUID=str(uuid.uuid5(NAMESPACE, "orders")))
    assert answer["Error"]["Code"] == "ResourceInUseException"
    assert "config file" in answer["Error"]["Message"]
    assert api.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []


def test_an_api_made_sqs_mapping_delivers_and_is_updated_disabled_enabled_and_deleted(
    api: Any, daemon: Daemon
) -> None:
    """Create answers Creating and records flow; a second mapping of the same function and
    queue is a 409; FilterCriteria and BatchSize apply at once; disabling stops delivery,
    enabling resumes it; Delete answers Deleting and the mapping is gone."""
    # A long poll cut short by an update may still take a message on the server side: it
    # comes back after the queue's visibility timeout, kept short here.
    url, arn = aws.new_queue(daemon.endpoint, visibility=2)
    created = api.create_event_source_mapping(FunctionName="other", EventSourceArn=arn, BatchSize=2)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (created["State"], created["BatchSize"], created["EventSourceArn"]) == (
        "Creating",
        2,
        arn,
    )
    mapping = created["UUID"]
    aws.send(daemon.endpoint, url, [{"n": n} for n in range(3)])
    assert sorted(received(daemon, 3)) == [0, 1, 2]
    assert api.get_event_source_mapping(UUID=mapping)["State"] == "Enabled"

    conflict = error(api.create_event_source_mapping, FunctionName="other", EventSourceArn=arn)
    assert conflict["Error"]["Code"] == "ResourceConflictException"
    assert f"existing mapping with UUID {mapping}" in conflict["Error"]["Message"]

    pattern = json.dumps({"body": {"n": [{"numeric": [">=", 100]}]}})
    updated = api.update_event_source_mapping(
        UUID=mapping, BatchSize=4, FilterCriteria={"Filters": [{"Pattern": pattern}]}
    )
    assert (updated["State"], updated["BatchSize"]) == ("Updating", 4)
    assert updated["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
    aws.send(daemon.endpoint, url, [{"n": 5}, {"n": 100}, {"n": 101}])
    assert sorted(received(daemon, 5)) == [0, 1, 2, 100, 101]
    wait_for(lambda: aws.queue_depth(daemon.endpoint, url) == 0, what="the filtered one deleted")

    disabled = api.update_event_source_mapping(UUID=mapping, Enabled=False)
    assert disabled["State"] == "Disabling"
    assert api.get_event_source_mapping(UUID=mapping)["State"] == "Disabled"
    aws.send(daemon.endpoint, url, [{"n": 200}])
    time.sleep(1.5)  # what a disabled mapping would have needed to take it
    assert aws.queue_depth(daemon.endpoint, url) == 1
    assert api.update_event_source_mapping(UUID=mapping, Enabled=True)["State"] == "Enabling"
    assert 200 in received(daemon, 6)

    deleted = api.delete_event_source_mapping(UUID=mapping)
    assert (deleted["State"], deleted["ResponseMetadata"]["HTTPStatusCode"]) == ("Deleting", 202)
    answer = error(api.get_event_source_mapping, UUID=mapping)
    assert answer["Error"]["Code"] == "ResourceNotFoundException"


def test_api_mappings_and_changes_survive_a_restart_until_the_file_changes(
    tmp_path: Path, aws_endpoint: str
) -> None:
    """An API-made mapping keeps its UUID and settings after a restart, as does an API
    change of a config mapping; once the file's own entry changes, the file wins."""
    url, arn = aws.new_queue(aws_endpoint)
    daemon = Daemon(tmp_path, aws_endpoint, url)
    try:
        api = daemon.start()
        created = api.create_event_source_mapping(
            FunctionName="other", EventSourceArn=arn, BatchSize=3, Enabled=False
        )
        assert created["State"] == "Disabled"
        orders = str(uuid.uuid5(NAMESPACE, "orders"))
        assert api.update_event_source_mapping(UUID=orders, BatchSize=7)["BatchSize"] == 7
        overlay = tmp_path / "state" / "event-source-mappings.json"
        assert overlay.stat().st_mode & 0o077 == 0
        assert daemon.process is not None and daemon.process.stop() == 0

        api = daemon.start()
        again = api.get_event_source_mapping(UUID=created["UUID"])
        assert (again["BatchSize"], again["State"], again["EventSourceArn"]) == (3, "Disabled", arn)
        assert again["LastModified"] == created["LastModified"]
        assert api.get_event_source_mapping(UUID=orders)["BatchSize"] == 7

        daemon.write_config(batch_size=6)
        daemon.process.signal(signal.SIGHUP)
        daemon.process.wait_for_log("api.change_dropped", mapping="orders")
        daemon.process.wait_for_log("reload.applied")
        assert api.get_event_source_mapping(UUID=orders)["BatchSize"] == 6
        assert api.get_event_source_mapping(UUID=created["UUID"])["BatchSize"] == 3
    finally:
        if daemon.process is not None:
            daemon.process.kill()

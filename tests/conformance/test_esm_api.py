"""AWS's recorded answers of the event source mapping API (Create, Get, Update, Delete and
their errors) compared with what lambda-bridge's API answers for the same calls: one
daemon with Lambda's API over moto's SQS, Kinesis and DynamoDB Streams, each case making
its own queue, stream or table. Responses are compared as boto3 returns them, with
`ResponseMetadata` cut to the status code as the recordings keep it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conformance.snapshots import Matcher, load_cases, missing_recordings
from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess

ACCOUNT = "123456789012"  # moto's account, so that the ARNs it makes are the daemon's too
CONFIG = """\
state_dir: ./state
aws: {{region: us-east-1, account_id: "{account}"}}
api: {{listen: "127.0.0.1:0", aws: {{endpoint_url: "{endpoint}"}}}}
functions:
  function-one: {{invoker: python, handler: handler.py:handler}}
  function-two: {{invoker: python, handler: handler.py:handler}}
destinations:
  failures: {{type: sqs, queue_arn: "{failures}", endpoint_url: "{endpoint}"}}
"""


class Api:
    def __init__(self, client: Any, failures_arn: str, endpoint: str) -> None:
        self.client, self.failures_arn, self.endpoint = client, failures_arn, endpoint

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """The answer as the recordings keep it, success or error."""
        try:
            answer: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            answer = dict(exc.response)
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        answer["ResponseMetadata"] = {"HTTPHeaders": {}, "HTTPStatusCode": status}
        return answer


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str) -> Iterator[Api]:
    if not load_cases("sqs"):
        missing_recordings()
    root: Path = tmp_path_factory.mktemp("esm-api")
    (root / "handler.py").write_text("def handler(event, context):\n    return None\n")
    _, failures = aws.new_queue(aws_endpoint)
    (root / "bridge.yaml").write_text(
        CONFIG.format(account=ACCOUNT, endpoint=aws_endpoint, failures=failures)
    )
    daemon = DaemonProcess(root / "bridge.yaml", root).start()
    [listening] = daemon.wait_for_log("api.listening")
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{listening['address'].rpartition(':')[2]}",
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield Api(client, failures, aws_endpoint)
    daemon.kill()


def _datetimes(recorded: Any) -> Any:
    """The `test_lambda_api` recordings write API datetimes as plain `datetime` (the
    snapshots' README): the `<datetime>` placeholder."""
    if isinstance(recorded, dict):
        return {key: _datetimes(value) for key, value in recorded.items()}
    return "<datetime>" if recorded == "datetime" else recorded


def compare(source: str, name: str, actual: dict[str, Any]) -> None:
    recorded = _datetimes(load_cases(source)[name].recorded)
    matcher = Matcher(account=ACCOUNT, region="us-east-1")
    matcher.check({key: recorded[key] for key in actual}, actual)


def _stream(endpoint: str) -> str:
    name = aws.new_stream(endpoint)
    found = aws.client("kinesis", endpoint).describe_stream_summary(StreamName=name)
    return str(found["StreamDescriptionSummary"]["StreamARN"])


def test_sqs_duplicate_event_source_mappings(api: Api) -> None:
    """Create answers `Creating` with SQS's fields; the same function and queue again is
    409 naming the existing UUID."""
    _, queue = aws.new_queue(api.endpoint)
    create: Callable[[], dict[str, Any]] = lambda: api.call(  # noqa: E731
        "create_event_source_mapping", FunctionName="function-one", EventSourceArn=queue
    )
    compare("sqs", "test_duplicate_event_source_mappings", {"create": create(), "error": create()})


def test_sqs_event_source_mapping_default_batch_size(api: Api) -> None:
    """SQS's default BatchSize 10; 11 without a batching window refused on update and create."""
    _, queue = aws.new_queue(api.endpoint)
    created = api.call(
        "create_event_source_mapping", FunctionName="function-one", EventSourceArn=queue
    )
    invalid_update = api.call("update_event_source_mapping", UUID=created["UUID"], BatchSize=11)
    _, other = aws.new_queue(api.endpoint)
    invalid_create = api.call(
        "create_event_source_mapping",
        FunctionName="function-one",
        EventSourceArn=other,
        BatchSize=11,
    )
    compare(
        "sqs",
        "test_event_source_mapping_default_batch_size",
        {
            "create-event-source-mapping": created,
            "invalid-update-event-source-mapping": invalid_update,
            "invalid-create-event-source-mapping": invalid_create,
        },
    )


def test_sqs_event_source_mapping_exceptions(api: Api) -> None:
    """Unknown UUIDs 404; no EventSourceArn, an unknown function and OnSuccess on SQS 400."""
    unknown = "00000000-0000-4000-8000-000000000000"
    _, queue = aws.new_queue(api.endpoint)
    compare(
        "sqs",
        "test_event_source_mapping_exceptions",
        {
            "get_unknown_uuid": api.call("get_event_source_mapping", UUID=unknown),
            "delete_unknown_uuid": api.call("delete_event_source_mapping", UUID=unknown),
            "update_unknown_uuid": api.call(
                "update_event_source_mapping", UUID=unknown, Enabled=False
            ),
            "create_no_event_source_arn": api.call(
                "create_event_source_mapping", FunctionName="function-one"
            ),
            "create_unknown_params": api.call(
                "create_event_source_mapping", FunctionName="no-such", EventSourceArn=queue
            ),
            "destination_config_failure": api.call(
                "create_event_source_mapping",
                FunctionName="function-one",
                EventSourceArn=queue,
                DestinationConfig={"OnSuccess": {"Destination": api.failures_arn}},
            ),
        },
    )


def test_kinesis_duplicate_event_source_mappings(api: Api) -> None:
    """A Kinesis mapping shows the stream defaults (-1 retries and age, OnFailure {} ...);
    the same function and stream again is 409 in Kinesis's words."""
    stream = _stream(api.endpoint)
    arguments = {
        "FunctionName": "function-two",
        "EventSourceArn": stream,
        "StartingPosition": "LATEST",
    }
    create = api.call("create_event_source_mapping", **arguments)
    error = api.call("create_event_source_mapping", **arguments)
    compare("kinesis", "test_duplicate_event_source_mappings", {"create": create, "error": error})


def test_kinesis_create_event_source_validation(api: Api) -> None:
    """No StartingPosition is an InvalidParameterValueException; an unknown one a
    ValidationException listing the three positions."""
    stream = _stream(api.endpoint)
    base = {"FunctionName": "function-one", "EventSourceArn": stream}
    compare(
        "kinesis",
        "test_create_event_source_validation_kinesis",
        {
            "no_starting_position": api.call("create_event_source_mapping", **base),
            "invalid_starting_position": api.call(
                "create_event_source_mapping", **base, StartingPosition="invalid"
            ),
        },
    )


def test_dynamodb_event_source_mapping_lifecycle(api: Api) -> None:
    """Create, Get and Delete of a DynamoDB Streams mapping with an SQS on-failure
    destination: every default AWS shows, `Creating`, `Enabled`, `Deleting`."""
    _, stream = aws.new_table(api.endpoint)
    created = api.call(
        "create_event_source_mapping",
        FunctionName="function-one",
        EventSourceArn=stream,
        BatchSize=1,
        StartingPosition="TRIM_HORIZON",
        MaximumBatchingWindowInSeconds=1,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": api.failures_arn}},
    )
    got = api.call("get_event_source_mapping", UUID=created["UUID"])
    deleted = api.call("delete_event_source_mapping", UUID=created["UUID"])
    compare(
        "dynamodb",
        "test_event_source_mapping_lifecycle",
        {"create_response": created, "get_response": got, "delete_response": deleted},
    )

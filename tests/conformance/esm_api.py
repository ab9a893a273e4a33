"""What the event source mapping API comparisons share: one daemon with Lambda's API over
moto's SQS, Kinesis and DynamoDB Streams (its functions record the events they get), a
client that keeps answers as the recordings do, and the comparison with a recording."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conformance.snapshots import ACCOUNT as RECORDED_ACCOUNT
from tests.conformance.snapshots import Matcher, load_cases, missing_recordings
from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, read_jsonl

ACCOUNT = "123456789012"  # moto's account, so that the ARNs it makes are the daemon's too
REGION = "us-east-1"
CONFIG = """\
state_dir: ./state
aws: {{region: {region}, account_id: "{account}"}}
api: {{listen: "127.0.0.1:0", aws: {{endpoint_url: "{endpoint}"}}}}
functions:
  function-one: {{invoker: python, handler: handler.py:handler}}
  function-two: {{invoker: python, handler: handler.py:handler}}
destinations:
  failures: {{type: sqs, queue_arn: "{failures}", endpoint_url: "{endpoint}"}}
"""
HANDLER = """\
import json, os


def handler(event, context):
    with open(context.function_name + ".jsonl", "a") as out:
        out.write(json.dumps(event) + "\\n")
"""


class Api:
    def __init__(
        self, client: Any, failures_arn: str, endpoint: str, daemon: DaemonProcess
    ) -> None:
        self.client, self.failures_arn, self.endpoint = client, failures_arn, endpoint
        self.daemon = daemon

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """The answer as the recordings keep it, success or error."""
        try:
            answer: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            answer = dict(exc.response)
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        answer["ResponseMetadata"] = {"HTTPHeaders": {}, "HTTPStatusCode": status}
        return answer

    def events(self, function: str) -> list[dict[str, Any]]:
        """The events `function` got, in order."""
        return read_jsonl(self.daemon.cwd / f"{function}.jsonl")


def serve(tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str) -> Iterator[Api]:
    """The body of a module's `api` fixture: the daemon, stopped at the end."""
    if not load_cases("sqs"):
        missing_recordings()
    root: Path = tmp_path_factory.mktemp("esm-api")
    (root / "handler.py").write_text(HANDLER)
    _, failures = aws.new_queue(aws_endpoint)
    (root / "bridge.yaml").write_text(
        CONFIG.format(account=ACCOUNT, region=REGION, endpoint=aws_endpoint, failures=failures)
    )
    daemon = DaemonProcess(root / "bridge.yaml", root).start()
    [listening] = daemon.wait_for_log("api.listening")
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{listening['address'].rpartition(':')[2]}",
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield Api(client, failures, aws_endpoint, daemon)
    daemon.kill()


def _datetimes(recorded: Any) -> Any:
    """The `test_lambda_api` recordings write API datetimes as plain `datetime` (the
    snapshots' README): the `<datetime>` placeholder."""
    if isinstance(recorded, dict):
        return {key: _datetimes(value) for key, value in recorded.items()}
    return "<datetime>" if recorded == "datetime" else recorded


def compare(source: str, name: str, actual: dict[str, Any]) -> None:
    """`actual` (by recorded key) matches what AWS answered; keys not given (answers of
    other services, such as CreateTable's) are not compared."""
    recorded = _datetimes(load_cases(source)[name].recorded)
    matcher = Matcher(account=ACCOUNT, region=REGION)
    matcher.check({key: recorded[key] for key in actual}, actual)


def recorded_arn(text: str) -> str:
    """The ARN a recorded message names, as this account and region write it: the cases
    of sources that do not exist name them literally."""
    arn = text[text.index("arn:") :].split(maxsplit=1)[0]
    return (
        arn.replace("arn:<partition>:", "arn:aws:")
        .replace("<region>", REGION)
        .replace(RECORDED_ACCOUNT, ACCOUNT)
    )


def stream_arn(endpoint: str) -> str:
    name = aws.new_stream(endpoint)
    found = aws.client("kinesis", endpoint).describe_stream_summary(StreamName=name)
    return str(found["StreamDescriptionSummary"]["StreamARN"])

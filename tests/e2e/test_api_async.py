"""Asynchronous invocation through Lambda's API, driven by boto3 against a running daemon:
202 after a durable commit, Lambda's retries (scaled by retry_delay_scale), the records of
esm-reference.md 10.5 in file, SQS, EventBridge and `lambda` destinations, the dead-letter
queue's message attributes, reserved concurrency 0, the event-invoke-config API, and an
event accepted just before a kill -9 that still runs after the restart."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.exposition import value
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ACCOUNT = "123456789012"

HANDLER = """\
import json, os, time

def handler(event, context):
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps({"event": event, "request_id": context.aws_request_id}) + "\\n")
    time.sleep(event.get("sleep", 0) if isinstance(event, dict) else 0)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": event}
"""

CONFIG = """\
state_dir: ./state
aws: {{region: us-east-1, account_id: "{account}"}}
api: {{listen: "127.0.0.1:0"}}
destinations:
  records: {{type: file, path: ./records}}
  dlq: {{type: sqs, queue_url: "{dlq}", endpoint_url: "{aws}"}}
  failures: {{type: sqs, queue_url: "{failures}", endpoint_url: "{aws}"}}
  bus: {{type: eventbridge, event_bus: default, endpoint_url: "{aws}"}}
  to-sink: {{type: lambda, function: sink}}
functions:
  echo:
    invoker: python
    handler: handler.py:handler
    async: {{retry_delay_scale: 0.01, destinations: {{on_success: records, on_failure: records}},
             dead_letter: dlq}}
    versions: {{"1": {{timeout: 5}}, "2": {{timeout: 6}}}}
    aliases: {{live: {{version: "1"}}}}
  once:
    invoker: python
    handler: handler.py:handler
    async: {{maximum_retry_attempts: 0, destinations: {{on_failure: failures}}}}
  closed:
    invoker: python
    handler: handler.py:handler
    reserved_concurrency: 0
    async: {{destinations: {{on_failure: records}}}}
  forward:
    invoker: python
    handler: handler.py:handler
    async: {{destinations: {{on_success: to-sink}}}}
  sink: {{invoker: python, handler: handler.py:handler}}
  announce:
    invoker: python
    handler: handler.py:handler
    async: {{destinations: {{on_success: bus}}}}
  plain: {{invoker: python, handler: handler.py:handler}}
"""


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def lambda_client(endpoint: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="AKIDANY",
        aws_secret_access_key="anything",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


class Bridge:
    def __init__(self, root: Path, daemon: DaemonProcess, aws_endpoint: str) -> None:
        self.root = root
        self.daemon = daemon
        self.aws_endpoint = aws_endpoint
        [listening] = daemon.wait_for_log("api.listening")
        self.endpoint = f"http://{listening['address']}"
        self.client = lambda_client(self.endpoint)
        self.queues: dict[str, str] = {}

    def event(self, function: str, payload: dict[str, Any]) -> str:
        """Invoke asynchronously; the request id."""
        response = self.client.invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(payload)
        )
        assert response["StatusCode"] == 202
        assert response["Payload"].read() == b""
        return str(response["ResponseMetadata"]["RequestId"])

    def handled(self, request_id: str, count: int = 1) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            rows = [
                row
                for row in read_jsonl(self.root / "invocations.jsonl")
                if row["request_id"] == request_id
            ]
            return rows if len(rows) >= count else None

        return wait_for(found, 15, what=f"{count} invocations of {request_id}")  # type: ignore[no-any-return]

    def record(self, function: str, request_id: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for row in read_jsonl(self.root / "records" / f"{function}.async.jsonl"):
                if row["requestContext"]["requestId"] == request_id:
                    return row
            return None

        return wait_for(found, 15, what=f"the record of {request_id}")  # type: ignore[no-any-return]

    def message(self, queue: str, request_id: str) -> dict[str, Any]:
        """The message of `queue` about `request_id` (a record naming it, or a dead-letter
        message whose RequestID it is)."""
        sqs = aws("sqs", self.aws_endpoint)

        def about(message: dict[str, Any]) -> bool:
            attribute = message.get("MessageAttributes", {}).get("RequestID", {})
            return attribute.get("StringValue") == request_id or request_id in message["Body"]

        def received() -> dict[str, Any] | None:
            reply = sqs.receive_message(
                QueueUrl=self.queues[queue],
                WaitTimeSeconds=1,
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
            )
            found = [message for message in reply.get("Messages", []) if about(message)]
            return found[0] if found else None

        return wait_for(received, 15, what=f"a message in {queue}")  # type: ignore[no-any-return]


def start_bridge(root: Path, aws_endpoint: str) -> Bridge:
    sqs = aws("sqs", aws_endpoint)
    queues = {
        name: sqs.create_queue(QueueName=f"async-{name}-{root.name}")["QueueUrl"]
        for name in ("dlq", "failures", "announced")
    }
    (root / "handler.py").write_text(HANDLER)
    (root / "bridge.yaml").write_text(CONFIG.format(account=ACCOUNT, aws=aws_endpoint, **queues))
    daemon = DaemonProcess(
        root / "bridge.yaml", root, env={"RECORD_TO": str(root / "invocations.jsonl")}
    ).start()
    bridge = Bridge(root, daemon, aws_endpoint)
    bridge.queues = queues
    return bridge


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str) -> Iterator[Bridge]:
    started = start_bridge(tmp_path_factory.mktemp("async"), aws_endpoint)
    yield started
    started.daemon.kill()


def test_event_answers_202_runs_the_handler_and_records_its_success(bridge: Bridge) -> None:
    """Event: 202 with an empty body, the handler runs with the API's request id, and the
    on-success record has the shape of esm-reference.md 10.5."""
    request_id = bridge.event("echo", {"order": 7})
    [row] = bridge.handled(request_id)
    assert row["event"] == {"order": 7}
    record = bridge.record("echo", request_id)
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"order": 7}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"ok": {"order": 7}}


def test_a_failing_event_is_tried_three_times_then_recorded_and_dead_lettered(
    bridge: Bridge,
) -> None:
    """A function error is retried twice (waits of 1 and 2 minutes scaled by 0.01), then
    the on-failure record says RetriesExhausted with approximateInvokeCount 3, and the
    dead-letter queue gets the original event with RequestID, ErrorCode and ErrorMessage."""
    request_id = bridge.event("echo", {"fail": True, "n": 1})
    record = bridge.record("echo", request_id)
    assert len(bridge.handled(request_id, 3)) == 3
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"fail": True, "n": 1}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorMessage"] == "asked to fail"
    assert record["responsePayload"]["errorType"] == "ValueError"
    message = bridge.message("dlq", request_id)
    assert json.loads(message["Body"]) == {"fail": True, "n": 1}
    attributes = message["MessageAttributes"]
    assert attributes["RequestID"] == {"DataType": "String", "StringValue": request_id}
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"]["DataType"] == "String"
    assert attributes["ErrorMessage"]["StringValue"] == "asked to fail"


def test_no_retries_sends_the_first_failure_to_an_sqs_destination(bridge: Bridge) -> None:
    """maximum_retry_attempts 0: one invocation, then the record goes to SQS."""
    request_id = bridge.event("once", {"fail": True})
    record = json.loads(bridge.message("failures", request_id)["Body"])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert len(bridge.handled(request_id)) == 1


def test_reserved_concurrency_zero_throttles_invoke_and_fails_events_at_once(
    bridge: Bridge,
) -> None:
    """Reserved concurrency 0: a synchronous Invoke is throttled (429), an event goes to
    the on-failure destination without being invoked (esm-reference.md 12)."""
    with pytest.raises(ClientError) as raised:
        bridge.client.invoke(FunctionName="closed", Payload=b"{}")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    request_id = bridge.event("closed", {"n": 2})
    record = bridge.record("closed", request_id)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in record
    assert not [
        row
        for row in read_jsonl(bridge.root / "invocations.jsonl")
        if row["request_id"] == request_id
    ]


def test_a_lambda_destination_invokes_the_other_function_with_the_record(bridge: Bridge) -> None:
    """`{type: lambda, function: sink}`: the record becomes sink's asynchronous event."""
    request_id = bridge.event("forward", {"n": 3})

    def sink_got_it() -> dict[str, Any] | None:
        for row in read_jsonl(bridge.root / "invocations.jsonl"):
            event = row["event"]
            if event.get("requestContext", {}).get("requestId") == request_id:
                return dict(event)
        return None

    event = wait_for(sink_got_it, 15, what="the record at the sink")
    assert event["requestContext"]["condition"] == "Success"
    assert event["requestPayload"] == {"n": 3}


def test_an_eventbridge_destination_puts_lambdas_envelope(bridge: Bridge) -> None:
    """PutEvents with source `lambda`, the Success detail type, the bus and function ARNs
    as resources and the record as detail (esm-reference.md 10.5); read back through a
    rule that targets an SQS queue."""
    sqs, events = aws("sqs", bridge.aws_endpoint), aws("events", bridge.aws_endpoint)
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=bridge.queues["announced"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    rule = f"async-results-{bridge.root.name}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["lambda"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    request_id = bridge.event("announce", {"n": 4})
    envelope = json.loads(bridge.message("announced", request_id)["Body"])
    assert envelope["source"] == "lambda"
    assert envelope["detail-type"] == "Lambda Function Invocation Result - Success"
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:announce:$LATEST"
    assert envelope["resources"] == [
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
        function_arn,
    ]
    assert envelope["detail"]["requestContext"]["requestId"] == request_id
    assert envelope["detail"]["requestContext"]["functionArn"] == function_arn


def test_event_invoke_config_through_the_api_is_effective_at_once(bridge: Bridge) -> None:
    """Put/Get/Update/List/DeleteFunctionEventInvokeConfig: destinations by ARN, applied
    to the next event; an ARN of no configured destination is refused."""
    client = bridge.client
    with pytest.raises(ClientError) as raised:
        client.get_function_event_invoke_config(FunctionName="plain")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    failures_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:async-failures-{bridge.root.name}"
    put = client.put_function_event_invoke_config(
        FunctionName="plain",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}},
    )
    assert put["FunctionArn"].endswith(":function:plain:$LATEST")
    got = client.get_function_event_invoke_config(FunctionName="plain")
    assert got["MaximumRetryAttempts"] == 0
    assert got["DestinationConfig"]["OnFailure"] == {"Destination": failures_arn}
    updated = client.update_function_event_invoke_config(
        FunctionName="plain", MaximumEventAgeInSeconds=600
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 600)
    listed = client.list_function_event_invoke_configs(FunctionName="plain")
    assert [c["MaximumEventAgeInSeconds"] for c in listed["FunctionEventInvokeConfigs"]] == [600]

    request_id = bridge.event("plain", {"fail": True})
    record = json.loads(bridge.message("failures", request_id)["Body"])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1

    with pytest.raises(ClientError) as raised:
        client.put_function_event_invoke_config(
            FunctionName="plain",
            DestinationConfig={"OnFailure": {"Destination": f"{failures_arn}-unknown"}},
        )
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"
    client.delete_function_event_invoke_config(FunctionName="plain")
    with pytest.raises(ClientError):
        client.get_function_event_invoke_config(FunctionName="plain")


def test_an_event_over_1_mb_is_refused(bridge: Bridge) -> None:
    """Lambda's asynchronous payload limit: 413 RequestTooLargeException."""
    payload = json.dumps({"blob": "x" * (1024 * 1024)})
    with pytest.raises(ClientError) as raised:
        bridge.client.invoke(FunctionName="plain", InvocationType="Event", Payload=payload)
    assert raised.value.response["Error"]["Code"] == "RequestTooLargeException"


def test_metrics_count_outcomes_per_function(bridge: Bridge) -> None:
    """/metrics shows each queue's depth and its events by outcome."""
    request_id = bridge.event("echo", {"n": 5})
    bridge.record("echo", request_id)

    def counted() -> str | None:
        _, text = bridge.daemon.admin("/metrics")
        success = value(
            text, "lambda_bridge_async_events_total", function="echo", outcome="success"
        )
        return text if success else None

    text = wait_for(counted, 10, what="async metrics")
    assert value(text, "lambda_bridge_async_queue_depth", function="echo") is not None
    status, body = bridge.daemon.admin("/readyz")
    assert status == 200
    assert any(entry["name"] == "async:echo" for entry in json.loads(body)["mappings"])


def test_an_event_accepted_before_kill_9_runs_after_the_restart(
    tmp_path: Path, aws_endpoint: str
) -> None:
    """An event the daemon was invoking when it was killed (-9) is still queued and runs
    again, to completion, after the restart (at least once)."""
    first = start_bridge(tmp_path, aws_endpoint)
    try:
        request_id = first.event("echo", {"sleep": 30})
        first.handled(request_id)
        first.daemon.signal(signal.SIGKILL)
        first.daemon.wait(10)
    finally:
        first.daemon.kill()
    config = tmp_path / "bridge.yaml"
    # The same function, now answering at once.
    (tmp_path / "handler.py").write_text(HANDLER.replace('event.get("sleep", 0)', "0"))
    second = DaemonProcess(
        config, tmp_path, env={"RECORD_TO": str(tmp_path / "invocations.jsonl")}
    ).start()
    try:
        restarted = Bridge(tmp_path, second, aws_endpoint)
        assert len(restarted.handled(request_id, 2)) == 2
        record = restarted.record("echo", request_id)
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestPayload"] == {"sleep": 30}
    finally:
        second.kill()


def test_an_event_for_a_version_or_alias_runs_it_and_its_record_names_it(bridge: Bridge) -> None:
    """The qualifier is queued with the event: `:2` runs version 2, `:live` its version 1;
    the records name the executed version and the ARN qualified as it was invoked."""
    for qualifier, executed in (("2", "2"), ("live", "1")):
        request_id = bridge.event(f"echo:{qualifier}", {"qualified": qualifier})
        record = bridge.record("echo", request_id)
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo:{qualifier}"
        assert record["requestContext"]["functionArn"] == arn
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": executed}
    with pytest.raises(ClientError) as unknown:
        bridge.event("echo:7", {})
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"

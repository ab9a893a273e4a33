"""AWS's recording of an asynchronous invocation that fails into the function's SQS
dead-letter queue (`test_sqs_queue_as_lambda_dead_letter_queue`), replayed through
lambda-bridge's API: a function with `dead_letter` on a moto queue, MaximumRetryAttempts 0
set with PutFunctionEventInvokeConfig, an `Event` invocation whose handler raises, and the
dead-letter message (the original event, with RequestID, ErrorCode and ErrorMessage)
compared with the recorded one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.conformance.snapshots import Matcher, load_cases, missing_recordings
from tests.e2e import aws_helpers as aws
from tests.support import DaemonProcess, wait_for

ACCOUNT = "123456789012"  # moto's account: the queue ARNs it makes are the daemon's too
CASE = "test_sqs_queue_as_lambda_dead_letter_queue"
# LocalStack's lambda_integration function, as the recording's `function_behaviour` says.
HANDLER = """\
def handler(event, context):
    if "raise_error" in event:
        raise Exception("Test exception (this is intentional)")
    return event
"""
CONFIG = """\
state_dir: ./state
aws: {{region: us-east-1, account_id: "{account}"}}
api: {{listen: "127.0.0.1:0"}}
destinations:
  dlq: {{type: sqs, queue_arn: "{dlq_arn}", endpoint_url: "{endpoint}"}}
functions:
  integration:
    invoker: python
    handler: handler.py:handler
    async: {{dead_letter: dlq}}
"""


def _status_only(answer: dict[str, Any]) -> dict[str, Any]:
    status = answer["ResponseMetadata"]["HTTPStatusCode"]
    return {**answer, "ResponseMetadata": {"HTTPHeaders": {}, "HTTPStatusCode": status}}


def test_a_failed_event_reaches_the_functions_dead_letter_queue(
    tmp_path: Path, aws_endpoint: str
) -> None:
    case = load_cases("sqs").get(CASE)
    if case is None:
        missing_recordings()
    assert case is not None
    dlq_url, dlq_arn = aws.new_queue(aws_endpoint)
    (tmp_path / "handler.py").write_text(HANDLER)
    (tmp_path / "bridge.yaml").write_text(
        CONFIG.format(account=ACCOUNT, dlq_arn=dlq_arn, endpoint=aws_endpoint)
    )
    daemon = DaemonProcess(tmp_path / "bridge.yaml", tmp_path).start()
    try:
        [listening] = daemon.wait_for_log("api.listening")
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://{listening['address']}",
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),
        )
        client.put_function_event_invoke_config(
            FunctionName="integration", **case.source_setup["event_invoke_config"]
        )
        configuration = client.get_function_configuration(FunctionName="integration")
        client.invoke(
            FunctionName="integration", InvocationType="Event", Payload=b'{"raise_error": 1}'
        )
        sqs = aws.client("sqs", aws_endpoint)

        def received() -> dict[str, Any] | None:
            answer = sqs.receive_message(
                QueueUrl=dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
            )
            return answer if answer.get("Messages") else None

        messages = wait_for(received, 20, what="the dead-letter message")
    finally:
        daemon.kill()
    matcher = Matcher(account=ACCOUNT, region="us-east-1")
    matcher.check(
        case.recorded,
        {
            "lambda-response-dlq-config": configuration.get("DeadLetterConfig"),
            "messages": _status_only(messages),
        },
    )

"""What each recorded DynamoDB Streams case needs: whether lambda-bridge can run it, the
table and items it writes, the function it calls, and the mapping settings (AWS's
parameter names turned into lambda-bridge's), all read from the case itself.

The recordings are in `../shared/conformance/esm-snapshots/dynamodb.json` (see its
README); nothing of them is copied here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conformance.snapshots import Case

NOT_VALIDATED = (
    "not AWS-validated: an old LocalStack recording (2024-09-11) whose test no longer exists; "
    "test_dynamodb_report_batch_item_failures covers the same scenario, validated"
)
# Cases made of ESM API answers only (create/get/update/delete/list responses, errors).
API_COMPARED = "compared in tests/conformance/test_esm_api.py (the recording is API answers)"
STREAMS_COMPARED = (
    "compared in tests/conformance/test_esm_api_streams.py (the recording is API answers)"
)
API_ONLY = {
    "test_deletion_event_source_mapping_with_dynamodb": STREAMS_COMPARED,
    "test_duplicate_event_source_mappings": STREAMS_COMPARED,
    "test_esm_with_not_existing_dynamodb_stream": STREAMS_COMPARED,
    "test_create_event_filter_criteria_validation": STREAMS_COMPARED,
    "test_create_event_source_validation": STREAMS_COMPARED,
    "test_event_source_mapping_lifecycle": API_COMPARED,
    "test_event_source_mapping_lifecycle_delete_function": (
        "needs DeleteFunction: lambda-bridge's functions come from the config file, and "
        "the recording's point is the mapping left after its function is deleted"
    ),
}

# Known differences from AWS, each with the evidence: the case runs, strictly expected to fail.
KNOWN_DIFFERENCES: dict[str, str] = {}

# The recorded keys that are API answers, not compared here (create_table, the ESM's
# create response: these runs declare their mappings in the config file; the mapping
# API's answers are compared by test_esm_api*.py).
API_KEYS = {
    "create-table-result",
    "create_table_response",
    "table_creation_response",
    "update_table_response",
    "create_event_source_mapping_response",
}

# The functions of LocalStack's tests, in lambda-bridge: each records every event it gets
# to RECORD_DIR/<function name>.jsonl first.
HANDLERS = '''
"""The test functions of the recorded DynamoDB Streams cases."""
import json, os

RECORD_DIR = os.environ["CONFORMANCE_RECORD_DIR"]
with open(os.path.join(RECORD_DIR, "returns.json")) as returns:
    RETURNS = json.load(returns)


class CustomException(Exception):
    pass


def _record(event, context):
    with open(os.path.join(RECORD_DIR, context.function_name + ".jsonl"), "a") as out:
        out.write(json.dumps(event) + "\\n")


def echo(event, context):
    """lambda_echo: prints the event and returns it."""
    _record(event, context)
    return event


def unhandled_error(event, context):
    """lambda_unhandled_error: always raises."""
    _record(event, context)
    raise CustomException("some error occurred")


def fixed_value(event, context):
    """The generated handler: returns the case's fixed value."""
    _record(event, context)
    return RETURNS[context.function_name]


def divide_by_zero(event, context):
    """The generated handler whose return expression divides by zero."""
    _record(event, context)
    return 1 / 0


def report_should_fail(event, context):
    """lambda_report_batch_item_failures_dynamodb: reports the records whose
    NewImage.should_fail is true."""
    _record(event, context)
    failures = [
        {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}
        for record in event["Records"]
        if record["dynamodb"].get("NewImage", {}).get("should_fail", {}).get("BOOL")
    ]
    return {"batchItemFailures": failures}
'''


def supported(case: Case) -> str | None:
    """None when lambda-bridge runs the case, else why it is skipped."""
    if case.name in API_ONLY:
        return API_ONLY[case.name]
    if not case.aws_validated:
        return NOT_VALIDATED
    return None


def group(case: Case) -> str:
    """Which test of test_dynamodb.py compares the case."""
    name = case.name
    if supported(case) is not None:
        return "not supported"
    if name.startswith("test_dynamodb_invalid_event_filter["):
        return "invalid filter"
    if name.startswith("test_dynamodb_event_source_mapping_with_"):
        return "destination"
    if name.startswith("test_dynamodb_report_batch_item_failure_scenarios["):
        return "failed answers"
    if name == "test_dynamodb_report_batch_item_failures":
        return "reported failures"
    if name == "test_disabled_dynamodb_event_source_mapping":
        return "disabled"
    if name == "test_dynamodb_event_source_mapping" or name.startswith(
        ("test_dynamodb_event_filter[", "test_dynamodb_report_batch_item_success_scenarios[")
    ):
        return "events"
    raise AssertionError(f"{name}: no test compares this case")


def runs_a_daemon(case: Case) -> bool:
    return group(case) not in {"not supported", "invalid filter"}


def handler_of(case: Case) -> str:
    """Which of HANDLERS the case's function is (from its function_behaviour)."""
    behaviour = str(case.function_behaviour)
    if behaviour.startswith("lambda_echo"):
        return "echo"
    if behaviour.startswith("lambda_unhandled_error"):
        return "unhandled_error"
    if behaviour.startswith("lambda_report_batch_item_failures_dynamodb"):
        return "report_should_fail"
    if behaviour.startswith("generated handler"):
        return "divide_by_zero" if "divides by zero" in behaviour else "fixed_value"
    raise AssertionError(f"{case.name}: unknown function behaviour {behaviour!r}")


def items_of(case: Case) -> list[dict[str, Any]]:
    """The items the case writes, in order, as DynamoDB JSON (PutItem's `Item`).

    The filter cases give them as JSON in `input`; the others in words, which are checked
    here so a changed recording is noticed.
    """
    text = str(case.input)
    key = case.source_setup["table"]["partition_key"]
    if case.name.startswith("test_dynamodb_event_filter"):
        found = re.fullmatch(
            r"PutItem (\{.*\}) \(must match\), then PutItem (\{.*\}); "
            r"expected invocations in total: \d",
            text,
        )
        assert found, f"{case.name}: unexpected input {text!r}"
        return [json.loads(found.group(1)), json.loads(found.group(2))]
    if text == "one item before disabling, one after":
        return [{key: {"S": "before-disabling"}}, {key: {"S": "after-disabling"}}]
    if text == "PutItem {my_partition_key: S 'hello world', binary_key: B b'foobar'}":
        return [{key: {"S": "hello world"}, "binary_key": {"B": b"foobar"}}]
    if text == "PutItem {my_partition_key: S 'hello world'}":
        return [{key: {"S": "hello world"}}]
    if text.startswith("6 PutItem calls 0.1 s apart: my_partition_key testId0..testId5"):
        return [{key: {"S": f"testId{n}"}, "should_fail": {"BOOL": n == 5}} for n in range(6)]
    raise AssertionError(f"{case.name}: unexpected input {text!r}")


def expected_invocations(case: Case) -> int | None:
    """The count the filter cases' input states (the others: from the recording)."""
    found = re.search(r"expected invocations in total: (\d+)", str(case.input))
    return int(found.group(1)) if found else None


def destination_kind(case: Case) -> str | None:
    """`sqs`, `sns` or `s3`: the on-failure destination the case's mapping has."""
    destination = (case.esm_parameters.get("DestinationConfig") or {}).get("OnFailure", {})
    described = destination.get("Destination", "")
    for kind in ("SQS", "SNS", "S3"):
        if described.startswith(f"{kind} "):
            return kind.lower()
    assert not described, f"{case.name}: unknown destination {described!r}"
    return None


def mapping_settings(case: Case, destination: str | None) -> dict[str, Any]:
    """The mapping's settings from the ESM parameters AWS was given (esm-reference.md 2),
    with short retry backoffs for speed."""
    parameters = case.esm_parameters
    settings: dict[str, Any] = {}
    names = {
        "BatchSize": "batch_size",
        "MaximumBatchingWindowInSeconds": "maximum_batching_window_in_seconds",
        "MaximumRetryAttempts": "maximum_retry_attempts",
        "FunctionResponseTypes": "function_response_types",
    }
    for aws_name, name in names.items():
        if aws_name in parameters:
            settings[name] = parameters[aws_name]
    if "FilterCriteria" in parameters:
        settings["filter_criteria"] = {
            "filters": [{"pattern": f["Pattern"]} for f in parameters["FilterCriteria"]["Filters"]]
        }
    if destination is not None:
        settings["destination_config"] = {"on_failure": {"destination": destination}}
    settings["retry_backoff"] = {"initial_seconds": 0.05, "max_seconds": 0.2}
    # "then" (disabling the mapping) is the harness's: it reloads the config.
    assert parameters.get("then", "UpdateEventSourceMapping Enabled=false") == (
        "UpdateEventSourceMapping Enabled=false"
    )
    known = {*names, "FilterCriteria", "DestinationConfig", "StartingPosition", "then"}
    assert set(parameters) <= known, f"{case.name}: unhandled parameters {set(parameters) - known}"
    return settings

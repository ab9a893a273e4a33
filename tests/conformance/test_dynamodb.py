"""AWS's recorded DynamoDB Streams event source mapping behaviour, replayed through a real
lambda-bridge daemon against moto (`../shared/conformance/esm-snapshots/dynamodb.json`).

One daemon runs every supported case at once (one table, function, destination and
mapping each, see dynamodb_harness.py); each test then compares its own case with the
recording: the events the function received (keys, values, order, batch boundaries) and
the failure records that reached the destination. The recorded API answers (CreateTable,
CreateEventSourceMapping) are never compared: lambda-bridge's mappings come from its
config.

`SizeBytes` is DynamoDB Streams' own number, which Lambda passes on: each is checked
equal to what moto's GetRecords gave for that record, and then stands for AWS's (moto
counts the JSON length, AWS the item's size).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conformance import dynamodb_cases as cases
from tests.conformance.dynamodb_harness import ACCOUNT, REGION, CaseRun, DynamoDBRun
from tests.conformance.snapshots import Case, Matcher, case_params, load_cases

pytestmark = pytest.mark.e2e


def params(group: str) -> list[Any]:
    """The cases of one group (dynamodb_cases.group), each a pytest param (skipped with
    its reason if need be); every case is in exactly one group."""
    picked = []
    for param in case_params("dynamodb", cases.supported):
        case = param.values[0]
        if case is not None and cases.group(case) != group:
            continue
        if case is not None and case.name in cases.KNOWN_DIFFERENCES:
            reason = cases.KNOWN_DIFFERENCES[case.name]
            param = pytest.param(
                *param.values,
                id=param.id,
                marks=[*param.marks, pytest.mark.xfail(strict=True, reason=reason)],
            )
        picked.append(param)
    return picked


@pytest.fixture(scope="module")
def dynamodb_run(
    tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str
) -> Iterator[DynamoDBRun]:
    selected = [case for case in load_cases("dynamodb").values() if cases.runs_a_daemon(case)]
    run = DynamoDBRun(tmp_path_factory.mktemp("conformance-dynamodb"), aws_endpoint, selected)
    try:
        run.prepare()
        run.start()
        run.wait_settled()
        run.collect()
        run.disable()
    finally:
        run.stop()
    yield run


def matcher() -> Matcher:
    return Matcher(account=ACCOUNT, region=REGION)


def with_aws_sizes(run: CaseRun, recorded: list[Any], actual: list[Any]) -> list[Any]:
    """`actual`'s records (a list of stream records) with each SizeBytes that is moto's
    own for that record replaced by the recorded one at the same place."""
    copied = []
    for index, record in enumerate(actual):
        record = {**record, "dynamodb": {**record.get("dynamodb", {})}}
        change = record["dynamodb"]
        served = run.stream_records.get(str(change.get("SequenceNumber")), {})
        if index < len(recorded) and change.get("SizeBytes") == served.get("dynamodb", {}).get(
            "SizeBytes"
        ):
            change["SizeBytes"] = recorded[index]["dynamodb"]["SizeBytes"]
        copied.append(record)
    return copied


def events_as_recorded(run: CaseRun, recorded: list[Any], actual: list[Any]) -> list[Any]:
    """The events `actual` with AWS's SizeBytes, event by event (see with_aws_sizes)."""
    return [
        {**event, "Records": with_aws_sizes(run, want.get("Records", []), event["Records"])}
        for want, event in zip(recorded, actual, strict=False)
    ] + actual[len(recorded) :]


def check_events(run: CaseRun, matching: Matcher, key: str, count: int | None = None) -> None:
    recorded = run.case.recorded[key]
    actual = run.events if count is None else run.events[:count]
    matching.check(recorded, events_as_recorded(run, recorded, actual), key)


def check_queue_messages(run: CaseRun, matching: Matcher) -> None:
    """The SQS destination's messages as ReceiveMessage gives them (the recorded
    ResponseMetadata is the snapshot library's, not compared)."""
    recorded = run.case.recorded["destination_queue_messages"]["Messages"]
    matching.check(recorded, run.messages, "destination_queue_messages.Messages")


# -- events ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", params("events"))
def test_delivered_events(case: Case, dynamodb_run: DynamoDBRun) -> None:
    """Items written to a table reach the function as Lambda's DynamoDB Streams events
    (one record per invocation, binary values in base64), after the mapping's filter where
    it has one, and an empty partial batch answer (null, [], {}, or an empty or null
    batchItemFailures) is a complete success: one invocation. date_time_conversion
    follows the pattern in esm_parameters (the recorded FilterCriteria is a transformer
    artefact, README); content_multiple_filters, skipped by LocalStack, is AWS-validated
    and followed. In insert_same_entry_twice moto writes a MODIFY record for the unchanged
    second put, where DynamoDB writes none; the INSERT filter drops it either way."""
    run = dynamodb_run.runs[case.name]
    matching = matcher()
    if "event_logs" in case.recorded:
        check_events(run, matching, "event_logs")
    elif "dynamodb_events" in case.recorded:
        check_events(run, matching, "dynamodb_events")
    else:
        expected = cases.expected_invocations(case)
        assert len(run.events) == expected, f"{len(run.events)} invocations, AWS {expected}"
        first = len(case.recorded["lambda-log-events"])
        check_events(run, matching, "lambda-log-events", first)
        check_events(run, matching, "lambda-multiple-log-events")


# -- on-failure destinations -----------------------------------------------------------


@pytest.mark.parametrize("case", params("destination"))
def test_on_failure_destination(case: Case, dynamodb_run: DynamoDBRun) -> None:
    """A function that always raises, MaximumRetryAttempts 1: after two invocations the
    one-record batch's invocation record (RetryAttemptsExhausted, functionError Unhandled,
    DDBStreamBatchInfo) reaches the SQS queue, the SNS topic (seen through its SQS
    subscription; the envelope is SNS's, and moto's SignatureVersion is always 2) or the
    S3 bucket (with the event under `payload`, at AWS's key)."""
    run = dynamodb_run.runs[case.name]
    matching = matcher()
    assert len(run.events) == 2, f"{len(run.events)} invocations, AWS 2 (1 + 1 retry)"
    if run.destination == "sqs":
        check_queue_messages(run, matching)
    elif run.destination == "sns":
        [message] = run.messages
        envelope = json.loads(message["Body"])
        # The envelope is SNS's (moto's): moto signs with SHA256 only, SignatureVersion 2.
        assert envelope.get("SignatureVersion") in {"1", "2"}, envelope
        envelope["SignatureVersion"] = case.recorded["failure_sns_message"]["SignatureVersion"]
        matching.check(case.recorded["failure_sns_message"], envelope, "failure_sns_message")
    else:
        [(key, body)] = run.objects
        recorded = case.recorded["record_body"]
        body = {
            **body,
            "payload": {
                "Records": with_aws_sizes(
                    run, recorded["payload"]["Records"], body["payload"]["Records"]
                )
            },
        }
        matching.check(recorded, body, "record_body")
        shard = body["DDBStreamBatchInfo"]["shardId"]
        form = (
            rf"aws/lambda/[0-9a-f-]{{36}}/{re.escape(shard)}/\d{{4}}/\d\d/\d\d/"
            rf"\d{{4}}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{{36}}"
        )
        assert re.fullmatch(form, key), key


# -- partial batch responses -------------------------------------------------------------


@pytest.mark.parametrize("case", params("failed answers"))
def test_failed_batch_answers(case: Case, dynamodb_run: DynamoDBRun) -> None:
    """With ReportBatchItemFailures and MaximumRetryAttempts 3, an invalid partial batch
    answer (an itemIdentifier that is "", null, the number 123 or missing) fails the whole
    batch, as an unhandled exception does: the record is invoked 4 times, then its
    invocation record (approximateInvokeCount 4; functionError null, or Unhandled for the
    exception) reaches the SQS destination."""
    run = dynamodb_run.runs[case.name]
    matching = matcher()
    check_queue_messages(run, matching)
    check_events(run, matching, "dynamodb_events")


@pytest.mark.parametrize("case", params("reported failures"))
def test_report_batch_item_failures(case: Case, dynamodb_run: DynamoDBRun) -> None:
    """Six items, BatchSize 3, the function always reports the sixth as failed,
    MaximumRetryAttempts 3: items 1-5 are delivered once, the sixth ends alone in the SQS
    destination (batchSize 1, approximateInvokeCount 4, functionError null) after five
    invocations that held it. The recorded dynamodb_records are every invocation's records
    sorted by key (read from logs); ours are sorted the same way."""
    run = dynamodb_run.runs[case.name]
    matching = matcher()
    check_queue_messages(run, matching)
    records = [record for event in run.events for record in event["Records"]]
    records.sort(key=lambda record: record["dynamodb"]["Keys"]["my_partition_key"]["S"])
    recorded = case.recorded["dynamodb_records"]["Records"]
    matching.check(recorded, with_aws_sizes(run, recorded, records), "dynamodb_records.Records")


# -- a disabled mapping -----------------------------------------------------------------


@pytest.mark.parametrize("case", params("disabled"))
def test_disabled_mapping(case: Case, dynamodb_run: DynamoDBRun) -> None:
    """One item written while the mapping is enabled reaches the function; the mapping is
    then disabled (UpdateEventSourceMapping Enabled=false on AWS, `enabled: false` and a
    reload here) and the next item never does: one invocation, as the case asserts. The
    recording holds only the Create/UpdateEventSourceMapping answers, not compared (no
    ESM API); a second, enabled mapping on the same table shows the item was there."""
    run = dynamodb_run.runs[case.name]
    key = case.source_setup["table"]["partition_key"]
    delivered = [
        record["dynamodb"]["Keys"][key]["S"] for event in run.events for record in event["Records"]
    ]
    assert delivered == ["before-disabling"], delivered
    witnessed = [
        record["dynamodb"]["Keys"][key]["S"]
        for event in run.witness_events
        for record in event["Records"]
    ]
    assert witnessed == ["before-disabling", "after-disabling"], witnessed
    assert case.recorded["update_event_source_mapping_result"]["State"] == "Disabling"


# -- filters refused -------------------------------------------------------------------


@pytest.mark.parametrize("case", params("invalid filter"))
def test_invalid_event_filter(case: Case, tmp_path: Path) -> None:
    """A FilterCriteria pattern that is not a JSON object (broken JSON, a plain string) is
    refused: AWS's CreateEventSourceMapping answers InvalidParameterValueException,
    `lambda-bridge validate` exits non-zero with one line naming the filter."""
    [_pattern] = [f["Pattern"] for f in case.esm_parameters["FilterCriteria"]["Filters"]]
    assert case.recorded["exception_event_source_creation"]["Error"]["Code"] == (
        "InvalidParameterValueException"
    )
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return event\n")
    config = {
        "functions": {"echo": {"invoker": "python", "handler": "handler.py:handler"}},
        "mappings": [
            {
                "name": "filtered",
                "function": "echo",
                "source": {
                    "type": "dynamodb-streams",
                    "table": "orders",
                    "endpoint_url": "http://127.0.0.1:9",
                    "starting_position": case.esm_parameters["StartingPosition"],
                },
                **cases.mapping_settings(case, None),
            }
        ],
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "filter_criteria.filters[0].pattern" in lines[0]
    assert "invalid filter pattern" in lines[0]


# -- not run -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", params("not supported"))
def test_not_supported(case: Case) -> None:
    """ESM API answers (create, get, update, delete, list, their errors) and the one
    recording AWS never validated: collected and skipped with the reason."""
    raise AssertionError(f"{case.name} should have been skipped")

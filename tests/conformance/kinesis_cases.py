"""The Kinesis cases lambda-bridge runs: which recorded cases are supported, and for each
one its mapping (function behaviour, settings, destination) and its input.

Inputs are taken from the cases' `input` descriptions and the recorded records (data
and partition keys). A case's records are written before the daemon starts ("before
the mapping exists", TRIM_HORIZON), once its mapping reads ("after", LATEST), or, for
the record age cases, so that the record is older than `MaximumRecordAgeInSeconds` (60 s,
AWS's minimum) when their mapping, enabled by a reload, first reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.snapshots import Case

COMPARED = "compared in tests/conformance/test_esm_api.py (the recording is API answers)"
STREAMS_COMPARED = (
    "compared in tests/conformance/test_esm_api_streams.py (the recording is API answers)"
)
SKIPPED = {
    "test_duplicate_event_source_mappings": COMPARED,
    "test_esm_with_not_existing_kinesis_stream": STREAMS_COMPARED,
    "test_create_event_source_validation_kinesis": COMPARED,
    "test_kinesis_empty_provided": STREAMS_COMPARED,
}

# When a case's records are written.
BEFORE = "before"  # before the daemon starts
AFTER = "after"  # once the mapping reads (LATEST)
AGED = "aged"  # at the start of the module, read once enabled 60 s later


@dataclass
class Put:
    """One PutRecords call: (partition key, data) pairs, and when."""

    records: list[tuple[str, bytes]]
    when: str = BEFORE


@dataclass
class KinesisCase:
    name: str
    behaviour: dict[str, Any]
    starting_position: str
    puts: list[Put]
    destination: str | None = None  # sqs | sns | s3
    late: bool = False  # enabled 60 s after the AGED puts
    extra_mappings: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(
        default_factory=list
    )  # (suffix, behaviour, settings) of further mappings on the same stream


def supported(case: Case) -> str | None:
    return SKIPPED.get(case.name)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _records(key: str, count: int) -> list[tuple[str, bytes]]:
    return [(key, _json({"record_id": index})) for index in range(count)]


def setup_for(case: Case) -> KinesisCase:
    """The mapping and the input that reproduce `case`."""
    name = case.name
    parameters = case.esm_parameters or {}
    position = parameters.get("StartingPosition", "TRIM_HORIZON")
    failing = {"input": "hello", "value": "world", "raise_error": 1}
    if name == "test_kinesis_event_filtering_json_pattern":
        second = {"filter_criteria": _filters(parameters["second_mapping_FilterCriteria"])}
        data = [
            {"event_type": "function_1", "message": "foo"},
            {"event_type": "function_2", "message": "bar"},
        ]
        return KinesisCase(
            name,
            {"kind": "log_data"},
            position,
            [Put([("custom", _json(item)) for item in data], AFTER)],
            extra_mappings=[("2", {"kind": "log_data"}, second)],
        )
    if name == "test_create_kinesis_event_source_mapping":
        keys = [f"test_{index}" for index in range(10)]
        return KinesisCase(
            name, {"kind": "echo"}, position, [Put([(k, b"hello") for k in keys], AFTER)]
        )
    if name.startswith("test_create_kinesis_event_source_mapping_multiple_lambdas"):
        return KinesisCase(
            name,
            {"kind": "echo"},
            position,
            [Put([("test_1", b"hello")], AFTER)],
            extra_mappings=[("b", {"kind": "echo"}, {})],
        )
    if name == "test_disable_kinesis_event_source_mapping":
        # The second 10 are written by the module after the mapping was disabled.
        return KinesisCase(name, {"kind": "echo"}, position, [Put(_records("test", 10), AFTER)])
    if name == "test_kinesis_event_source_mapping_with_async_invocation":
        wrap = {"kind": "sleep_and_wrap", "seconds": 5}
        puts = [Put(_records("test_0", 10), AFTER), Put(_records("test_1", 10), AFTER)]
        return KinesisCase(name, wrap, position, puts)
    if name == "test_kinesis_event_source_trim_horizon":
        wrap = {"kind": "sleep_and_wrap", "seconds": 5}
        puts = [
            Put(_records("test_0", 10), BEFORE),
            Put(_records("test_1", 10), BEFORE),
            Put(_records("test_3", 10), AFTER),
        ]
        return KinesisCase(name, wrap, position, puts)
    if name.startswith("test_kinesis_event_source_mapping_with_") and "failure" in name:
        kind = "s3" if "_s3_" in name else "sns" if "_sns_" in name else "sqs"
        behaviour = {"kind": "raise_if_key", "key": "raise_error"}
        return KinesisCase(
            name, behaviour, position, [Put([("custom", _json(failing))], AFTER)], kind
        )
    if name == "test_kinesis_maximum_record_age_exceeded[expire-before-ingestion]":
        return KinesisCase(
            name, {"kind": "raise"}, position, [Put([("test", b"stream-data")], AGED)], "sqs", True
        )
    if name == "test_kinesis_maximum_record_age_exceeded[expire-while-retrying]":
        return KinesisCase(
            name, {"kind": "raise"}, position, [Put([("test", b"stream-data")], BEFORE)], "sqs"
        )
    if name == "test_kinesis_maximum_record_age_exceeded_discard_records":
        young = [("test", f"stream-data-{index}".encode()) for index in range(1, 6)]
        puts = [Put([("test", b"stream-data")], AGED), Put(young, "young")]
        return KinesisCase(
            name, {"kind": "returns", "value": {"count": 5}}, position, puts, "sqs", True
        )
    if name.startswith("test_kinesis_report_batch_item_") and "scenarios" in name:
        if case.function_returns is None and "unhandled_exception" in name:
            behaviour: dict[str, Any] = {"kind": "returns", "raise_zero_division": True}
        else:
            behaviour = {"kind": "returns", "value": case.function_returns}
        destination = "sqs" if "DestinationConfig" in parameters else None
        return KinesisCase(
            name, behaviour, position, [Put([("test", b"hello")], AFTER)], destination
        )
    if name == "test_kinesis_report_batch_item_failures":
        records = [(f"test_{index}", _json({"should_fail": index == 5})) for index in range(6)]
        behaviour = {"kind": "report_where", "field": "should_fail"}
        return KinesisCase(name, behaviour, position, [Put(records, AFTER)], "sqs")
    raise AssertionError(f"no setup for {name}")


def _filters(criteria: dict[str, Any]) -> dict[str, Any]:
    return {"filters": [{"pattern": item["Pattern"]} for item in criteria["Filters"]]}

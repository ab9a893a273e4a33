"""Filters per source: data keys, JSON versus plain payloads (esm-reference.md 11.2, 11.4),
the OR of several filters, config errors and warnings."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.config.loading import load_config_text
from bridge.errors import ConfigError
from bridge.filtering.criteria import (
    DYNAMODB_RECORD,
    KAFKA_VALUE,
    KINESIS_DATA,
    SQS_BODY,
    DataKey,
    build_filter_set,
)
from bridge.records import Record


def matches(patterns: list[Any], record: dict[str, Any], data_key: DataKey | None) -> bool:
    return build_filter_set(patterns, data_key).matches_document(record)


def sqs(body: str, **attributes: str) -> dict[str, Any]:
    return {
        "messageId": "m-1",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", **attributes},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }


def kinesis(data: bytes) -> dict[str, Any]:
    return {
        "kinesis": {"partitionKey": "k", "data": base64.b64encode(data).decode()},
        "eventSource": "aws:kinesis",
        "eventID": "shardId-000000000000:1",
    }


def kafka(value: bytes) -> dict[str, Any]:
    return {
        "topic": "orders",
        "partition": 0,
        "offset": 5,
        "value": base64.b64encode(value).decode(),
    }


# -- SQS: body ----------------------------------------------------------------------------


def test_sqs_json_body_is_matched_as_json() -> None:
    record = sqs(json.dumps({"status": "paid", "total": 12}))
    assert matches(['{"body": {"status": ["paid"]}}'], record, SQS_BODY)
    assert not matches(['{"body": {"status": ["open"]}}'], record, SQS_BODY)
    assert matches(['{"body": {"total": [{"numeric": [">", 10]}]}}'], record, SQS_BODY)


@pytest.mark.parametrize(
    ("body", "pattern", "expected"),
    [
        # The table of esm-reference.md 11.4 for SQS, row by row.
        ("plain text", '{"body": ["plain text"]}', True),
        ("plain text", '{"body": [{"prefix": "plain"}]}', True),
        ("plain text", '{"attributes": {"ApproximateReceiveCount": ["1"]}}', True),
        ("plain text", '{"body": {"status": [{"exists": false}]}}', False),
        ('{"status": "paid"}', '{"body": ["{\\"status\\": \\"paid\\"}"]}', False),
        ('{"status": "paid"}', '{"attributes": {"ApproximateReceiveCount": ["1"]}}', True),
        ('{"status": "paid"}', '{"body": {"status": ["paid"]}}', True),
    ],
)
def test_sqs_json_and_plain_bodies_follow_awss_table(
    body: str, pattern: str, expected: bool
) -> None:
    assert matches([pattern], sqs(body), SQS_BODY) is expected


def test_metadata_and_body_together_must_both_match() -> None:
    record = sqs('{"status": "paid"}', SenderId="A1")
    pattern = '{"body": {"status": ["paid"]}, "attributes": {"SenderId": ["A1"]}}'
    assert matches([pattern], record, SQS_BODY)
    assert not matches([pattern], sqs('{"status": "paid"}', SenderId="B2"), SQS_BODY)


def test_filters_are_ored() -> None:
    patterns = ['{"body": {"status": ["paid"]}}', '{"body": {"status": ["refunded"]}}']
    assert matches(patterns, sqs('{"status": "refunded"}'), SQS_BODY)
    assert not matches(patterns, sqs('{"status": "open"}'), SQS_BODY)


def test_patterns_may_be_given_as_objects() -> None:
    assert matches([{"body": {"status": ["paid"]}}], sqs('{"status": "paid"}'), SQS_BODY)


# -- Kinesis: data, base64 -----------------------------------------------------------------


def test_kinesis_data_is_decoded_from_base64_then_matched_as_json() -> None:
    assert matches(['{"data": {"kind": ["click"]}}'], kinesis(b'{"kind": "click"}'), KINESIS_DATA)
    assert not matches(
        ['{"data": {"kind": ["view"]}}'], kinesis(b'{"kind": "click"}'), KINESIS_DATA
    )


def test_kinesis_non_json_data_is_dropped_by_a_data_pattern() -> None:
    record = kinesis(b"not json at all")
    assert not matches(['{"data": {"kind": [{"exists": false}]}}'], record, KINESIS_DATA)
    assert matches(['{"eventSource": ["aws:kinesis"]}'], record, KINESIS_DATA)


def test_kinesis_and_dynamodb_reject_a_plain_text_data_pattern() -> None:
    for data_key in (KINESIS_DATA, DYNAMODB_RECORD):
        with pytest.raises(ValueError, match="JSON object pattern"):
            build_filter_set([f'{{"{data_key.name}": ["text"]}}'], data_key)


# -- DynamoDB: the dynamodb object as is ---------------------------------------------------


def test_dynamodb_images_are_matched_in_dynamodb_json() -> None:
    record = {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": {"total": {"N": "42"}, "state": {"S": "paid"}}},
    }
    assert matches(
        ['{"dynamodb": {"NewImage": {"state": {"S": ["paid"]}}}}'], record, DYNAMODB_RECORD
    )
    assert matches(['{"eventName": ["INSERT"]}'], record, DYNAMODB_RECORD)
    # Numbers are strings in DynamoDB JSON: numeric never matches them (11.2).
    assert not matches(
        ['{"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", 1]}]}}}}'],
        record,
        DYNAMODB_RECORD,
    )


# -- Kafka: value, and metadata only on a mismatch -----------------------------------------


def test_kafka_value_is_decoded_and_a_mismatch_falls_back_to_metadata() -> None:
    json_value = kafka(b'{"device": "AB12"}')
    plain_value = kafka(b"hello")
    binary_value = kafka(b"\xff\xfe\x00")
    assert matches(['{"value": {"device": [{"prefix": "AB"}]}}'], json_value, KAFKA_VALUE)
    assert not matches(['{"value": {"device": [{"prefix": "XY"}]}}'], json_value, KAFKA_VALUE)
    assert matches(['{"value": ["hello"]}'], plain_value, KAFKA_VALUE)
    assert not matches(['{"value": ["bye"]}'], plain_value, KAFKA_VALUE)
    # JSON pattern on a plain or binary value: only the metadata is matched (11.4).
    assert matches(['{"value": {"device": ["x"]}, "topic": ["orders"]}'], plain_value, KAFKA_VALUE)
    assert not matches(
        ['{"value": {"device": ["x"]}, "topic": ["other"]}'], plain_value, KAFKA_VALUE
    )
    assert matches(['{"value": {"device": ["x"]}}'], binary_value, KAFKA_VALUE)


# -- sources without a data key ------------------------------------------------------------


def test_without_a_data_key_the_record_is_matched_as_delivered() -> None:
    record = {"s3": {"object": {"key": "reports/q1.csv"}}, "eventName": "ObjectCreated:Put"}
    assert matches(['{"s3": {"object": {"key": [{"suffix": ".csv"}]}}}'], record, None)
    assert not matches(['{"s3": {"object": {"key": [{"suffix": ".png"}]}}}'], record, None)


def test_the_filter_set_counts_what_it_turns_away() -> None:
    filters = build_filter_set(['{"body": {"keep": [true]}}'], SQS_BODY)
    records = [Record("q", n, str(n), sqs(json.dumps({"keep": n % 3 == 0})), 0.0) for n in range(9)]
    kept = [record.item_id for record in records if filters.matches(record)]
    assert kept == ["0", "3", "6"]
    assert filters.filtered_out == 6


# -- config --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def handler_file(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return None\n")


def config_with(filters: str, limits: str = "") -> str:
    return f"""\
{limits}functions:
  f: {{invoker: python, handler: h.py:handler}}
mappings:
  - name: orders
    function: f
    source: {{type: sqs, queue_url: "http://127.0.0.1:1/000000000000/orders"}}
    filter_criteria:
      filters:
{filters}"""


def test_an_invalid_pattern_is_a_config_error_naming_file_line_mapping_and_filter(
    tmp_path: Path,
) -> None:
    text = config_with(
        '        - pattern: \'{"body": {"a": ["x"]}}\'\n        - pattern: \'{"body": {"a": []}}\'\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, "bridge.yaml", handler_root=tmp_path)
    [problem] = raised.value.problems
    assert problem.startswith("bridge.yaml:10: mappings[0].filter_criteria.filters[1].pattern:")
    assert "filter 2 of mapping 'orders'" in problem
    assert "Empty arrays are not allowed" in problem


def test_more_filters_than_the_quota_is_an_error_unless_the_limit_is_raised(tmp_path: Path) -> None:
    six = "".join(f'        - pattern: \'{{"body": {{"n": [{n}]}}}}\'\n' for n in range(6))
    with pytest.raises(ConfigError, match="at most 5"):
        load_config_text(config_with(six), "bridge.yaml", handler_root=tmp_path)
    loaded = load_config_text(
        config_with(six, "limits: {filters_per_mapping: 10}\n"),
        "bridge.yaml",
        handler_root=tmp_path,
    )
    assert len(loaded.config.mappings[0].filter_patterns) == 6


def test_an_eventbridge_only_operator_is_a_warning(tmp_path: Path) -> None:
    text = config_with('        - pattern: \'{"body": {"name": [{"wildcard": "order-*"}]}}\'\n')
    loaded = load_config_text(text, "bridge.yaml", handler_root=tmp_path)
    [warning] = loaded.warnings
    assert "wildcard" in warning and "filter 1 of mapping 'orders'" in warning

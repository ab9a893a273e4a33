"""The comparison the conformance tests make with AWS's recordings follows the
placeholders' rules (see tests/conformance/snapshots.py)."""

from __future__ import annotations

from tests.conformance.snapshots import Matcher


def matcher() -> Matcher:
    return Matcher(account="000000000000", region="eu-west-1")


def test_numbered_placeholders_bind_one_value_each() -> None:
    recorded = {"a": "<uuid:1>", "b": "<uuid:1>", "c": "<uuid:2>"}
    assert matcher().differences(recorded, {"a": "x", "b": "x", "c": "y"}) == []
    assert matcher().differences(recorded, {"a": "x", "b": "z", "c": "y"})
    assert matcher().differences(recorded, {"a": "x", "b": "x", "c": "x"})


def test_account_region_partition_and_embedded_placeholders() -> None:
    recorded = "arn:<partition>:lambda:<region>:111111111111:function:<resource:1>"
    good = "arn:aws:lambda:eu-west-1:000000000000:function:fn"
    assert matcher().differences(recorded, good) == []
    assert matcher().differences(recorded, good.replace("eu-west-1", "us-east-1"))
    # An account-like run of digits that is not the account stays as it is.
    assert matcher().differences("shardId-000000000000", "shardId-000000000000") == []


def test_timestamp_forms_and_values_of_a_kind() -> None:
    millis = "<timestamp:2022-07-13T13:48:01.000Z>"
    seconds = "<timestamp:2022-07-13T13:48:01Z>"
    assert matcher().differences(millis, "2026-12-06T10:00:00.123Z") == []
    assert matcher().differences(millis, "2026-12-06T10:00:00Z")
    assert matcher().differences(seconds, "2026-12-06T10:00:00Z") == []
    assert matcher().differences("<approximate-arrival-timestamp>", 1765015200.123) == []
    assert matcher().differences("<approximate-arrival-timestamp>", "1765015200") != []
    assert matcher().differences("sent-timestamp", "1765015200123") == []


def test_json_strings_compare_as_objects_keys_as_sets() -> None:
    assert matcher().differences({"x": 1, "y": [1, 2]}, '{"y": [1, 2], "x": 1}') == []
    assert matcher().differences({"x": 1}, {"x": 1, "extra": None})
    assert matcher().differences({"x": None}, {})
    assert matcher().differences([1, 2], [2, 1])
    assert matcher().differences(1, True)

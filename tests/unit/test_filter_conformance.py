"""The filter engine against the external conformance set (shared/conformance/
filter-cases.json, esm-reference.md 11): every case gives its expected match, and every
pattern AWS rejects is rejected with AWS's reason. Skipped where shared/ is absent
(failed under LAMBDA_BRIDGE_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import json
from typing import Any

from bridge.cli.filtertest import _data_keys, evaluate
from bridge.filtering.patterns import PatternError
from tests.conformance.snapshots import conformance_dir, missing_recordings

SOURCES = {
    "eventbridge-pattern": None,
    "lambda-esm-sqs": "sqs",
    "lambda-esm-kinesis": "kinesis",
    "lambda-esm-dynamodb": "dynamodb-streams",
}
AWS_PREFIX = "Event pattern is not valid. Reason: "


def load() -> dict[str, Any]:
    folder = conformance_dir()
    if folder is None:
        missing_recordings()
    assert folder is not None
    data: dict[str, Any] = json.loads((folder / "filter-cases.json").read_text())
    return data


def test_every_case_matches_as_expected() -> None:
    data = load()
    known = _data_keys()
    wrong = []
    for case in data["cases"]:
        try:
            matched, _ = evaluate(case["pattern"], case["event"], SOURCES[case["semantics"]], known)
        except PatternError as error:
            wrong.append((case["id"], f"rejected: {error}"))
            continue
        if matched is not case["expected"]:
            wrong.append((case["id"], matched))
    assert wrong == []
    assert len(data["cases"]) >= 240


def test_every_invalid_pattern_is_rejected_with_aws_reason() -> None:
    data = load()
    known = _data_keys()
    wrong = []
    for case in data["invalid_pattern_cases"]:
        reason = case["expected_error"]["message"].removeprefix(AWS_PREFIX)
        try:
            evaluate(case["pattern"], case["event"], SOURCES[case["semantics"]], known)
        except PatternError as error:
            if str(error) != reason:
                wrong.append((case["id"], str(error), reason))
        else:
            wrong.append((case["id"], "accepted", reason))
    assert wrong == []
    assert len(data["invalid_pattern_cases"]) >= 19

"""The filter engine against the external conformance set (shared/conformance/
filter-cases.json, esm-reference.md 11): every case gives its expected match, and every
pattern AWS rejects is rejected with AWS's reason. Skipped where shared/ is absent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.filtertest import _data_keys, evaluate
from bridge.patterns import PatternError
from tests.support import REPO

CASES_FILE = REPO.parent / "shared" / "conformance" / "filter-cases.json"
SOURCES = {
    "eventbridge-pattern": None,
    "lambda-esm-sqs": "sqs",
    "lambda-esm-kinesis": "kinesis",
    "lambda-esm-dynamodb": "dynamodb-streams",
}
AWS_PREFIX = "Event pattern is not valid. Reason: "


def load() -> dict[str, Any]:
    if not CASES_FILE.exists():
        pytest.skip(f"no conformance set at {CASES_FILE}")
    data: dict[str, Any] = json.loads(CASES_FILE.read_text())
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

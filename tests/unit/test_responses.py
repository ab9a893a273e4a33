"""Response classification and partial batch responses, rule by rule
(esm-reference.md sections 4, 5.2, 6.4 and 9)."""

from __future__ import annotations

import pytest

from bridge.pipeline.responses import classify, split_at_first_failures, string_identifier
from bridge.records import InvokeResult, OutcomeKind, Record

RECORDS = [Record("shard-1", index, f"seq-{index}", {}, 0.0) for index in range(4)]


def outcome(body: bytes, *, function_error: str | None = None, report: bool = True) -> OutcomeKind:
    result = InvokeResult(payload=body, request_id="r", function_error=function_error)
    return classify(result, RECORDS, report_batch_item_failures=report).kind


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"null",
        b"{}",
        b'""',
        b"[]",
        b'{"batchItemFailures": []}',
        b'{"batchItemFailures": null}',
        b'{"other": 1}',
    ],
)
def test_complete_success(body: bytes) -> None:
    """Empty or null answers and empty or null batchItemFailures mean every record succeeded."""
    assert outcome(body) is OutcomeKind.SUCCESS


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not JSON"),
        (b'"just a string"', "not an object"),
        (b"[1, 2]", "not an object"),
        (b'{"batchItemFailures": "seq-1"}', "not a list"),
        (b'{"batchItemFailures": [{"foo": "seq-1"}]}', "wrong key"),
        (b'{"batchItemFailures": ["seq-1"]}', "entry not an object"),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', "empty identifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', "null identifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": 123}]}', "not a string"),
        (b'{"batchItemFailures": [{"itemIdentifier": "seq-9"}]}', "not in the batch"),
        (
            b'{"batchItemFailures": [{"itemIdentifier": "seq-1"}, {"itemIdentifier": "nope"}]}',
            "one unknown",
        ),
    ],
)
def test_invalid_response_fails_the_whole_batch(body: bytes, why: str) -> None:
    """A malformed partial batch response fails every record of the batch."""
    assert outcome(body) is OutcomeKind.INVALID_RESPONSE, why


def test_partial_failure_names_the_failed_items() -> None:
    """Listed identifiers (duplicates allowed) are the failed records."""
    result = InvokeResult(
        payload=b'{"batchItemFailures": [{"itemIdentifier": "seq-2"}, {"itemIdentifier": "seq-1"}, {"itemIdentifier": "seq-2"}]}',
        request_id="r",
    )
    classified = classify(result, RECORDS, report_batch_item_failures=True)
    assert classified.kind is OutcomeKind.PARTIAL_FAILURE
    assert classified.failed_ids == {"seq-1", "seq-2"}


def test_function_error_wins_over_the_body() -> None:
    """A function error fails the batch even if the body looks like a success."""
    assert (
        outcome(b'{"batchItemFailures": []}', function_error="Unhandled")
        is OutcomeKind.FUNCTION_ERROR
    )


def test_partial_responses_are_ignored_without_report_batch_item_failures() -> None:
    """Without ReportBatchItemFailures any answer without a function error is a success."""
    assert (
        outcome(b'{"batchItemFailures": [{"itemIdentifier": "seq-1"}]}', report=False)
        is OutcomeKind.SUCCESS
    )
    assert outcome(b"{not json", report=False) is OutcomeKind.SUCCESS


def test_custom_identifier_parser() -> None:
    """Sources with structured identifiers (Kafka's {partition, offset}) plug in a parser."""
    records = [Record("t-0", 5, ("t-0", 5), {}, 0.0)]

    def kafka_identifier(raw: object) -> object:
        if (
            isinstance(raw, dict)
            and isinstance(raw.get("partition"), str)
            and isinstance(raw.get("offset"), int)
        ):
            return (raw["partition"], raw["offset"])
        return None

    result = InvokeResult(
        payload=b'{"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 5}}]}',
        request_id="r",
    )
    classified = classify(
        result, records, report_batch_item_failures=True, parse_identifier=kafka_identifier
    )  # type: ignore[arg-type]
    assert classified.failed_ids == {("t-0", 5)}


def test_string_identifier() -> None:
    """Only non-empty strings are identifiers of SQS messages and stream records."""
    assert string_identifier("a") == "a"
    assert string_identifier("") is None
    assert string_identifier(1) is None
    assert string_identifier(None) is None


def test_split_restarts_each_partition_at_its_first_failure() -> None:
    """Records before a partition's first failed record succeed; it and all later records of
    that partition are retried; partitions without failures succeed entirely."""
    records = [
        Record("a", 0, "a0", {}, 0.0),
        Record("b", 0, "b0", {}, 0.0),
        Record("a", 1, "a1", {}, 0.0),
        Record("b", 1, "b1", {}, 0.0),
        Record("a", 2, "a2", {}, 0.0),
        Record("c", 0, "c0", {}, 0.0),
    ]
    done, retry = split_at_first_failures(records, frozenset({"a1"}))
    assert [item.item_id for item in done] == ["a0", "b0", "b1", "c0"]
    assert [item.item_id for item in retry] == ["a1", "a2"]


def test_split_uses_the_lowest_failed_item_in_a_shard() -> None:
    """With several failures in one shard the checkpoint is before the lowest (6.4)."""
    done, retry = split_at_first_failures(RECORDS, frozenset({"seq-3", "seq-1"}))
    assert [item.item_id for item in done] == ["seq-0"]
    assert [item.item_id for item in retry] == ["seq-1", "seq-2", "seq-3"]

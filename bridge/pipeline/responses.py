"""Classifying an invocation's answer the way Lambda does.

Rules (esm-reference.md sections 4, 5.2, 6.4 and 9):
- a function error (X-Amz-Function-Error, an unhandled exception, a timeout) fails the
  whole batch, whatever the body says;
- without `ReportBatchItemFailures` any other answer is a success;
- with it: an empty body, JSON `null`, `{}`, `""`, or an empty or null
  `batchItemFailures` is a complete success; a body that is not JSON, not an object,
  a `batchItemFailures` that is not a list, an entry without `itemIdentifier`, an empty,
  null or malformed identifier, or one that names no record of the batch fails the whole
  batch; otherwise the named records failed and the others succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from bridge.codec import JSONDecodeError, loads
from bridge.records import InvokeResult, Outcome, OutcomeKind, Record

IdentifierParser = Callable[[object], Hashable | None]

SUCCESS = Outcome(OutcomeKind.SUCCESS)


def string_identifier(raw: object) -> Hashable | None:
    """SQS message ids, stream sequence numbers and entry ids are non-empty strings."""
    return raw if isinstance(raw, str) and raw else None


def _invalid(reason: str) -> Outcome:
    return Outcome(OutcomeKind.INVALID_RESPONSE, reason=reason)


def classify(
    result: InvokeResult,
    records: Sequence[Record],
    *,
    report_batch_item_failures: bool,
    parse_identifier: IdentifierParser = string_identifier,
) -> Outcome:
    if result.function_error:
        return Outcome(OutcomeKind.FUNCTION_ERROR, reason=result.function_error)
    if not report_batch_item_failures:
        return SUCCESS
    body = result.payload.strip()
    if not body:
        return SUCCESS
    try:
        document = loads(body)
    except JSONDecodeError:
        return _invalid("the response is not valid JSON")
    if not document:
        return SUCCESS
    if not isinstance(document, dict):
        return _invalid("the response is not a JSON object")
    failures = document.get("batchItemFailures")
    if not failures:
        return SUCCESS
    if not isinstance(failures, list):
        return _invalid("batchItemFailures is not a list")
    known = {record.item_id for record in records}
    failed: set[Hashable] = set()
    for entry in failures:
        if not isinstance(entry, dict) or "itemIdentifier" not in entry:
            return _invalid("a batchItemFailures entry has no itemIdentifier")
        identifier = parse_identifier(entry["itemIdentifier"])
        if identifier is None:
            return _invalid("an itemIdentifier is empty, null or malformed")
        if identifier not in known:
            return _invalid(f"itemIdentifier {identifier!r} is not in the batch")
        failed.add(identifier)
    return Outcome(OutcomeKind.PARTIAL_FAILURE, failed_ids=frozenset(failed))


def split_at_first_failures(
    records: Sequence[Record], failed_ids: frozenset[Hashable]
) -> tuple[list[Record], list[Record]]:
    """Split an ordered batch after a partial failure.

    Per partition, the records before its first failed record succeeded; that record and
    every later record of the partition are retried (esm-reference.md 6.4: checkpoint at
    the lowest failed sequence number). For a single-shard batch this is exactly
    Lambda's rule; batches that span partitions (Kafka, files) apply it per partition.
    """
    done: list[Record] = []
    retry: list[Record] = []
    blocked: set[str] = set()
    for record in records:
        if record.partition in blocked or record.item_id in failed_ids:
            blocked.add(record.partition)
            retry.append(record)
        else:
            done.append(record)
    return done, retry


def error_summary(payload: bytes) -> dict[str, object]:
    """errorType and a short errorMessage from Lambda's error document, if it is one."""
    try:
        document = loads(payload) if payload else None
    except JSONDecodeError:
        return {"error_message": payload[:200].decode("utf-8", "replace")}
    if not isinstance(document, dict):
        return {}
    summary: dict[str, object] = {}
    if isinstance(document.get("errorType"), str):
        summary["error_type"] = document["errorType"]
    if isinstance(document.get("errorMessage"), str):
        summary["error_message"] = document["errorMessage"][:200]
    return summary

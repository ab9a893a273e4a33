"""The on-failure destination record in AWS's shape (esm-reference.md section 10)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from bridge.codec import Fragment
from bridge.protocols import EventFormatter
from bridge.records import FailureCondition, FailureRecord


def iso_millis(epoch_seconds: float) -> str:
    """`2019-11-14T00:38:06.021Z`: UTC, millisecond precision, `Z` suffix."""
    moment = dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(epoch_seconds: float) -> str:
    """`2019-11-14T00:13:19Z`: the second-precision form DynamoDB batch info uses."""
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _response_context(failure: FailureRecord) -> dict[str, Any] | None:
    result = failure.last_result
    if result is None:
        return None
    return {
        "statusCode": result.status_code,
        "executedVersion": result.executed_version,
        # null when the last attempt was a partial batch response (esm-reference.md 6.4).
        "functionError": result.function_error,
    }


def failure_document(
    failure: FailureRecord, formatter: EventFormatter, *, include_payload: bool
) -> dict[str, Any]:
    """Build the invocation record Lambda sends to an on-failure destination.

    `responseContext` is omitted for RecordAgeExceeded and null for
    MaximumPayloadSizeExceeded (esm-reference.md 6.2, 10.1, 10.3). With `include_payload`
    the discarded event itself is embedded under `payload`, as for S3 destinations
    (10.2), so a destination that can hold it keeps the records themselves.
    """
    request_id = failure.request_id
    if request_id is None:
        request_id = failure.last_result.request_id if failure.last_result else str(uuid.uuid4())
    document: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id,
            "functionArn": failure.function_arn,
            "condition": failure.condition.value,
            "approximateInvokeCount": failure.approximate_invoke_count,
        },
    }
    if failure.condition is not FailureCondition.RECORD_AGE_EXCEEDED:
        document["responseContext"] = _response_context(failure)
    document["version"] = "1.0"
    document["timestamp"] = iso_millis(failure.timestamp)
    key, info = formatter.batch_info(failure.records)
    document[key] = info
    if include_payload:
        document["payload"] = Fragment(formatter.encode_event(failure.records))
    return document

"""What an asynchronous invocation leaves behind (esm-reference.md 10.5): the invocation
record for the on-success / on-failure destinations, and the dead-letter message.

The record's `requestPayload` is the event as the function received it, and
`responsePayload` its answer, both embedded as JSON (an answer that is not JSON is
embedded as a string). `responseContext` is left out when the function was never
reached (reserved concurrency 0, or only throttles and service errors before the event
grew too old), as for a stream record that aged out (10.1).
"""

from __future__ import annotations

import enum
from typing import Any

from bridge.codec import Fragment, JSONDecodeError, dumps, loads
from bridge.failures import iso_millis
from bridge.records import InvokeResult

# ErrorMessage of a dead-letter message holds the first KB of the error (10.5).
MAX_ERROR_MESSAGE = 1024


class Condition(enum.Enum):
    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"


def encode_result(result: InvokeResult) -> str:
    """An invocation's answer as the queue keeps it."""
    return dumps(
        {
            "payload": result.payload.decode("utf-8", "replace"),
            "request_id": result.request_id,
            "function_error": result.function_error,
            "status_code": result.status_code,
            "executed_version": result.executed_version,
        }
    ).decode()


def decode_result(text: str | None) -> InvokeResult | None:
    if text is None:
        return None
    kept = loads(text)
    return InvokeResult(
        payload=kept["payload"].encode(),
        request_id=kept["request_id"],
        function_error=kept["function_error"],
        status_code=kept["status_code"],
        executed_version=kept["executed_version"],
    )


def _embedded(payload: bytes) -> Any:
    """A payload as JSON inside the record: as it is if it is JSON, else as a string."""
    try:
        loads(payload)
    except (JSONDecodeError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")
    return Fragment(payload)


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: Condition,
    attempts: int,
    request_payload: bytes,
    result: InvokeResult | None,
    timestamp: float,
) -> bytes:
    """The record of esm-reference.md 10.5, as JSON bytes."""
    document: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_millis(timestamp),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.value,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _embedded(request_payload),
    }
    if result is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": result.executed_version}
        if result.function_error:
            context["functionError"] = result.function_error
        document["responseContext"] = context
        document["responsePayload"] = _embedded(result.payload) if result.payload else None
    return dumps(document)


def dead_letter_attributes(
    request_id: str, result: InvokeResult | None, reason: str
) -> dict[str, tuple[str, str]]:
    """RequestID, ErrorCode and ErrorMessage of a dead-letter message (10.5): the code is
    the HTTP status of the last answer (200 for a function error, as on AWS; 429 when the
    function was only ever throttled), the message the first KB of the error."""
    if result is not None:
        code = str(result.status_code)
        message = _error_message(result.payload) or reason
    else:
        code, message = "429", reason
    return {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", code),
        "ErrorMessage": ("String", message.encode()[:MAX_ERROR_MESSAGE].decode("utf-8", "ignore")),
    }


def _error_message(payload: bytes) -> str:
    try:
        document = loads(payload)
    except (JSONDecodeError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return str(document["errorMessage"])
    return payload.decode("utf-8", "replace")

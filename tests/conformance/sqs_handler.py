"""The functions of AWS's recorded SQS cases, as `python` handlers of lambda-bridge.

Each one does what LocalStack's test function of the same name does (described in each
case's `function_behaviour`), except that where the original sends what it saw to an SQS
queue so the test can observe it, this one appends the same document to the JSON-lines
file `RECORD_TO` (one line per invocation, with the function's name). The comparison is
with the event, which is the same either way.

Per-function settings (`OVERWRITE_RESULT` of `lambda_sqs_batch_item_failure`) come from
the JSON file `SQS_CONFORMANCE_SETTINGS`, keyed by function name: the daemon runs every
handler in its own process, so there is no per-function environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any

_LOCK = threading.Lock()


def _settings(context: Any) -> dict[str, Any]:
    path = os.environ.get("SQS_CONFORMANCE_SETTINGS")
    if not path:
        return {}
    with open(path) as settings:
        found: dict[str, Any] = json.load(settings).get(context.function_name, {})
        return found


def _record(context: Any, **seen: Any) -> None:
    line = json.dumps({"function": context.function_name, **seen}) + "\n"
    with _LOCK:
        descriptor = os.open(os.environ["RECORD_TO"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)


def lambda_echo(event: Any, context: Any) -> Any:
    """Logs the event (here: records it) and returns it."""
    _record(context, event=event)
    return event


def lambda_sqs_integration(event: Any, context: Any) -> None:
    """One record whose body is `{"destination": ..., "fail_attempts": N}`: raises
    "failed attempt" while N >= ApproximateReceiveCount; relays `{"error", "event"}`
    after the check, failing or not (`relayed`). A batch of more than one record, a
    body that is not JSON or has no destination raise before anything is relayed."""
    _record(context, relayed=False, event=event)
    records = event.get("Records", [])
    if len(records) != 1:
        raise ValueError("the payload must consist of exactly one record")
    record = records[0]
    message = json.loads(record["body"])
    if not message.get("destination"):
        raise ValueError("no destination for the event given")
    error: Exception | None = None
    try:
        if message["fail_attempts"] >= int(record["attributes"]["ApproximateReceiveCount"]):
            raise ValueError("failed attempt")
    except Exception as exc:
        error = exc
        raise
    finally:
        _record(context, relayed=True, error=None if error is None else str(error), event=event)


def lambda_sqs_batch_item_failure(event: Any, context: Any) -> Any:
    """Reports every record whose body's `fail_attempts` >= its ApproximateReceiveCount;
    returns OVERWRITE_RESULT instead when set; relays `{"event", "result"}`."""
    if not event.get("Records"):
        raise ValueError("no records passed to event")
    failures = []
    for record in event["Records"]:
        message = json.loads(record["body"])
        if message.get("fail_attempts") is None:
            raise ValueError("no fail_attempts for the event given")
        if message["fail_attempts"] >= int(record["attributes"]["ApproximateReceiveCount"]):
            failures.append(record["messageId"])
    result: Any = {"batchItemFailures": [{"itemIdentifier": item} for item in failures]}
    settings = _settings(context)
    if "overwrite_result" in settings:
        result = settings["overwrite_result"]
        with contextlib.suppress(ValueError):
            result = json.loads(result)
    _record(context, event=event, result=result)
    return result


def lambda_event_source_mapping_send_message(event: Any, context: Any) -> Any:
    """Relays the event's Records list as one JSON array; returns the count."""
    records = event.get("Records", [])
    _record(context, records=records)
    return {"count": len(records)}

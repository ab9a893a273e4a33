"""Shared pieces of the stream end-to-end tests (Kafka and Redis Streams): a handler that
records what it was given and fails on request, and checks over what it recorded."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.support import read_jsonl

# Every record's body is JSON: {"n": <int>, "poison": bool?, "slow": seconds?}.
STREAM_HANDLER = '''
"""Records each invocation; fails for poison records; reports random failures."""
import base64, json, os, random, time

LOG = os.environ["RECORD_TO"]
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0"))


def items(event):
    if "records" in event:
        for key, records in event["records"].items():
            for record in records:
                body = json.loads(base64.b64decode(record["value"]))
                yield key, record["offset"], body, {"partition": key, "offset": record["offset"]}
    else:
        for record in event["Records"]:
            entry = record["redis"]
            millis, seq = entry["id"].split("-")
            yield entry["stream"], [int(millis), int(seq)], json.loads(entry["fields"]["body"]), entry["id"]


def handler(event, context):
    rows = list(items(event))
    for _, _, body, _ in rows:
        if body.get("slow"):
            time.sleep(body["slow"])
    poisoned = any(body.get("poison") for _, _, body, _ in rows)
    # Like a well-behaved stream handler, stop a partition at its first failure and report
    # that record and every later one of the partition.
    failed, stopped = [], set()
    for row in rows:
        if not poisoned and (row[0] in stopped or (FAIL_RATE and random.random() < FAIL_RATE)):
            stopped.add(row[0])
            failed.append(row)
    failed_ids = {json.dumps(row[3]) for row in failed}
    with open(LOG, "a") as out:
        for partition, position, body, ident in rows:
            ok = not poisoned and json.dumps(ident) not in failed_ids
            out.write(json.dumps({"partition": partition, "position": position, "n": body["n"], "ok": ok, "request": context.aws_request_id, "size": len(rows)}) + "\\n")
    if poisoned:
        raise ValueError("poison record in the batch")
    return {"batchItemFailures": [{"itemIdentifier": row[3]} for row in failed]}
'''


def write_handler(folder: Path) -> Path:
    path = folder / "stream_handler.py"
    path.write_text(STREAM_HANDLER)
    return path


def calls(record_file: Path) -> list[dict[str, Any]]:
    return read_jsonl(record_file)


def delivered(record_file: Path) -> set[int]:
    """The `n` of every record the handler processed successfully."""
    return {row["n"] for row in calls(record_file) if row["ok"]}


def successes_by_partition(record_file: Path) -> dict[str, list[Any]]:
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for row in calls(record_file):
        if row["ok"]:
            by_partition[row["partition"]].append(row["position"])
    return by_partition


def failed_numbers(failure_file: Path, bodies: Any) -> set[int]:
    """The `n` of the records in the failure destination's file (payload included)."""
    numbers: set[int] = set()
    for failure in read_jsonl(failure_file):
        numbers |= {body["n"] for body in bodies(failure["payload"])}
    return numbers

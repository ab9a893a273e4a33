"""The handlers the fault suite runs inside the daemon, as source text written next to
each test's config.

Every record body the producers write is JSON `{"id": str, "p": str, "s": int}` (the
soak adds `"kind"`): a unique id, the partition the producer meant it for and its
sequence number there. A `files` record is a file named `<id>.rec` holding that JSON:
the file is the partition (sequence 0).
"""

from __future__ import annotations

from pathlib import Path

# Decodes one record of any source into (id, partition, seq, position, item identifier,
# receive count); shared by both handlers.
_DECODE = """
import base64, json, os, threading, time
from urllib.parse import unquote_plus

LOG = os.environ["FAULT_LOG"]
PID = os.getpid()
_lock = threading.Lock()

# A SIGKILL may have cut the previous run's last line short: start on a line of our own.
with open(LOG, "a") as _out:
    _out.write("\\n")


def rows(event):
    if "records" in event:  # Kafka
        for records in event["records"].values():
            for record in records:
                body = json.loads(base64.b64decode(record["value"]))
                ident = {"partition": f"{record['topic']}-{record['partition']}", "offset": record["offset"]}
                yield body, record["offset"], ident, 1
        return
    for record in event["Records"]:
        source = record.get("eventSource")
        if source == "aws:s3":
            key = unquote_plus(record["s3"]["object"]["key"])
            sequencer = record["s3"]["object"]["sequencer"]
            body = {"id": key.rsplit(".", 1)[0], "p": key, "s": 0}
            yield body, int(sequencer, 16), sequencer, 1
        elif source == "aws:sqs":
            count = int(record["attributes"]["ApproximateReceiveCount"])
            yield json.loads(record["body"]), record["messageId"], record["messageId"], count
        elif source == "aws:kinesis":
            sequence = record["kinesis"]["sequenceNumber"]
            yield json.loads(base64.b64decode(record["kinesis"]["data"])), int(sequence), sequence, 1
        else:  # Redis Streams
            entry = record["redis"]
            millis, seq = entry["id"].split("-")
            yield json.loads(entry["fields"]["body"]), [int(millis), int(seq)], entry["id"], 1


def write(lines):
    # One line per record, flushed as it is written: the daemon may die any moment.
    with _lock, open(LOG, "a") as out:
        for line in lines:
            out.write(json.dumps(line) + "\\n")
            out.flush()
"""

RECORDING_HANDLER = (
    '"""Fault suite: records every record it is given, with the daemon\'s pid and the time."""\n'
    + _DECODE
    + """

DELAY = float(os.environ.get("HANDLER_DELAY", "0"))


def handler(event, context):
    now = time.time()
    time.sleep(DELAY)
    write(
        {"pid": PID, "t": now, "id": body["id"], "p": body["p"], "s": body["s"],
         "pos": position, "count": count, "req": context.aws_request_id}
        for body, position, _, count in rows(event)
    )
    return {}
"""
)

SOAK_HANDLER = (
    '"""Fault suite soak: fails at random (seeded), by partial batch response or by '
    'raising; poison records fail every time."""\n'
    + _DECODE
    + """
import random
from collections import Counter

SEED = os.environ["FAULT_SEED"]
RAISE_RATE = float(os.environ["RAISE_RATE"])
FAIL_RATE = float(os.environ["FAIL_RATE"])
_seen = Counter()


def handler(event, context):
    found = list(rows(event))
    if not found:
        return {}
    with _lock:
        attempts = []
        for body, _, _, _ in found:
            _seen[body["id"]] += 1
            attempts.append(_seen[body["id"]])
    # Decisions depend on the seed, the record and how often it was seen, not on timing.
    first = found[0][0]["id"]
    raising = random.Random(f"{SEED}:raise:{first}:{attempts[0]}").random() < RAISE_RATE
    # Powertools-style: each record that failed is reported, and only those; Lambda
    # (and the bridge) retry from a partition's first reported record, so the records
    # after it are processed again even though they went through.
    failed = set()
    for (body, _, ident, _), attempt in zip(found, attempts):
        unlucky = random.Random(f"{SEED}:{body['id']}:{attempt}").random() < FAIL_RATE
        if body.get("poison") or unlucky:
            failed.add(json.dumps(ident))
    lines, blocked = [], set()
    for (body, _, ident, _), attempt in zip(found, attempts):
        ok = not raising and json.dumps(ident) not in failed
        # done: this attempt settles the record as a success (nothing failed before it
        # in its partition).
        done = ok and body["p"] not in blocked
        if not ok:
            blocked.add(body["p"])
        lines.append({"id": body["id"], "p": body["p"], "s": body["s"], "kind": body.get("kind"),
                      "ok": ok, "done": done, "raised": raising, "attempt": attempt,
                      "req": context.aws_request_id})
    write(lines)
    with _lock:
        for line in lines:
            if line["done"]:
                # Settled: never seen again, so its count need not be kept (a soak must
                # not grow the daemon's memory by itself).
                _seen.pop(line["id"], None)
    if raising:
        raise RuntimeError(f"soak: failing the batch of {len(found)} on purpose")
    return {"batchItemFailures": [{"itemIdentifier": json.loads(item)} for item in sorted(failed)]}
"""
)


def install(folder: Path, source: str, name: str = "fault_handler.py") -> str:
    """Write a handler next to the config; returns the config's `handler` value."""
    (folder / name).write_text(source)
    return f"{name}:handler"

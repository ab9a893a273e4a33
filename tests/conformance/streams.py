"""What the stream conformance modules (Kinesis, DynamoDB Streams) share: a recording
handler whose behaviour each function reads from a file, the config of one daemon with
one mapping per case, and reading what reached the on-failure destinations (SQS, SNS via
an SQS subscription, S3) in the shape AWS's recordings keep.

A case gets its own function (named after the case), stream or table, and destination.
The handler writes every event it receives to `<events>/<function>.jsonl` before doing
what the case's `function_behaviour` says; `behaviours.json` maps function names to one
of the behaviours below.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conformance.snapshots import Matcher
from tests.e2e import aws_helpers as aws
from tests.support import read_jsonl, wait_for

REGION = "us-east-1"
# moto's account: the streams' and tables' ARNs carry it, so the functions' do too.
ACCOUNT = "123456789012"

# Behaviours (`kind`):
#   echo                  record, return the event (LocalStack's lambda_echo)
#   raise                 record, raise Exception("intentional failure")
#   raise_if_key          raise when a record's decoded data has the key `key`
#   returns               return `value` (JSON); `raise_zero_division` raises instead
#   report_where          report the item identifier of records whose decoded data has
#                         `field` true (Kinesis: data JSON; DynamoDB: NewImage BOOL)
#   sleep_and_wrap        take `seconds`, return {"executionStart", "event"} (recorded)
#   log_data              record the list of decoded data (LocalStack's kinesis_log)
HANDLER = '''
"""Conformance handler: records each event, then behaves as behaviours.json says."""
import base64, json, os, time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "behaviours.json")) as source:
    BEHAVIOURS = json.load(source)


def decoded(record):
    if "kinesis" in record:
        return json.loads(base64.b64decode(record["kinesis"]["data"]))
    image = record["dynamodb"].get("NewImage") or {}
    return {key: next(iter(value.values())) for key, value in image.items()}


def identifier(record):
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]


def write(name, document):
    with open(os.path.join(HERE, "events", name + ".jsonl"), "a") as out:
        out.write(json.dumps(document) + "\\n")


def handler(event, context):
    behaviour = BEHAVIOURS[context.function_name]
    kind = behaviour["kind"]
    started = time.time()
    if kind == "sleep_and_wrap":
        time.sleep(behaviour["seconds"])
        answer = {"executionStart": started, "event": event}
        write(context.function_name, answer)
        return answer
    if kind == "log_data":
        write(context.function_name, [decoded(record) for record in event["Records"]])
        return None
    write(context.function_name, event)
    if kind == "echo":
        return event
    if kind == "raise":
        raise Exception("intentional failure")
    if kind == "raise_if_key":
        for record in event["Records"]:
            data = decoded(record)
            if isinstance(data, dict) and behaviour["key"] in data:
                raise Exception("Test exception (this is intentional)")
        return event
    if kind == "returns":
        if behaviour.get("raise_zero_division"):
            return 1 / 0
        return behaviour["value"]
    if kind == "report_where":
        failed = [
            {"itemIdentifier": identifier(record)}
            for record in event["Records"]
            if decoded(record).get(behaviour["field"]) is True
        ]
        return {"batchItemFailures": failed}
    raise AssertionError("unknown behaviour " + kind)
'''

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


@dataclass
class CaseSetup:
    """One case's mapping: its function's behaviour, its source block, the mapping
    settings taken from the case's `esm_parameters`, and its destination, if any."""

    name: str
    behaviour: dict[str, Any]
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    destination: str | None = None

    @property
    def function(self) -> str:
        return self.name


def mapping_settings(esm_parameters: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The lambda-bridge settings for AWS's CreateEventSourceMapping parameters (those
    that are settings of the mapping itself; the source's are written by the caller)."""
    settings: dict[str, Any] = {}
    for key, value in esm_parameters.items():
        if key in skip or key in {"StartingPosition", "DestinationConfig", "note", "then"}:
            continue
        if key == "FilterCriteria":
            settings["filter_criteria"] = {
                "filters": [{"pattern": item["Pattern"]} for item in value["Filters"]]
            }
        elif key[0].isupper():
            settings[snake(key)] = value
    return settings


def name_for(case_name: str) -> str:
    """A mapping and function name for a case (letters, digits, `_.-`; short)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", case_name.removeprefix("test_")).strip("-")
    return cleaned[:60]


def write_workspace(
    root: Path,
    endpoint: str,
    setups: list[CaseSetup],
    destinations: dict[str, str],
    *,
    extra: str = "",
) -> Path:
    """The handler, behaviours.json and the daemon's config; returns the config's path.
    `destinations` maps a destination name to its YAML flow mapping."""
    (root / "events").mkdir(parents=True, exist_ok=True)
    (root / "handler.py").write_text(HANDLER)
    behaviours = {setup.function: setup.behaviour for setup in setups}
    existing = root / "behaviours.json"
    if existing.exists():
        behaviours = {**json.loads(existing.read_text()), **behaviours}
    existing.write_text(json.dumps(behaviours))
    lines = [
        "state_dir: ./state",
        "drain_timeout_seconds: 5",
        f'aws: {{region: {REGION}, account_id: "{ACCOUNT}"}}',
        "functions:",
    ]
    for setup in setups:
        lines.append(
            f'  {setup.function}: {{invoker: python, handler: "handler.py:handler", timeout: 30}}'
        )
    lines.append("destinations:")
    lines.append("  unused: {type: file, path: ./unused}")
    for name, spec in destinations.items():
        lines.append(f"  {name}: {spec}")
    lines.append("mappings:")
    for setup in setups:
        settings = {
            "retry_backoff": {"initial_seconds": 0.05, "max_seconds": 0.2},
            **setup.settings,
        }
        lines.append(f"  - name: {setup.name}")
        lines.append(f"    function: {setup.function}")
        lines.append(f"    source: {setup.source}")
        for key, value in settings.items():
            lines.append(f"    {key}: {json.dumps(value)}")
        if setup.destination is not None:
            lines.append(
                f"    destination_config: {{on_failure: {{destination: {setup.destination}}}}}"
            )
    lines.append(extra)
    config = root / "bridge.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def events_of(root: Path, function: str) -> list[Any]:
    """Every event the function received, in order."""
    return read_jsonl(root / "events" / f"{function}.jsonl") if _exists(root, function) else []


def _exists(root: Path, function: str) -> bool:
    return (root / "events" / f"{function}.jsonl").exists()


def matcher() -> Matcher:
    return Matcher(account=ACCOUNT, region=REGION)


# -- destinations -----------------------------------------------------------------------


def sqs_destination(endpoint: str) -> tuple[str, str]:
    """A queue for failure records: (its URL, the destination's YAML)."""
    url, _ = aws.new_queue(endpoint)
    return url, f'{{type: sqs, queue_url: "{url}", endpoint_url: "{endpoint}"}}'


def sns_destination(endpoint: str) -> tuple[str, str]:
    """A topic with an SQS subscription (raw delivery off): (the queue's URL, the
    destination's YAML)."""
    sns = aws.client("sns", endpoint)
    topic = sns.create_topic(Name=aws.unique("failures"))["TopicArn"]
    url, arn = aws.new_queue(endpoint)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url, f'{{type: sns, topic_arn: "{topic}", endpoint_url: "{endpoint}"}}'


def s3_destination(endpoint: str) -> tuple[str, str]:
    """A bucket for failure records: (its name, the destination's YAML)."""
    bucket = aws.unique("failures")
    aws.client("s3", endpoint).create_bucket(Bucket=bucket)
    return bucket, f'{{type: s3, bucket: "{bucket}", endpoint_url: "{endpoint}"}}'


def _response(reply: dict[str, Any]) -> dict[str, Any]:
    """A boto3 answer as the recordings keep it: ResponseMetadata reduced to the status."""
    status = reply["ResponseMetadata"]["HTTPStatusCode"]
    return {**reply, "ResponseMetadata": {"HTTPHeaders": {}, "HTTPStatusCode": status}}


def queue_messages(endpoint: str, url: str, count: int, timeout: float = 30) -> dict[str, Any]:
    """Wait until the queue holds `count` messages, then one ReceiveMessage of them all,
    as the recordings hold it (`Messages`, `ResponseMetadata`)."""
    wait_for(
        lambda: aws.queue_depth(endpoint, url) >= count,
        timeout=timeout,
        what=f"{count} message(s) in {url}",
    )
    sqs = aws.client("sqs", endpoint)
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return _response(reply)


def s3_documents(endpoint: str, bucket: str, count: int, timeout: float = 30) -> list[Any]:
    """The failure objects in the bucket once there are `count`, by key."""
    s3 = aws.client("s3", endpoint)

    def listed() -> list[dict[str, Any]]:
        found = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return found if len(found) >= count else []

    objects = wait_for(listed, timeout=timeout, what=f"{count} object(s) in {bucket}")
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for item in sorted(objects, key=lambda item: item["Key"])
    ]


def wait_all(checks: dict[str, Callable[[], bool]], timeout: float) -> dict[str, bool]:
    """Poll every check until all are true or `timeout` passes; which ones were reached.
    Used by a module fixture so that one slow case does not fail the others."""
    deadline = time.monotonic() + timeout
    reached = dict.fromkeys(checks, False)
    while True:
        for name, check in checks.items():
            if not reached[name]:
                try:
                    reached[name] = bool(check())
                except Exception:
                    reached[name] = False
        if all(reached.values()) or time.monotonic() > deadline:
            return reached
        time.sleep(0.1)

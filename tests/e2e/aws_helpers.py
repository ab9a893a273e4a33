"""AWS pieces of the end-to-end tests: boto3 helpers against moto, and a handler that
records what each SQS, Kinesis or DynamoDB Streams invocation carried."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import Any

import boto3

from tests.support import read_jsonl

REGION = "us-east-1"

# Bodies are JSON: {"n": int, "fail_times": int?, "poison": bool?, "slow": seconds?}. A
# record fails while it has been received at most `fail_times` times (SQS), or on every
# attempt if poison; a batch with a slow record takes that long.
AWS_HANDLER = '''
"""Records each invocation's records; fails some on request (see aws_helpers.py)."""
import base64, json, os, time

LOG = os.environ["RECORD_TO"]


def rows(event):
    for record in event["Records"]:
        source = record.get("eventSource")
        if source == "aws:sqs":
            attributes = record["attributes"]
            body = json.loads(record["body"])
            yield {"id": record["messageId"], "group": attributes.get("MessageGroupId"),
                   "count": int(attributes["ApproximateReceiveCount"]), "body": body}
        elif source == "aws:kinesis":
            body = json.loads(base64.b64decode(record["kinesis"]["data"]))
            yield {"id": record["kinesis"]["sequenceNumber"], "group": record["eventID"].split(":")[0],
                   "count": 1, "body": body}
        else:
            image = record["dynamodb"].get("NewImage") or record["dynamodb"].get("OldImage")
            body = {"n": int(image["n"]["N"]), "poison": "poison" in image}
            yield {"id": record["dynamodb"]["SequenceNumber"], "group": record["eventName"],
                   "count": 1, "body": body}


def failing(row):
    body = row["body"]
    return bool(body.get("poison")) or row["count"] <= body.get("fail_times", 0)


def handler(event, context):
    found = list(rows(event))
    time.sleep(max([row["body"].get("slow", 0) for row in found], default=0))
    failed, stopped = [], set()
    for row in found:
        # Like a FIFO-aware handler: after a failure, report the rest of its group too.
        if failing(row) or (row["group"] is not None and row["group"] in stopped):
            failed.append(row["id"])
            if row["group"] is not None:
                stopped.add(row["group"])
    raising = bool(os.environ.get("RAISE_ON_FAILURE") and failed)
    with open(LOG, "a") as out:
        for row in found:
            ok = not raising and row["id"] not in failed
            out.write(json.dumps({**row, "n": row["body"]["n"], "ok": ok,
                                  "request": context.aws_request_id}) + "\\n")
    if raising:
        raise ValueError("failed records: " + ",".join(failed))
    return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}
'''


def write_handler(folder: Path) -> None:
    (folder / "aws_handler.py").write_text(AWS_HANDLER)


def rows(record_file: Path) -> list[dict[str, Any]]:
    return read_jsonl(record_file)


def succeeded(record_file: Path) -> list[int]:
    return [row["n"] for row in rows(record_file) if row["ok"]]


@functools.cache
def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_queue(
    endpoint: str,
    *,
    fifo: bool = False,
    visibility: int = 30,
    dead_letter_arn: str | None = None,
    max_receives: int = 2,
) -> tuple[str, str]:
    """A fresh queue: (URL, ARN)."""
    attributes = {"VisibilityTimeout": str(visibility)}
    if fifo:
        attributes["FifoQueue"] = "true"
    if dead_letter_arn is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(max_receives)}
        )
    sqs = client("sqs", endpoint)
    name = unique("orders") + (".fifo" if fifo else "")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, found["QueueArn"]


def send(endpoint: str, url: str, bodies: list[dict[str, Any]], group: str | None = None) -> None:
    sqs = client("sqs", endpoint)
    for start in range(0, len(bodies), 10):
        entries = []
        for index, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": json.dumps(body)}
            if group is not None:
                entry.update(MessageGroupId=group, MessageDeduplicationId=uuid.uuid4().hex)
            entries.append(entry)
        reply = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not reply.get("Failed"), reply["Failed"]


def queue_depth(endpoint: str, url: str) -> int:
    """Messages in the queue, visible or not."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = client("sqs", endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=names)
    return sum(int(found["Attributes"][name]) for name in names)


def drain(endpoint: str, url: str) -> list[dict[str, Any]]:
    """Receive (and delete) whatever the queue holds now: the message bodies."""
    sqs = client("sqs", endpoint)
    bodies: list[dict[str, Any]] = []
    while True:
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        messages = reply.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


# -- Kinesis -------------------------------------------------------------------------


def new_stream(endpoint: str, shards: int = 1) -> str:
    kinesis = client("kinesis", endpoint)
    name = unique("events")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return name


def put_records(endpoint: str, stream: str, bodies: list[dict[str, Any]], keys: int = 4) -> None:
    """Each body under partition key `key-<n % keys>`, in order."""
    kinesis = client("kinesis", endpoint)
    for body in bodies:
        kinesis.put_record(
            StreamName=stream,
            Data=json.dumps(body).encode(),
            PartitionKey=f"key-{body['n'] % keys}",
        )


def shard_ids(endpoint: str, stream: str) -> list[str]:
    shards = client("kinesis", endpoint).list_shards(StreamName=stream)["Shards"]
    return [shard["ShardId"] for shard in shards]


# -- DynamoDB ------------------------------------------------------------------------


def new_table(endpoint: str) -> tuple[str, str]:
    """A table with a NEW_AND_OLD_IMAGES stream: (name, stream ARN)."""
    name = unique("orders")
    reply = client("dynamodb", endpoint).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name, reply["TableDescription"]["LatestStreamArn"]


def put_item(endpoint: str, table: str, n: int, *, poison: bool = False) -> None:
    item: dict[str, Any] = {"pk": {"S": f"item-{n}"}, "n": {"N": str(n)}}
    if poison:
        item["poison"] = {"BOOL": True}
    client("dynamodb", endpoint).put_item(TableName=table, Item=item)


# -- SNS ------------------------------------------------------------------------------


def topic_into_queue(endpoint: str) -> tuple[str, str]:
    """A topic whose messages land in a queue (raw delivery off, as a subscriber sees
    them): (topic ARN, queue URL)."""
    url, arn = new_queue(endpoint)
    sns = client("sns", endpoint)
    topic = sns.create_topic(Name=unique("failures"))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url

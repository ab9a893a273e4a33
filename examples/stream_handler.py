"""Example handler for the configs in config/ (Kafka, Redis Streams, SQS, Kinesis and
DynamoDB Streams events).

Prints each record and reports records whose body contains "fail" as failed items, the
way a handler should with ReportBatchItemFailures: in an ordered partition (a Kafka
partition, a stream, a shard, a FIFO message group) it stops at the first failure and
reports that record and everything after it in the partition.
"""

import base64


def records(event):
    """(partition, item identifier, body text) of every record of any of the events."""
    if "records" in event:
        for partition, items in event["records"].items():
            for item in items:
                body = base64.b64decode(item["value"]).decode("utf-8", "replace")
                yield partition, {"partition": partition, "offset": item["offset"]}, body
        return
    for item in event["Records"]:
        source = item.get("eventSource")
        if source == "aws:sqs":
            group = item["attributes"].get("MessageGroupId")
            yield group, item["messageId"], item["body"]
        elif source == "aws:kinesis":
            data = base64.b64decode(item["kinesis"]["data"]).decode("utf-8", "replace")
            yield item["eventID"].split(":")[0], item["kinesis"]["sequenceNumber"], data
        elif source == "aws:dynamodb":
            change = item["dynamodb"]
            body = f"{item['eventName']} {change.get('NewImage') or change.get('Keys')}"
            yield "table", change["SequenceNumber"], body
        else:
            entry = item["redis"]
            yield entry["stream"], entry["id"], str(entry["fields"])


def handler(event, context):
    failures, stopped = [], set()
    for partition, identifier, body in records(event):
        if (partition is not None and partition in stopped) or "fail" in body:
            stopped.add(partition)
            failures.append({"itemIdentifier": identifier})
            continue
        print(f"[{context.aws_request_id[:8]}] {partition} {identifier}: {body}", flush=True)
    return {"batchItemFailures": failures}

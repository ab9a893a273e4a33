"""Example handler for the stream configs (config/kafka.yaml, config/redis-streams.yaml).

Prints each record and reports records whose body contains "fail" as failed items, the
way a stream handler should with ReportBatchItemFailures: it stops at the first failure
of a partition and reports that record and everything after it in the partition.
"""

import base64


def records(event):
    """(partition, item identifier, body text) of every record, for Kafka and Redis events."""
    if "records" in event:
        for partition, items in event["records"].items():
            for item in items:
                body = base64.b64decode(item["value"]).decode("utf-8", "replace")
                yield partition, {"partition": partition, "offset": item["offset"]}, body
    else:
        for item in event["Records"]:
            entry = item["redis"]
            yield entry["stream"], entry["id"], str(entry["fields"])


def handler(event, context):
    failures, stopped = [], set()
    for partition, identifier, body in records(event):
        if partition in stopped or "fail" in body:
            stopped.add(partition)
            failures.append({"itemIdentifier": identifier})
            continue
        print(f"[{context.aws_request_id[:8]}] {partition} {identifier}: {body}", flush=True)
    return {"batchItemFailures": failures}

"""Example handler for config/nats.yaml (NATS JetStream events).

Prints each message and reports messages whose body contains "fail" as failed items, the
way a handler should with ReportBatchItemFailures when the mapping keeps each subject in
order: it stops at a subject's first failure and reports that message and every later
one of the same subject in the batch.
"""

import base64


def handler(event, context):
    failures, stopped = [], set()
    for record in event["Records"]:
        subject = record["subject"]
        body = base64.b64decode(record["data"]).decode("utf-8", "replace")
        if subject in stopped or "fail" in body:
            stopped.add(subject)
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        print(
            f"[{context.aws_request_id[:8]}] {subject} #{record['streamSequence']} "
            f"(delivery {record['numDelivered']}): {body}",
            flush=True,
        )
    return {"batchItemFailures": failures}

"""Example handler for config/mqtt.yaml: MQTT messages in the bridge's `Records` event.

Prints each message and reports the ones whose payload says "fail" as failed items.
The session's messages are delivered in order, so, as a stream handler should, it stops
at the first failure and reports that message and every later one.
"""

import base64


def handler(event, context):
    failures = []
    for record in event["Records"]:
        payload = base64.b64decode(record["payload"]).decode("utf-8", "replace")
        if failures or "fail" in payload:
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        print(f"[{context.aws_request_id[:8]}] {record['topic']}: {payload}", flush=True)
    return {"batchItemFailures": failures}

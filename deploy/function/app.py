"""The `orders` function of deploy/compose.yaml, invoked by lambda-bridge with batches of
Redis stream entries (records modelled on Kinesis records, see the README).

An entry with a field `fail` (e.g. `XADD orders '*' order_id 7 fail yes`) cannot be
processed: it is reported in a partial batch response. Entries of one stream must be
processed in order, so every later entry of that stream is reported too and is retried
after it, rather than being processed ahead of it.
"""

import json


def handler(event, context):
    failures = []
    blocked_streams = set()
    for record in event["Records"]:
        entry = record["redis"]
        stream, fields = entry["stream"], entry["fields"]
        if stream in blocked_streams or "fail" in fields:
            blocked_streams.add(stream)
            failures.append({"itemIdentifier": entry["id"]})
            continue
        summary = {"stream": stream, "id": entry["id"], "fields": sorted(fields)}
        if entry["binaryFields"]:
            summary["binary_fields"] = sorted(entry["binaryFields"])
        print(json.dumps({"processed": summary}), flush=True)
    return {"batchItemFailures": failures}

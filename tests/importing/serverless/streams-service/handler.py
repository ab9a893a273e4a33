"""Counts clicks per tumbling window; writes the tickets it is given."""

import base64
import json
import os
from pathlib import Path


def count(event, context):
    state = dict(event.get("state") or {})
    for record in event["Records"]:
        state["clicks"] = (
            state.get("clicks", 0)
            + json.loads(base64.b64decode(record["kinesis"]["data"]))["count"]
        )
    if event.get("isFinalInvokeForWindow"):
        results = Path(os.environ["RESULTS_DIR"])
        results.mkdir(parents=True, exist_ok=True)
        (results / f"window-{event['window']['start'].replace(':', '-')}.json").write_text(
            json.dumps(state)
        )
    return {"state": state}


def audit(event, context):
    results = Path(os.environ["RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    for record in event["Records"]:
        ticket = record["dynamodb"]["NewImage"]["id"]["S"]
        (results / f"ticket-{ticket}.json").write_text(json.dumps({"event": record["eventName"]}))
    return {}

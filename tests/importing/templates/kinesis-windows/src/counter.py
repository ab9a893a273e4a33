"""Counts clicks per tumbling window; the final invocation of a window writes the total."""

import base64
import json
import os
from pathlib import Path


def handler(event, context):
    state = dict(event.get("state") or {})
    for record in event["Records"]:
        click = json.loads(base64.b64decode(record["kinesis"]["data"]))
        state["clicks"] = state.get("clicks", 0) + click.get("count", 1)
    if event.get("isFinalInvokeForWindow"):
        results = Path(os.environ["RESULTS_DIR"])
        results.mkdir(parents=True, exist_ok=True)
        name = event["window"]["start"].replace(":", "-")
        (results / f"window-{name}.json").write_text(json.dumps(state))
    return {"state": state}

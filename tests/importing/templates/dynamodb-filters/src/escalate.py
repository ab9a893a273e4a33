"""Writes each ticket it is given (only urgent inserts pass the filter)."""

import json
import os
from pathlib import Path


def handler(event, context):
    results = Path(os.environ["RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        ticket = image["id"]["S"]
        (results / f"{ticket}.json").write_text(
            json.dumps({"event": record["eventName"], "table": os.environ["TABLE_NAME"]})
        )
    return {}

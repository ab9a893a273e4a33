"""Writes each order; an order marked "bad" is reported as a batch item failure."""

import json
import os
from pathlib import Path

from order_tools import describe  # from the layer


def handler(event, context):
    results = Path(os.environ["RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])
        if order.get("bad"):
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        row = {
            "text": describe(order),
            "stage": os.environ["STAGE"],
            "queue": os.environ["QUEUE_NAME"],
            "region_text": os.environ["REGION_TEXT"],
        }
        (results / f"order-{order['id']}.json").write_text(json.dumps(row))
    return {"batchItemFailures": failures}

"""Processes orders; an order marked "bad" is reported as a batch item failure."""

import json
import os
from pathlib import Path

from orders_common import order_key  # from the layer


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
            "key": order_key(order),
            "stage": os.environ["STAGE"],
            "log": os.environ["LOG_LEVEL"],
            "region": os.environ["HOME_REGION"],
            "queue_region": os.environ["QUEUE_REGION"],
            "text": os.environ["TEMPLATE_TEXT"],
        }
        (results / f"{order['id']}.json").write_text(json.dumps(row))
    return {"batchItemFailures": failures}

"""Writes one file per event it gets (a schedule's firing, or a file's S3 event)."""

import json
import os
import time
from pathlib import Path


def handler(event, context):
    results = Path(os.environ["RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    (results / f"report-{time.time_ns()}.json").write_text(json.dumps(event))
    return {}

"""Writes a file per firing of a schedule."""

import json
import os
import time
from pathlib import Path


def handler(event, context):
    results = Path(os.environ["RESULTS_DIR"])
    results.mkdir(parents=True, exist_ok=True)
    (results / f"report-{time.time_ns()}.json").write_text(json.dumps(event))
    return {"ok": True}

"""A Python function for the `runtime` invoker, unmodified from what runs on Lambda: it
imports `greeting` from its layer (examples/runtime/layer/python)."""

import os

from greeting import greet


def handler(event, context):
    print(f"handling {context.aws_request_id}")
    records = event.get("Records", []) if isinstance(event, dict) else []
    return {
        "greeting": greet(context.function_name),
        "records": len(records),
        "pid": os.getpid(),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }

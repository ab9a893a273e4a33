"""Example handler for config/rabbitmq.yaml (Amazon MQ for RabbitMQ events).

Prints each message with its queue and headers. A message whose body contains "fail"
fails the whole batch: Amazon MQ has no partial batch responses, so the broker delivers
every message of the batch again (marked redelivered) until the function succeeds.
"""

import base64


def text(value):
    """A header value as Lambda writes it: strings arrive as {"bytes": [...]}."""
    if isinstance(value, dict) and "bytes" in value:
        return bytes(b % 256 for b in value["bytes"]).decode("utf-8", "replace")
    return value


def handler(event, context):
    for queue, messages in event["rmqMessagesByQueue"].items():
        for message in messages:
            body = base64.b64decode(message["data"]).decode("utf-8", "replace")
            if "fail" in body:
                raise ValueError(f"cannot handle {body!r}")
            properties = message["basicProperties"]
            headers = {name: text(value) for name, value in (properties["headers"] or {}).items()}
            again = " (redelivered)" if message["redelivered"] else ""
            print(f"[{context.aws_request_id[:8]}] {queue}{again} {headers}: {body}", flush=True)

"""Example handler for config/activemq.yaml (Amazon MQ for ActiveMQ events).

Prints each message; a message whose body contains "fail" fails the whole batch, which
Amazon MQ mappings retry whole (the broker's redelivery, then its dead-letter queue).
"""

import base64


def handler(event, context):
    failing = False
    for message in event["messages"]:
        body = base64.b64decode(message["data"]).decode("utf-8", "replace")
        print(message["messageID"], message["messageType"], message["redelivered"], body)
        failing = failing or "fail" in body
    if failing:
        raise ValueError("a message of the batch failed")
    return {}

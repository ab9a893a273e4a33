"""Answers API Gateway events of both payload formats."""

import json


def handler(event, context):
    version = event.get("version", "1.0")
    method = event["requestContext"]["http"]["method"] if version == "2.0" else event["httpMethod"]
    params = event.get("pathParameters") or {}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"version": version, "method": method, "id": params.get("id")}),
    }

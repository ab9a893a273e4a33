"""Answers API Gateway events of both payload formats."""

import json


def handler(event, context):
    version = event.get("version", "1.0")
    params = event.get("pathParameters") or {}
    method = event["requestContext"]["http"]["method"] if version == "2.0" else event["httpMethod"]
    body = {
        "version": version,
        "method": method,
        "id": params.get("id"),
        "function_version": context.function_version,
    }
    if method == "POST":
        body["created"] = json.loads(event.get("body") or "{}")
    return {
        "statusCode": 201 if method == "POST" else 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }

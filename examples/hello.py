"""Example handler for config/example.yaml.

Prints every S3-shaped record it receives and fails on purpose when a file's name
contains "fail", so you can watch retries, bisecting and the failure destination.
"""

from urllib.parse import unquote_plus


def handler(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        size = record["s3"]["object"].get("size", "-")
        print(
            f"[{context.aws_request_id[:8]}] {record['eventName']} s3://{bucket}/{key} size={size}",
            flush=True,
        )
        if "fail" in key.rsplit("/", 1)[-1]:
            raise RuntimeError(f"refusing {key}: its name contains 'fail'")
    return {"processed": len(event["Records"])}

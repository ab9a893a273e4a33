"""`Destination.deliver`: what is particular to one destination (the S3 key layout, the
Redis entry's `origin` field). That every destination delivers the document unchanged,
with its attributes where it has such: tests/contract/test_destinations.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import boto3

from bridge.config.plugins import BuildContext, Identity
from bridge.protocols import Destination
from bridge.records import Delivery
from connectors.redis.config import RedisStreamDestinationConfig
from connectors.s3.config import S3DestinationConfig

CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))
ARN = "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST"
DELIVERY = Delivery(
    b'{"order": 1}',
    "orders.async",
    ARN,
    None,
    {"RequestID": ("String", "r-1"), "ErrorCode": ("Number", "200")},
)


def deliver(destination: Destination) -> None:
    async def main() -> None:
        await destination.start()
        try:
            await destination.deliver(DELIVERY)
        finally:
            await destination.close()

    asyncio.run(main())


def test_s3_writes_one_object_under_the_functions_async_folder(aws_endpoint: str) -> None:
    """`[prefix/]aws/lambda/async/<origin>/YYYY/MM/DD/...` holds the document as it is."""
    bucket = f"async-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    config = S3DestinationConfig.model_validate(
        {"type": "s3", "bucket": bucket, "prefix": "failed", "endpoint_url": aws_endpoint}
    )
    deliver(config.build("failed", CONTEXT))
    [entry] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert entry["Key"].startswith("failed/aws/lambda/async/orders.async/")
    body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    assert body == b'{"order": 1}'


def test_redis_stream_entry_holds_the_record_and_its_origin(redis_url: str) -> None:
    """One XADD: the document in `record`, beside `origin`."""
    import redis

    stream = f"async-{uuid.uuid4().hex}"
    config = RedisStreamDestinationConfig.model_validate(
        {"type": "redis-stream", "url": redis_url, "stream": stream}
    )
    deliver(config.build("records", CONTEXT))
    [(_, fields)] = redis.Redis.from_url(redis_url).xrange(stream)
    assert fields[b"record"] == b'{"order": 1}'
    assert fields[b"origin"] == b"orders.async"

"""`--create-resources`: each declared resource that does not exist yet is created with the
template's properties (FIFO, visibility timeout, redrive policy, shard count, key schema,
stream view type), in dependency order (a queue after its dead-letter queue). An existing
one is left as it is."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bridge.errors import BridgeError
from bridge.importing.cfn_resources import CREATABLE
from bridge.importing.model import ResourceSpec
from connectors.aws.client import aws_client, error_code
from connectors.aws.config import AwsConnectionConfig
from connectors.aws.existence import QUEUE_MISSING, STREAM_MISSING

MISSING = QUEUE_MISSING | STREAM_MISSING
# A queue's properties in the template that CreateQueue takes as attributes (all the
# creatable ones but its name).
SQS_ATTRIBUTES = frozenset(CREATABLE["AWS::SQS::Queue"] - {"QueueName"})
ACTIVE_WAIT_SECONDS = 30.0
DEFAULT_RETENTION_HOURS = 24


class ResourceError(BridgeError):
    """A resource could not be looked up or created."""


def _connection(endpoint_url: str | None, region: str) -> AwsConnectionConfig:
    return AwsConnectionConfig(region=region, endpoint_url=endpoint_url)


async def account_id(endpoint_url: str | None, region: str) -> str:
    """The account the credentials act for (STS GetCallerIdentity)."""
    try:
        async with aws_client(_connection(endpoint_url, region), "sts", region) as sts:
            identity = await sts.get_caller_identity()
    except (ClientError, BotoCoreError, OSError) as exc:
        raise ResourceError(
            f"cannot find the account (sts GetCallerIdentity): {_reason(exc)}"
        ) from None
    return str(identity["Account"])


async def create_missing(
    specs: list[ResourceSpec], endpoint_url: str | None, region: str
) -> list[str]:
    """Create what does not exist; the logical ids of those created."""
    connection = _connection(endpoint_url, region)
    created: list[str] = []
    for spec in specs:
        try:
            if await _create(connection, region, spec):
                created.append(spec.logical_id)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise ResourceError(
                f"{spec.logical_id} ({spec.type} {spec.name}): {_reason(exc)}"
            ) from None
    return created


async def _create(connection: AwsConnectionConfig, region: str, spec: ResourceSpec) -> bool:
    creators = {
        "AWS::SQS::Queue": _queue,
        "AWS::Kinesis::Stream": _stream,
        "AWS::DynamoDB::Table": _table,
        "AWS::SNS::Topic": _topic,
    }
    return await creators[spec.type](connection, region, spec)


async def _queue(connection: AwsConnectionConfig, region: str, spec: ResourceSpec) -> bool:
    async with aws_client(connection, "sqs", region) as sqs:
        if await _exists(lambda: sqs.get_queue_url(QueueName=spec.name)):
            return False
        attributes = {
            key: _attribute(spec.properties[key])
            for key in sorted(SQS_ATTRIBUTES)
            if key in spec.properties
        }
        await sqs.create_queue(QueueName=spec.name, Attributes=attributes)
    return True


async def _stream(connection: AwsConnectionConfig, region: str, spec: ResourceSpec) -> bool:
    async with aws_client(connection, "kinesis", region) as kinesis:
        if await _exists(lambda: kinesis.describe_stream_summary(StreamName=spec.name)):
            return False
        arguments: dict[str, Any] = {"StreamName": spec.name}
        mode = spec.properties.get("StreamModeDetails")
        if isinstance(mode, dict) and mode.get("StreamMode") == "ON_DEMAND":
            arguments["StreamModeDetails"] = {"StreamMode": "ON_DEMAND"}
        else:
            arguments["ShardCount"] = int(spec.properties.get("ShardCount", 1))
        await kinesis.create_stream(**arguments)
        await _until_active(lambda: _stream_status(kinesis, spec.name), spec)
        hours = int(spec.properties.get("RetentionPeriodHours", DEFAULT_RETENTION_HOURS))
        if hours > DEFAULT_RETENTION_HOURS:
            await kinesis.increase_stream_retention_period(
                StreamName=spec.name, RetentionPeriodHours=hours
            )
            await _until_active(lambda: _stream_status(kinesis, spec.name), spec)
    return True


async def _stream_status(kinesis: Any, name: str) -> str:
    summary = await kinesis.describe_stream_summary(StreamName=name)
    return str(summary["StreamDescriptionSummary"]["StreamStatus"])


async def _table(connection: AwsConnectionConfig, region: str, spec: ResourceSpec) -> bool:
    async with aws_client(connection, "dynamodb", region) as dynamodb:
        if await _exists(lambda: dynamodb.describe_table(TableName=spec.name)):
            return False
        properties = spec.properties
        arguments: dict[str, Any] = {
            "TableName": spec.name,
            "AttributeDefinitions": properties.get("AttributeDefinitions", []),
            "KeySchema": properties.get("KeySchema", []),
        }
        throughput = properties.get("ProvisionedThroughput")
        if properties.get("BillingMode") == "PROVISIONED" and isinstance(throughput, dict):
            arguments["ProvisionedThroughput"] = {
                key: int(value) for key, value in throughput.items()
            }
        else:
            arguments["BillingMode"] = "PAY_PER_REQUEST"
        stream = properties.get("StreamSpecification")
        if isinstance(stream, dict) and stream.get("StreamViewType"):
            arguments["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if properties.get(key):
                arguments[key] = properties[key]
        await dynamodb.create_table(**arguments)
        await _until_active(lambda: _table_status(dynamodb, spec.name), spec)
    return True


async def _table_status(dynamodb: Any, name: str) -> str:
    table = await dynamodb.describe_table(TableName=name)
    return str(table["Table"]["TableStatus"])


async def _topic(connection: AwsConnectionConfig, region: str, spec: ResourceSpec) -> bool:
    async with aws_client(connection, "sns", region) as sns:
        attributes = {
            key: _attribute(spec.properties[key])
            for key in ("FifoTopic", "ContentBasedDeduplication")
            if key in spec.properties
        }
        await sns.create_topic(Name=spec.name, Attributes=attributes)  # idempotent
    return True


async def _exists(describe: Callable[[], Awaitable[Any]]) -> bool:
    """Whether the service describes the resource: False when it answers that there is
    none, its other errors raised."""
    try:
        await describe()
    except ClientError as exc:
        if error_code(exc) not in MISSING:
            raise
        return False
    return True


async def _until_active(status: Any, spec: ResourceSpec) -> None:
    deadline = asyncio.get_running_loop().time() + ACTIVE_WAIT_SECONDS
    while await status() != "ACTIVE":
        if asyncio.get_running_loop().time() > deadline:
            raise ResourceError(f"{spec.logical_id} ({spec.name}) did not become ACTIVE")
        await asyncio.sleep(0.2)


def _attribute(value: Any) -> str:
    """SQS and SNS attributes are strings; a redrive policy is JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc}"
    return str(exc) or type(exc).__name__

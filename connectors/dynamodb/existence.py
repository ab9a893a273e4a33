"""Whether a table's stream exists, for CreateEventSourceMapping (connectors.aws.existence)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws.client import aws_client, error_code
from connectors.aws.existence import STREAM_MISSING, STREAM_NOT_FOUND
from connectors.dynamodb.config import DynamoDBStreamsSourceConfig


async def missing_dynamodb_stream(
    config: DynamoDBStreamsSourceConfig, arn: str, fallback_region: str
) -> str | None:
    try:
        async with aws_client(config, "dynamodbstreams", fallback_region, read_timeout=10) as api:
            if config.stream_arn is not None:
                await api.describe_stream(StreamArn=config.stream_arn, Limit=1)
        if config.table is not None:
            async with aws_client(config, "dynamodb", fallback_region, read_timeout=10) as table:
                described = (await table.describe_table(TableName=config.table))["Table"]
                if "LatestStreamArn" not in described:
                    return STREAM_NOT_FOUND.format(arn=arn)
    except ClientError as exc:
        return STREAM_NOT_FOUND.format(arn=arn) if error_code(exc) in STREAM_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None

"""Whether a stream exists, for CreateEventSourceMapping (connectors.aws.existence)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws.client import aws_client, error_code
from connectors.aws.existence import STREAM_MISSING, STREAM_NOT_FOUND
from connectors.kinesis.config import KinesisSourceConfig


async def missing_kinesis_stream(
    config: KinesisSourceConfig, arn: str, fallback_region: str
) -> str | None:
    where = {"StreamARN": config.stream} if config.stream_is_arn else {"StreamName": config.stream}
    try:
        async with aws_client(config, "kinesis", fallback_region, read_timeout=10) as kinesis:
            await kinesis.describe_stream_summary(**where)
    except ClientError as exc:
        return STREAM_NOT_FOUND.format(arn=arn) if error_code(exc) in STREAM_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None

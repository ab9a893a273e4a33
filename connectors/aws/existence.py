"""Whether the queue or stream a new event source mapping names exists, asked of the
service, and Lambda's answer when it does not (CreateEventSourceMapping's
`InvalidParameterValueException`, esm-reference.md 16).

Only a definite "does not exist" counts: when the service cannot be asked (unreachable,
no credentials, access denied), the mapping is made and says its problem in
`LastProcessingResult` once it runs, as a mapping whose source goes away does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws.client import aws_client, error_code

if TYPE_CHECKING:
    from connectors.dynamodb.config import DynamoDBStreamsSourceConfig
    from connectors.kinesis.config import KinesisSourceConfig
    from connectors.sqs.config import SqsQueueConfig

_QUEUE_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_STREAM_MISSING = frozenset({"ResourceNotFoundException"})
# Lambda's words, as AWS answered (conformance recordings of the not existing sources).
QUEUE_NOT_FOUND = (
    "Error occurred while ReceiveMessage. SQS Error Code: "
    "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does "
    "not exist."
)
STREAM_NOT_FOUND = "Stream not found: {arn}"


async def missing_queue(config: SqsQueueConfig, fallback_region: str) -> str | None:
    region = config.queue_region(fallback_region)
    try:
        async with aws_client(config, "sqs", region, read_timeout=10) as sqs:
            if config.queue_url is not None:
                await sqs.get_queue_attributes(
                    QueueUrl=config.queue_url, AttributeNames=["QueueArn"]
                )
            else:
                await config.resolve_url(sqs)
    except ClientError as exc:
        return QUEUE_NOT_FOUND if error_code(exc) in _QUEUE_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None


async def missing_kinesis_stream(
    config: KinesisSourceConfig, arn: str, fallback_region: str
) -> str | None:
    where = {"StreamARN": config.stream} if config.stream_is_arn else {"StreamName": config.stream}
    try:
        async with aws_client(config, "kinesis", fallback_region, read_timeout=10) as kinesis:
            await kinesis.describe_stream_summary(**where)
    except ClientError as exc:
        return STREAM_NOT_FOUND.format(arn=arn) if error_code(exc) in _STREAM_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None


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
        return STREAM_NOT_FOUND.format(arn=arn) if error_code(exc) in _STREAM_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None

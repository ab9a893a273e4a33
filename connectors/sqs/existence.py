"""Whether a queue exists, for CreateEventSourceMapping (connectors.aws.existence)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws.client import aws_client, error_code
from connectors.aws.existence import QUEUE_MISSING, QUEUE_NOT_FOUND
from connectors.sqs.config import SqsQueueConfig


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
        return QUEUE_NOT_FOUND if error_code(exc) in QUEUE_MISSING else None
    except (BotoCoreError, OSError):
        return None
    return None

"""Settings of the `sqs` source and the `sqs` on-failure destination (no SDK import here).

A queue is named by its URL or its ARN, exactly one of them. Whether it is a FIFO queue
is known offline from its name, which SQS requires to end in `.fifo`.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from bridge.config.plugins import (
    QUEUE,
    BuildContext,
    ConfigPath,
    DestinationConfig,
    Identity,
    SourceConfig,
    SourceContext,
)
from bridge.failurestores import DeadLetterQueue
from bridge.filtering.criteria import SQS_BODY
from bridge.protocols import Destination, Source
from bridge.redaction import redact_url
from connectors.aws.config import AwsConnectionConfig

FIFO_SUFFIX = ".fifo"
# ReceiveMessage returns at most 10 messages; FIFO batches are capped there too.
MAX_MESSAGES_PER_RECEIVE = 10
QUEUE_ARN_PATTERN = r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?$"
# `https://sqs.<region>.amazonaws.com/...` and the legacy `https://<region>.queue.amazonaws.com/...`.
_ACCOUNT = re.compile(r"\d{12}")
_REGION_IN_URL = re.compile(r"^https?://(?:sqs\.([a-z0-9-]+)\.|([a-z0-9-]+)\.queue\.)amazonaws\.")


class SqsQueueConfig(AwsConnectionConfig):
    """Which queue, and how to reach it: shared by the source and the destination."""

    queue_url: str | None = Field(
        None, pattern=r"^https?://[^/]+/.+", description="The queue URL, as SQS gives it."
    )
    queue_arn: str | None = Field(
        None,
        pattern=QUEUE_ARN_PATTERN,
        description="The queue ARN instead of its URL; resolved with GetQueueUrl.",
    )

    @model_validator(mode="after")
    def _exactly_one_queue(self) -> SqsQueueConfig:
        if (self.queue_url is None) == (self.queue_arn is None):
            raise ValueError("set exactly one of queue_url and queue_arn")
        return self

    @property
    def queue_name(self) -> str:
        if self.queue_arn is not None:
            return self.queue_arn.rsplit(":", 1)[1]
        assert self.queue_url is not None
        return self.queue_url.rstrip("/").rsplit("/", 1)[1]

    @property
    def fifo(self) -> bool:
        return self.queue_name.endswith(FIFO_SUFFIX)

    @property
    def queue(self) -> str:
        """The queue as configured (URL or ARN), for logs and errors (never credentials)."""
        return self.queue_arn or redact_url(self.queue_url or "")

    def queue_region(self, fallback: str) -> str:
        """The region to call SQS in: `region` if set, else the queue's own region (from
        its ARN or an amazonaws.com URL), else the environment's, else `fallback`."""
        if self.region:
            return self.region
        if self.queue_arn is not None:
            return self.queue_arn.split(":")[3]
        found = _REGION_IN_URL.match(self.queue_url or "")
        if found:
            return found.group(1) or found.group(2)
        return self.region_or(fallback)

    def arn_for(self, identity: Identity) -> str:
        """The queue's ARN: as configured, else made of its URL (the account from the
        URL's path, as SQS writes it, else `aws.account_id`)."""
        if self.queue_arn is not None:
            return self.queue_arn
        parts = urlsplit(self.queue_url or "").path.strip("/").split("/")
        account = parts[-2] if len(parts) >= 2 and _ACCOUNT.fullmatch(parts[-2]) else None
        region = self.queue_region(identity.region)
        return f"arn:aws:sqs:{region}:{account or identity.account_id}:{self.queue_name}"

    async def resolve_url(self, client: Any) -> str:
        """The queue URL: as configured, or looked up from the ARN (GetQueueUrl)."""
        if self.queue_url is not None:
            return self.queue_url
        assert self.queue_arn is not None
        return await queue_url_of(client, self.queue_arn)


async def queue_url_of(client: Any, arn: str) -> str:
    """The URL of the queue an ARN names, asked of SQS (GetQueueUrl with its owner)."""
    _, _, _, _, account, name = arn.split(":", 5)
    reply = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return str(reply["QueueUrl"])


class SqsSourceConfig(SourceConfig, SqsQueueConfig):
    """Messages of an SQS queue (esm-reference.md 1.2, 1.3, 5).

    Standard queues are unordered and run up to `maximum_concurrency` batches at once.
    FIFO queues keep each message group in order: a group is delivered one batch at a
    time, and a failure blocks it until the failed messages come back. Failed messages
    are left to the queue: they reappear after its visibility timeout, and its redrive
    policy (not the mapping) decides when they go to a dead-letter queue.
    """

    type: Literal["sqs"]
    family = QUEUE
    filter_data_key = SQS_BODY
    wait_time_seconds: int = Field(
        20, ge=0, le=20, description="Long polling: how long one ReceiveMessage waits."
    )

    def source_id(self) -> str:
        return f"sqs:{self.queue}"

    def dead_letter_queue(self, url: str | None, context: BuildContext) -> DeadLetterQueue:
        from connectors.sqs.deadletters import SqsDeadLetterQueue

        return SqsDeadLetterQueue(self, url, context.identity.region)

    def api_description(self, mapping: str, identity: Identity) -> dict[str, Any]:
        return {"EventSourceArn": self.arn_for(identity)}

    async def check_exists(self, identity: Identity) -> str | None:
        from connectors.sqs.existence import missing_queue

        return await missing_queue(self, identity.region)

    def check_mapping(self, mapping: Any) -> list[tuple[ConfigPath, str]]:
        """FIFO: batch_size at most 10 and no batching window (esm-reference.md 5.3);
        standard: a batch_size above 10 needs a batching window of at least 1 s (2)."""
        batch_size = mapping.batch_size
        window = mapping.maximum_batching_window_in_seconds
        if self.fifo:
            problems: list[tuple[ConfigPath, str]] = []
            if batch_size is not None and batch_size > MAX_MESSAGES_PER_RECEIVE:
                problems.append(
                    (("batch_size",), f"must be at most {MAX_MESSAGES_PER_RECEIVE} for FIFO queues")
                )
            if window:
                problems.append(
                    (("maximum_batching_window_in_seconds",), "does not apply to FIFO queues")
                )
            return problems
        if batch_size is not None and batch_size > MAX_MESSAGES_PER_RECEIVE and (window or 0) < 1:
            return [
                (
                    ("maximum_batching_window_in_seconds",),
                    f"must be at least 1 when batch_size is above {MAX_MESSAGES_PER_RECEIVE}",
                )
            ]
        return []

    def build(self, context: SourceContext) -> Source:
        from connectors.sqs.source import SqsSource

        return SqsSource(self, context)

    @classmethod
    def sample_event(cls, count: int, identity: Identity) -> bytes:
        from connectors.sqs.events import MessageRecords, SqsEventFormatter, sample_message

        arn = f"arn:aws:sqs:{identity.region}:{identity.account_id}:orders"
        records = MessageRecords(arn, fifo=False)
        formatter = SqsEventFormatter()
        return formatter.encode_event([records.record(sample_message(n)) for n in range(count)])


class SqsDestinationConfig(DestinationConfig, SqsQueueConfig):
    """Failure records sent to a standard queue, metadata only (esm-reference.md 10.1)."""

    type: Literal["sqs"]

    def arn(self, identity: Identity) -> str | None:
        return self.arn_for(identity)

    @model_validator(mode="after")
    def _standard_queue(self) -> SqsDestinationConfig:
        if self.fifo:
            raise ValueError("an on-failure destination must be a standard queue, not FIFO")
        return self

    def build(self, name: str, context: BuildContext) -> Destination:
        from connectors.sqs.destination import SqsQueueDestination

        return SqsQueueDestination(name, self, fallback_region=context.identity.region)

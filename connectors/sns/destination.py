"""The `sns` destination: one Publish per failure record (esm-reference.md 10.1).

The message is the invocation record as a JSON string, metadata only (the `*BatchInfo`
says where the records are; they are not embedded), as Lambda sends to SNS. SNS takes
messages of at most 256 KB; a larger record is refused with a PermanentDestinationError
that says so rather than being cut, so nothing is lost silently: the mapping fails with
that reason and the records stay unsettled.

The client talks to the topic's region (from its ARN) unless `region` is set.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from bridge.codec import dumps
from bridge.errors import BridgeError, DestinationError, PermanentDestinationError
from bridge.failures import failure_document
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.sns.config import SnsDestinationConfig

# SNS's limit on a message, in bytes (256 KiB).
MAX_MESSAGE_BYTES = 256 * 1024
READ_TIMEOUT_SECONDS = 30.0


class _Unreachable(BridgeError):
    """The service did not answer; send() will try again."""


class SnsDestination:
    def __init__(self, name: str, config: SnsDestinationConfig) -> None:
        self.name = name
        self.topic_arn = config.topic_arn
        self._connection = config.connection().model_copy(
            update={"region": config.region or config.topic_region}
        )
        self._where = f"destination {name!r} (topic {config.topic_arn})"
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._log = structlog.get_logger("connectors.sns").bind(
            destination=name, topic=config.topic_arn
        )

    async def start(self) -> None:
        """Open the client and check the topic: a missing topic or denied access fails
        here; an unreachable service is only logged, since send() is retried."""
        region = self._connection.region_or("us-east-1")
        announce_endpoint(self._log, self._connection, "SNS", self.topic_arn, region)
        with aws_errors(
            self._where,
            "creating the client",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            self._client = await self._stack.enter_async_context(
                aws_client(self._connection, "sns", region, read_timeout=READ_TIMEOUT_SECONDS)
            )
        try:
            with aws_errors(
                self._where,
                "GetTopicAttributes",
                retriable=_Unreachable,
                permanent=PermanentDestinationError,
            ):
                await self._client.get_topic_attributes(TopicArn=self.topic_arn)
        except _Unreachable as exc:
            self._log.warning("sns.destination_unreachable", error=str(exc))

    def message(self, failure: FailureRecord, formatter: EventFormatter) -> str:
        """The Message: the failure record as JSON, without the records themselves."""
        body = dumps(failure_document(failure, formatter, include_payload=False))
        if len(body) > MAX_MESSAGE_BYTES:
            raise PermanentDestinationError(
                f"{self._where}: the failure record is {len(body)} bytes, over SNS's "
                f"{MAX_MESSAGE_BYTES}-byte message limit; it was not published "
                f"(records {failure.records[0]!r} to {failure.records[-1]!r})"
            )
        return body.decode()

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        client = self._client
        assert client is not None, "start() was not called"
        message = self.message(failure, formatter)
        with aws_errors(
            self._where,
            "Publish",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            await client.publish(TopicArn=self.topic_arn, Message=message)

    async def deliver(self, delivery: Delivery) -> None:
        """One Publish: the document as the Message, the attributes as message attributes."""
        client = self._client
        assert client is not None, "start() was not called"
        if len(delivery.body) > MAX_MESSAGE_BYTES:
            raise PermanentDestinationError(
                f"{self._where}: the document is {len(delivery.body)} bytes, over SNS's "
                f"{MAX_MESSAGE_BYTES}-byte message limit; it was not published"
            )
        attributes = {
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in delivery.attributes.items()
        }
        with aws_errors(
            self._where,
            "Publish",
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        ):
            await client.publish(
                TopicArn=self.topic_arn,
                Message=delivery.body.decode(),
                MessageAttributes=attributes,
            )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

"""Failure records sent to an SQS queue (esm-reference.md 10.1, 10.3).

Each discarded batch becomes one message whose body is the invocation record: request
and response context, condition and the source's `<Source>BatchInfo`, metadata only
(no `payload`): the records themselves must be read again from the source. AWS accepts
only standard queues here, which the config already checks.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from bridge.codec import dumps
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.failures import failure_document
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.sqs.config import SqsDestinationConfig


def message_body(failure: FailureRecord, formatter: EventFormatter) -> str:
    """The invocation record as the SQS message body."""
    return dumps(failure_document(failure, formatter, include_payload=False)).decode()


class SqsQueueDestination:
    def __init__(self, name: str, config: SqsDestinationConfig, *, fallback_region: str) -> None:
        self.name = name
        self.config = config
        self._region = config.queue_region(fallback_region)
        self._resources = contextlib.AsyncExitStack()
        self._client: Any = None
        self._queue_url: str | None = config.queue_url
        self._log = structlog.get_logger("connectors.sqs").bind(
            destination=name, queue=config.queue
        )

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(
            f"destination {self.name!r} ({self.config.queue})",
            doing,
            retriable=DestinationError,
            permanent=PermanentDestinationError,
        )

    async def start(self) -> None:
        """Create the client and make sure the queue exists: a missing queue (or access
        denied) fails the start; if SQS cannot be reached yet, the check is left to the
        first send."""
        self._client = await self._resources.enter_async_context(
            aws_client(self.config, "sqs", self._region)
        )
        announce_endpoint(
            self._log, self.config, "sqs", f"queue {self.config.queue_name}", self._region
        )
        try:
            queue_url = await self._resolve()
            with self._errors("GetQueueAttributes"):
                await self._client.get_queue_attributes(
                    QueueUrl=queue_url, AttributeNames=["QueueArn"]
                )
        except DestinationError as exc:
            if not exc.retriable:
                raise
            self._log.warning("sqs.destination_unavailable", error=str(exc))

    async def _resolve(self) -> str:
        if self._queue_url is None:
            with self._errors("GetQueueUrl"):
                self._queue_url = await self.config.resolve_url(self._client)
        return self._queue_url

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        assert self._client is not None, "start() was not called"
        queue_url = await self._resolve()
        body = message_body(failure, formatter)
        with self._errors("SendMessage"):
            await self._client.send_message(QueueUrl=queue_url, MessageBody=body)

    async def deliver(self, delivery: Delivery) -> None:
        """One message: the document as its body, the attributes as message attributes."""
        assert self._client is not None, "start() was not called"
        queue_url = await self._resolve()
        attributes = {
            name: {"DataType": kind, "StringValue": value}
            for name, (kind, value) in delivery.attributes.items()
        }
        with self._errors("SendMessage"):
            await self._client.send_message(
                QueueUrl=queue_url, MessageBody=delivery.body.decode(), MessageAttributes=attributes
            )

    async def close(self) -> None:
        await self._resources.aclose()
        self._client = None

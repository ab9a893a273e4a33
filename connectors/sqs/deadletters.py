"""Moving an SQS queue's dead-letter queue back into it (`lambda-bridge failures redrive`).

What StartMessageMoveTask does on AWS, by hand (emulators lack it): ReceiveMessage from
the dead-letter queue, SendMessageBatch to the source queue keeping the body, the
message attributes and, for FIFO queues, the message group, then DeleteMessageBatch of
only the messages whose send succeeded. At least once: a crash between the send and the
delete leaves the batch in flight in both queues (for FIFO queues the dead-letter
message's id is the deduplication id, so SQS drops a second send within its five-minute
deduplication window). The rate is capped at `max_per_second` as
MaxNumberOfMessagesPerSecond caps a move task. The dead-letter queue is the source
queue's redrive policy's `deadLetterTargetArn` (esm-reference.md 5.1), or the one named.
A message another queue sent there (its `DeadLetterQueueSourceArn` says so) is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bridge.codec import JSONDecodeError, loads
from bridge.failurestores import MoveProgress, RedriveError
from connectors.aws.client import aws_client, aws_errors
from connectors.sqs.config import MAX_MESSAGES_PER_RECEIVE, SqsSourceConfig, queue_url_of

# How long a received dead-letter message stays hidden while it is being moved.
MOVING_VISIBILITY_SECONDS = 60
RECEIVE_WAIT_SECONDS = 1
# A receive of only messages already seen in this run (another queue's, or failed sends,
# visible again after MOVING_VISIBILITY_SECONDS) does not end the move: up to this many in
# a row are received past (each hides them again). An empty receive ends it.
MAX_SEEN_RECEIVES = 5
# SendMessageBatch's total payload (bodies and message attributes): 1 MiB on AWS now,
# 256 KiB before 2025; the smaller, so a batch fits either. A larger message goes alone.
MAX_BATCH_BYTES = 262_144
_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")


class SqsDeadLetterQueue:
    def __init__(self, source: SqsSourceConfig, dlq_url: str | None, region: str) -> None:
        self._source = source
        self._dlq_url = dlq_url
        self._region = source.queue_region(region)
        self.where = f"the dead-letter queue of {source.queue}"
        self._resources = contextlib.AsyncExitStack()
        self._client: Any = None
        self._source_url = ""
        self._source_arn = ""

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(self.where, doing, retriable=RedriveError, permanent=RedriveError)

    async def open(self) -> None:
        self._client = await self._resources.enter_async_context(
            aws_client(self._source, "sqs", self._region)
        )
        with self._errors("GetQueueUrl"):
            self._source_url = await self._source.resolve_url(self._client)
        with self._errors("GetQueueAttributes"):
            reply = await self._client.get_queue_attributes(
                QueueUrl=self._source_url, AttributeNames=["QueueArn", "RedrivePolicy"]
            )
        attributes = reply["Attributes"]
        self._source_arn = attributes["QueueArn"]
        if self._dlq_url is None:
            self._dlq_url = await self._policy_target(attributes.get("RedrivePolicy"))
        self.where = f"dead-letter queue {self._dlq_url.rsplit('/', 1)[-1]} of {self._source.queue}"

    async def _policy_target(self, policy: str | None) -> str:
        target = None
        if policy:
            with contextlib.suppress(JSONDecodeError, AttributeError):
                target = loads(policy).get("deadLetterTargetArn")
        if not isinstance(target, str) or target.count(":") < 5:
            raise RedriveError(
                f"{self._source.queue} has no redrive policy: name its dead-letter queue "
                "with --dlq URL"
            )
        with self._errors("GetQueueUrl"):
            return await queue_url_of(self._client, target)

    async def depth(self) -> int:
        with self._errors("GetQueueAttributes"):
            reply = await self._client.get_queue_attributes(
                QueueUrl=self._dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        return int(reply["Attributes"]["ApproximateNumberOfMessages"])

    async def move(
        self, *, max_per_second: float, limit: int | None, report: Callable[[str], None]
    ) -> MoveProgress:
        progress = MoveProgress()
        seen: set[str] = set()  # failed or left alone: not received twice in one run
        batch = max(1, min(MAX_MESSAGES_PER_RECEIVE, int(max_per_second)))
        started = time.monotonic()
        seen_receives = 0
        while limit is None or progress.moved + progress.failed < limit:
            wanted = (
                batch if limit is None else min(batch, limit - progress.moved - progress.failed)
            )
            received = await self._receive(wanted)
            messages = [m for m in received if m["MessageId"] not in seen]
            if not messages:
                seen_receives += 1
                if not received or seen_receives > MAX_SEEN_RECEIVES:
                    break
                continue
            seen_receives = 0
            ours = [m for m in messages if self._came_from_source(m)]
            seen.update(m["MessageId"] for m in messages if m not in ours)
            # Pace the sends: n messages moved take at least n / max_per_second seconds.
            ahead = started + (progress.moved + progress.failed) / max_per_second
            await asyncio.sleep(max(0.0, ahead - time.monotonic()))
            sent, failed = await self._send(ours)
            for message, reason in failed:
                seen.add(message["MessageId"])
                report(f"{message['MessageId']}: not moved ({reason})")
            await self._delete(sent)
            progress.moved += len(sent)
            progress.failed += len(failed)
            report(f"{progress.moved} moved")
        return progress

    def _came_from_source(self, message: dict[str, Any]) -> bool:
        origin = message.get("Attributes", {}).get("DeadLetterQueueSourceArn")
        return origin is None or origin == self._source_arn

    async def _receive(self, count: int) -> list[dict[str, Any]]:
        with self._errors("ReceiveMessage"):
            reply = await self._client.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                VisibilityTimeout=MOVING_VISIBILITY_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return list(reply.get("Messages", []))

    async def _send(
        self, messages: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
        sent: list[dict[str, Any]] = []
        failed: list[tuple[dict[str, Any], str]] = []
        for part in _parts(messages):
            entries = [self._entry(str(index), message) for index, message in enumerate(part)]
            with self._errors("SendMessageBatch"):
                reply = await self._client.send_message_batch(
                    QueueUrl=self._source_url, Entries=entries
                )
            sent += [part[int(ok["Id"])] for ok in reply.get("Successful", [])]
            failed += [
                (part[int(bad["Id"])], f"{bad.get('Code', '?')}: {bad.get('Message', '')}")
                for bad in reply.get("Failed", [])
            ]
        return sent, failed

    def _entry(self, entry_id: str, message: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message["Body"]}
        attributes = {
            name: {key: value[key] for key in _ATTRIBUTE_KEYS if key in value}
            for name, value in message.get("MessageAttributes", {}).items()
        }
        if attributes:
            entry["MessageAttributes"] = attributes
        if self._source.fifo:
            system = message.get("Attributes", {})
            entry["MessageGroupId"] = system.get("MessageGroupId", "redriven")
            entry["MessageDeduplicationId"] = message["MessageId"]
        return entry

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
        ]
        with self._errors("DeleteMessageBatch"):
            reply = await self._client.delete_message_batch(QueueUrl=self._dlq_url, Entries=entries)
        if reply.get("Failed"):
            # Sent but still in the dead-letter queue: it would be moved twice.
            raise RedriveError(
                f"{self.where}: DeleteMessageBatch failed for {len(reply['Failed'])} messages "
                "already sent back (they will be moved again by the next redrive)"
            )

    async def close(self) -> None:
        await self._resources.aclose()


def _size(message: dict[str, Any]) -> int:
    """A message's size as SQS counts it: body, and each attribute's name, type and value."""
    size = len(message["Body"].encode())
    for name, value in message.get("MessageAttributes", {}).items():
        data = value.get("StringValue", value.get("BinaryValue", b""))
        data = data.encode() if isinstance(data, str) else data
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode()) + len(data)
    return size


def _parts(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The messages in send batches of at most MAX_BATCH_BYTES (a larger one alone)."""
    parts: list[list[dict[str, Any]]] = []
    total = 0
    for message in messages:
        size = _size(message)
        if not parts or total + size > MAX_BATCH_BYTES:
            parts.append([])
            total = 0
        parts[-1].append(message)
        total += size
    return parts

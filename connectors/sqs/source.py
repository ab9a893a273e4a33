"""The `sqs` source: long-polled ReceiveMessage, DeleteMessageBatch once a message is done.

As Lambda does (esm-reference.md 5.1), a message is deleted only after its batch
succeeded (or, with ReportBatchItemFailures, when it is not among the reported
failures, 5.2); a failed message is left alone and comes back once its visibility
timeout has passed, with ApproximateReceiveCount incremented. Retries and dead-letter
queues belong to the queue (its redrive policy), not to the mapping.

While a message is with the bridge (waiting for its batch, or being invoked), a
background task keeps it invisible: once half of its visibility timeout has passed, it
is made invisible for a full timeout again (ChangeMessageVisibilityBatch), so a slow
batch is not received a second time. A settled or released message is no longer
extended; a released one therefore reappears at most one visibility timeout later.

FIFO queues (esm-reference.md 1.3, 5.3) are ordered: SQS itself hands out no further
messages of a group while some of it are in flight, and the bridge delivers each
group through one lane, one batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from bridge.config.plugins import SourceContext
from bridge.errors import BridgeError, PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from connectors.aws.client import announce_endpoint, aws_client, aws_errors
from connectors.sqs.config import MAX_MESSAGES_PER_RECEIVE, SqsSourceConfig
from connectors.sqs.events import DEFAULT_FIFO_LANES, MessageRecords, SqsEventFormatter

# A failed ReceiveMessage is tried again this often (FIFO: with the same attempt id, so
# SQS hands back the messages the lost answer held) before the session fails.
RECEIVE_ATTEMPTS = 3
RECEIVE_RETRY_SECONDS = 0.5
# A DeleteMessageBatch entry that fails on the server side is tried again this often.
DELETE_ATTEMPTS = 4
DELETE_RETRY_SECONDS = 0.2
# Batch requests (delete, change visibility) one source runs at once.
REQUESTS_AT_ONCE = 16
# Visibility is checked four times per visibility timeout, and at least this often.
LONGEST_VISIBILITY_CHECK_SECONDS = 5.0


def _chunks(items: Sequence[Any], size: int = MAX_MESSAGES_PER_RECEIVE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqsSource(Source):
    """A queue; a FIFO queue is an ordered queue (esm-reference.md 5.1, 5.3)."""

    def __init__(self, config: SqsSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.mode = DeliveryMode.ORDERED_QUEUE if config.fifo else DeliveryMode.QUEUE
        self.formatter = SqsEventFormatter()
        self.problem: str | None = None
        self._function_timeout = context.function_timeout
        self._region = config.queue_region(context.identity.region)
        self._lanes = context.maximum_concurrency or DEFAULT_FIFO_LANES
        self._where = f"sqs queue {config.queue}"
        self._resources = contextlib.AsyncExitStack()
        self._client: Any = None
        self._queue_url = ""
        self._messages: MessageRecords | None = None
        self._receive_request: dict[str, Any] = {}
        self._visibility = 0
        # Receipt handle -> when (time.monotonic) its message becomes visible again.
        self._in_flight: dict[str, float] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._ownership: Ownership | None = None
        self._requests = asyncio.Semaphore(REQUESTS_AT_ONCE)
        self._fatal: BridgeError | None = None
        self._log = structlog.get_logger("connectors.sqs").bind(
            mapping=context.mapping, queue=config.queue
        )

    @property
    def redelivery_seconds(self) -> float | None:
        """The queue's visibility timeout, once the queue has been looked up."""
        return float(self._visibility) if self._visibility else None

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(self._where, doing, retriable=SourceError, permanent=PermanentSourceError)

    @property
    def in_flight(self) -> int:
        """Messages received and neither settled nor released: kept invisible."""
        return len(self._in_flight)

    # -- opening ---------------------------------------------------------------------

    async def open(self, ownership: Ownership) -> None:
        """Look the queue up and check it as AWS does when a mapping is created
        (esm-reference.md 2): the function timeout may not exceed the visibility timeout."""
        announce_endpoint(
            self._log, self.config, "sqs", f"queue {self.config.queue_name}", self._region
        )
        self._client = await self._resources.enter_async_context(
            aws_client(self.config, "sqs", self._region)
        )
        with self._errors("GetQueueUrl"):
            self._queue_url = await self.config.resolve_url(self._client)
        with self._errors("GetQueueAttributes"):
            reply = await self._client.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=["QueueArn", "VisibilityTimeout", "FifoQueue"],
            )
        attributes = reply["Attributes"]
        if (attributes.get("FifoQueue") == "true") != self.mode.ordered:
            raise PermanentSourceError(
                f"{self._where}: FifoQueue is {attributes.get('FifoQueue', 'false')}, "
                "but the queue name says otherwise (FIFO queue names end in .fifo)"
            )
        visibility = int(attributes["VisibilityTimeout"])
        if self._function_timeout > visibility:
            raise PermanentSourceError(
                f"{self._where}: the function timeout ({self._function_timeout:g} s) exceeds "
                f"the queue's visibility timeout ({visibility} s); raise the visibility "
                "timeout (AWS recommends six times the function timeout)"
            )
        self._visibility = visibility
        self._messages = MessageRecords(
            attributes["QueueArn"], fifo=self.mode.ordered, lanes=self._lanes
        )
        self._receive_request = {
            "QueueUrl": self._queue_url,
            "MaxNumberOfMessages": MAX_MESSAGES_PER_RECEIVE,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
            "WaitTimeSeconds": self.config.wait_time_seconds,
        }
        self._ownership = ownership
        self._keeper = ownership.spawn(self._keep_invisible(), "visibility")
        self._log.info(
            "sqs.reading",
            fifo=self.mode.ordered,
            visibility_timeout=visibility,
            region=self._region,
        )

    # -- reading ---------------------------------------------------------------------

    async def read(self) -> Sequence[Record]:
        """One ReceiveMessage (up to 10 messages); the batch builder gathers more."""
        if self._fatal is not None:
            raise self._fatal
        messages = self._messages
        assert messages is not None, "open() was not called"
        attempt_id = uuid.uuid4().hex if self.mode.ordered else None
        attempt = 1
        while True:
            try:
                reply = await self._receive(attempt_id)
                break
            except SourceError as exc:
                if not exc.retriable or attempt >= RECEIVE_ATTEMPTS:
                    raise
                self.problem = str(exc)
                self._log.warning("sqs.receive_failed", error=str(exc), attempt=attempt)
                await asyncio.sleep(RECEIVE_RETRY_SECONDS * attempt)
                attempt += 1
        self.problem = None
        received = reply.get("Messages")
        if not received:
            return []
        records = list(map(messages.record, received))
        visible_again = time.monotonic() + self._visibility
        self._in_flight.update(dict.fromkeys([record.handle for record in records], visible_again))
        return records

    async def _receive(self, attempt_id: str | None) -> Any:
        """ReceiveMessage, cut short if the visibility keeper fails meanwhile."""
        keeper = self._keeper
        assert keeper is not None
        request = self._receive_request
        if attempt_id is not None:
            request = {**request, "ReceiveRequestAttemptId": attempt_id}
        receiving = asyncio.ensure_future(self._client.receive_message(**request))
        try:
            await asyncio.wait((receiving, keeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not receiving.done():
                receiving.cancel()
        if keeper.done():
            if receiving.done() and not receiving.cancelled():
                receiving.exception()  # retrieved: the keeper's failure is the one raised
            raise self._keeper_failure(keeper)
        with self._errors("ReceiveMessage"):
            return receiving.result()

    def _keeper_failure(self, keeper: asyncio.Task[None]) -> BridgeError:
        if keeper.cancelled():
            return SourceError(f"{self._where}: the source was closed")
        error = keeper.exception()
        if isinstance(error, BridgeError):
            return error
        return SourceError(f"{self._where}: keeping messages invisible failed: {error!r}")

    # -- settling --------------------------------------------------------------------

    async def acknowledge(self, records: Sequence[Record]) -> None:
        """Delete the messages (DeleteMessageBatch, ten per request)."""
        if not records:
            return
        in_flight = self._in_flight
        for record in records:
            in_flight.pop(record.handle, None)
        if len(records) <= MAX_MESSAGES_PER_RECEIVE:
            await self._delete(records)
        else:
            await asyncio.gather(*map(self._delete, _chunks(records)))

    async def _delete(self, records: Sequence[Record]) -> None:
        """Delete up to ten messages; entries that fail on the server side are tried
        again with backoff, the others are logged: those messages come back after
        their visibility timeout and are delivered again."""
        pending = list(records)
        error = ""
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            entries = [
                {"Id": str(index), "ReceiptHandle": record.handle}
                for index, record in enumerate(pending)
            ]
            try:
                async with self._requests:
                    with self._errors("DeleteMessageBatch"):
                        reply = await self._client.delete_message_batch(
                            QueueUrl=self._queue_url, Entries=entries
                        )
            except SourceError as exc:
                error = str(exc)
                if not exc.retriable:
                    self._fatal = exc
                    break
            else:
                failed = reply.get("Failed") or []
                if not failed:
                    return
                retry = [entry for entry in failed if not entry.get("SenderFault")]
                refused = [entry for entry in failed if entry.get("SenderFault")]
                if refused:
                    self._delete_failed([pending[int(entry["Id"])] for entry in refused], refused)
                pending = [pending[int(entry["Id"])] for entry in retry]
                if not pending:
                    return
                error = f"{retry[0].get('Code')}: {retry[0].get('Message', '')}"
            if attempt < DELETE_ATTEMPTS:
                await asyncio.sleep(DELETE_RETRY_SECONDS * 2 ** (attempt - 1))
        self._log.error(
            "sqs.delete_failed",
            message_ids=[record.item_id for record in pending],
            error=error,
            consequence="delivered again after the visibility timeout",
        )

    def _delete_failed(self, records: list[Record], entries: list[dict[str, Any]]) -> None:
        self._log.error(
            "sqs.delete_failed",
            message_ids=[record.item_id for record in records],
            error=f"{entries[0].get('Code')}: {entries[0].get('Message', '')}",
            consequence="delivered again after the visibility timeout",
        )

    async def release(self, records: Sequence[Record]) -> None:
        """Leave the messages to the queue: they are no longer kept invisible and come
        back after their visibility timeout, as after a failed batch on AWS (5.1)."""
        in_flight = self._in_flight
        for record in records:
            in_flight.pop(record.handle, None)

    # -- visibility ------------------------------------------------------------------

    async def _keep_invisible(self) -> None:
        """Extend every message past half of its visibility timeout; a permanent error
        ends this task, and read() raises it."""
        interval = min(self._visibility / 4, LONGEST_VISIBILITY_CHECK_SECONDS)
        half = self._visibility / 2
        while True:
            await asyncio.sleep(interval)
            soon = time.monotonic() + half
            due = [handle for handle, until in self._in_flight.items() if until <= soon]
            if due:
                await asyncio.gather(*map(self._extend, _chunks(due)))

    async def _extend(self, handles: Sequence[str]) -> None:
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": self._visibility}
            for index, handle in enumerate(handles)
        ]
        asked = time.monotonic()
        try:
            async with self._requests:
                with self._errors("ChangeMessageVisibilityBatch"):
                    reply = await self._client.change_message_visibility_batch(
                        QueueUrl=self._queue_url, Entries=entries
                    )
        except SourceError as exc:
            if not exc.retriable:
                raise
            # Tried again at the next check; if SQS stays away, read() fails too.
            assert self._ownership is not None
            self._ownership.failed("visibility", str(exc))
            self._log.warning("sqs.visibility_failed", error=str(exc), messages=len(handles))
            return
        assert self._ownership is not None
        self._ownership.recovered("visibility")
        failed = {entry["Id"]: entry for entry in reply.get("Failed") or ()}
        in_flight = self._in_flight
        lost = []
        for index, handle in enumerate(handles):
            if handle not in in_flight:
                continue  # settled or released meanwhile
            entry = failed.get(str(index))
            if entry is None:
                in_flight[handle] = asked + self._visibility
            elif entry.get("SenderFault"):
                del in_flight[handle]
                lost.append(entry)
        if lost:
            # No longer in flight under this handle (e.g. already visible again, or past
            # SQS's 12-hour limit): the message may be delivered a second time.
            self._log.warning(
                "sqs.visibility_lost",
                messages=len(lost),
                error=f"{lost[0].get('Code')}: {lost[0].get('Message', '')}",
            )

    # -- closing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Stop extending; unsettled messages come back after their visibility timeout."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        self._in_flight.clear()
        await self._resources.aclose()
        self._client = None

"""Invoking a batch and deciding what becomes of each record.

Ordered sources follow Lambda's stream error machine (esm-reference.md section 6):
retries up to `maximum_retry_attempts`, records older than
`maximum_record_age_in_seconds` split off, bisecting on function errors, restarting
from the first failed record after a partial batch response, and the failure record to
the on-failure destination once a batch is given up. Unordered (queue) sources make one
attempt and hand failures back to the queue, whose visibility timeout and redrive policy
do the retrying (section 5.1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bridge.errors import TransportError
from bridge.ops.health import Health, Reporter
from bridge.ops.logs import batch_fields
from bridge.ops.metrics import MappingMetrics
from bridge.pipeline.discard import Discarder
from bridge.pipeline.journal import InFlight, MappingJournal
from bridge.pipeline.responses import classify, error_summary, split_at_first_failures
from bridge.protocols import Destination, EventFormatter, Invoker
from bridge.records import (
    FailureCondition,
    FailureRecord,
    InvokeResult,
    Outcome,
    OutcomeKind,
    Record,
    new_request_id,
)
from bridge.retry import RetryPolicy, sleep_unless

__all__ = ["Dispatcher", "RetryPolicy", "Settle"]

Settle = Callable[[Sequence[Record]], Awaitable[None]]


class _Stopped(Exception):
    """The mapping stopped while records were being given up; they stay unsettled."""


class _Segment:
    __slots__ = ("attempts", "last_result", "records", "transport_failures")

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.attempts = 0
        self.transport_failures = 0
        self.last_result: InvokeResult | None = None


class Dispatcher:
    """Delivers batches of one mapping and settles, releases or discards their records."""

    def __init__(
        self,
        *,
        mapping: str,
        function_arn: str,
        invoker: Invoker,
        formatter: EventFormatter,
        policy: RetryPolicy,
        settle: Settle,
        release: Settle,
        destination: Destination | None,
        stopping: asyncio.Event,
        abandoned: set[str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        redelivery_seconds: Callable[[], float | None] = lambda: None,
        retention_seconds: Callable[[], float | None] = lambda: None,
        metrics: MappingMetrics | None = None,
        health: Reporter | None = None,
        journal: MappingJournal | None = None,
    ) -> None:
        self.mapping = mapping
        self.metrics = metrics if metrics is not None else MappingMetrics()
        self.function_arn = function_arn
        self._invoker = invoker
        self._formatter = formatter
        self._policy = policy
        self._settle = settle
        self._release = release
        self._destination = destination
        self._stopping = stopping
        # Partitions revoked from this reader: their records are no longer delivered.
        self._abandoned = abandoned if abandoned is not None else set()
        self._now = wall_clock
        self._redelivery_seconds = redelivery_seconds
        self._retention_seconds = retention_seconds
        # In-process invocations of an ordered source are journaled (bridge.pipeline.journal).
        self._journal = journal
        self.discarder = Discarder(
            mapping=mapping,
            function_arn=function_arn,
            formatter=formatter,
            destination=destination,
            settle=settle,
            stopping=stopping,
            backoff=policy.backoff,
            metrics=self.metrics,
            health=health if health is not None else Health(),
            wall_clock=wall_clock,
        )
        self._log = structlog.get_logger("bridge.pipeline.dispatch").bind(mapping=mapping)
        self._debug = self._log.is_enabled_for(logging.DEBUG)

    # -- ordered sources -------------------------------------------------------------

    async def deliver_in_order(self, records: list[Record]) -> None:
        """Deliver `records` until each is settled or discarded, keeping their order.

        Returns early, leaving the rest unsettled, if the mapping is stopping: those
        records are delivered again after a restart.
        """
        try:
            await self._deliver_segments(deque([_Segment(records)]))
        except _Stopped:
            return

    async def _deliver_segments(self, work: deque[_Segment]) -> None:
        while work:
            segment = work[0]
            if self._stopping.is_set() and (segment.attempts or segment.transport_failures):
                return
            if self._abandoned and not self._keep_owned(segment):
                work.popleft()
                continue
            max_age = self._max_age()
            if max_age is not None and not await self._expire_old(segment, max_age):
                work.popleft()
                continue
            crashed = self._crashed_attempt(work) if self._journal is not None else None
            if crashed is not None:
                segment, result = work[0], crashed.result()
                segment.attempts = crashed.attempt - 1
            else:
                try:
                    result = await self._invoke(segment.records, segment.attempts + 1)
                except TransportError as exc:
                    segment.transport_failures += 1
                    if not await self._wait_after_transport_error(exc, segment.transport_failures):
                        return
                    continue
            segment.attempts += 1
            segment.transport_failures = 0
            segment.last_result = result
            outcome = self._classify(result, segment.records)
            if outcome.kind is OutcomeKind.SUCCESS:
                self.metrics.succeeded += len(segment.records)
                await self._settle(segment.records)
                work.popleft()
                continue
            if not await self._after_failure(work, outcome, result):
                return

    async def _after_failure(
        self, work: deque[_Segment], outcome: Outcome, result: InvokeResult
    ) -> bool:
        """Decide what becomes of the first segment after a failed attempt: the done part
        of a partial failure settled, bisect, give up, or wait to retry. False if the
        mapping stopped meanwhile."""
        policy = self._policy
        segment = work[0]
        self._log_failure(outcome, result, segment)
        if outcome.kind is OutcomeKind.PARTIAL_FAILURE:
            done, segment.records = split_at_first_failures(segment.records, outcome.failed_ids)
            if done:
                self.metrics.succeeded += len(done)
                await self._settle(done)
                # Only a failure without progress is a retry.
                self._restart_after_progress(segment)
                return True
        elif policy.bisect_batch_on_function_error and len(segment.records) > 1:
            # Splitting does not count against the retry limit (esm-reference.md 6.3);
            # each half gets its own count and the first half goes first.
            work.popleft()
            middle = len(segment.records) // 2
            work.appendleft(_Segment(segment.records[middle:]))
            work.appendleft(_Segment(segment.records[:middle]))
            halves = [middle, len(segment.records) - middle]
            self._log.info("batch.bisected", **batch_fields(segment.records), halves=halves)
            return True
        if policy.exhausted(segment.attempts):
            failure = self._failure(
                FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
                segment.records,
                segment.attempts,
                segment.last_result,
            )
            if not await self.discard(failure):
                return False
            work.popleft()
            return True
        delay = policy.backoff.delay(segment.attempts)
        self._log.info(
            "batch.retrying",
            **batch_fields(segment.records),
            attempt=segment.attempts + 1,
            delay=round(delay, 3),
        )
        return await sleep_unless(self._stopping, delay)

    def _restart_after_progress(self, segment: _Segment) -> None:
        """The records before the first reported one succeeded: the rest is a new batch,
        its attempts counted from 1 (esm-reference.md 6.4; AWS's kinesis and dynamodb
        report_batch_item_failures recordings: the 6th of 6 records, batch size 3, is in
        5 invocations and its failure record counts 4 with MaximumRetryAttempts 3)."""
        self._log.info("batch.retrying", **batch_fields(segment.records), attempt=1, delay=0)
        segment.attempts, segment.last_result = 0, None

    def _crashed_attempt(self, work: deque[_Segment]) -> InFlight | None:
        """If the next segment starts with records whose invocation was in flight when
        the daemon died (bridge.pipeline.journal), that crash is their failed attempt: the records
        it covered become a segment of their own, to be judged as a Runtime.ExitError."""
        journal = self._journal
        assert journal is not None
        if not journal.has_crashes:
            return None
        segment = work[0]
        claimed = journal.claim(segment.records, self._formatter.stable_position)
        if claimed is None:
            return None
        crashed, covered = claimed
        if covered < len(segment.records):
            work.popleft()
            work.appendleft(_Segment(segment.records[covered:]))
            work.appendleft(_Segment(segment.records[:covered]))
        return crashed

    def _keep_owned(self, segment: _Segment) -> bool:
        """Drop records of revoked partitions; False if none is left."""
        owned = [record for record in segment.records if record.partition not in self._abandoned]
        if len(owned) != len(segment.records):
            self.metrics.released += len(segment.records) - len(owned)
            self._log.info(
                "batch.abandoned",
                dropped=len(segment.records) - len(owned),
                reason="partition revoked",
            )
            segment.records = owned
        return bool(owned)

    def _max_age(self) -> float | None:
        """The age at which a record is given up: `maximum_record_age_in_seconds`, and in
        any case the source's retention, after which the record has left the stream
        (Kinesis: its retention period, DynamoDB Streams: 24 h; esm-reference.md 6.1)."""
        configured = self._policy.maximum_record_age_in_seconds
        retention = self._retention_seconds()
        if retention is None:
            return configured if configured >= 0 else None
        return retention if configured < 0 else min(configured, retention)

    async def _expire_old(self, segment: _Segment, max_age: float) -> bool:
        """Split off records older than `max_age`; False if none is left.

        Expired records go to the destination with RecordAgeExceeded and no
        responseContext; the younger ones are still delivered (esm-reference.md 6.2).
        `approximateInvokeCount`: the invocations so far, at least 1, as AWS records for
        records too old when first read (kinesis maximum_record_age_exceeded* recordings).
        """
        limit = self._now() - max_age
        records = segment.records
        if all(record.arrival >= limit for record in records):
            return True
        expired = [record for record in records if record.arrival < limit]
        segment.records = [record for record in records if record.arrival >= limit]
        failure = self._failure(
            FailureCondition.RECORD_AGE_EXCEEDED, expired, max(segment.attempts, 1), None
        )
        if not await self.discard(failure):
            raise _Stopped
        return bool(segment.records)

    # -- unordered sources -----------------------------------------------------------

    async def deliver_once(self, records: list[Record]) -> set[str]:
        """One invocation; successes are settled, failures handed back to the queue.
        Returns the partitions (FIFO message groups) that had a failure.

        Transport faults (throttling, an unreachable endpoint) are retried with backoff
        until the source would redeliver the records anyway (SQS: the visibility
        timeout), then the batch is released: Lambda keeps retrying a throttled SQS batch
        until its visibility timeout elapses and the messages return to the queue
        (esm-reference.md 5.1), where the redrive policy counts the receive. A partial
        batch response deletes the successes and leaves the reported messages to the
        queue, FIFO or not (5.2).
        """
        failures = 0
        limit = self._redelivery_seconds()
        give_up_at = None if limit is None else time.monotonic() + limit
        while True:
            try:
                result = await self._invoke(records, 1)
                break
            except TransportError as exc:
                failures += 1
                out_of_time = give_up_at is not None and time.monotonic() >= give_up_at
                if out_of_time or not await self._wait_after_transport_error(exc, failures):
                    if out_of_time:
                        self._log.warning(
                            "batch.released_unavailable",
                            **batch_fields(records),
                            attempts=failures,
                            redelivery_seconds=limit,
                        )
                    await self._release(records)
                    return {record.partition for record in records}
        outcome = self._classify(result, records)
        if outcome.kind is OutcomeKind.SUCCESS:
            self.metrics.succeeded += len(records)
            await self._settle(records)
            return set()
        segment = _Segment(records)
        segment.attempts = 1
        self._log_failure(outcome, result, segment)
        if outcome.kind is OutcomeKind.PARTIAL_FAILURE:
            failed_ids = outcome.failed_ids
            failed = [record for record in records if record.item_id in failed_ids]
            succeeded = [record for record in records if record.item_id not in failed_ids]
            self.metrics.succeeded += len(succeeded)
            await self._settle(succeeded)
        else:
            failed = records
        await self._release(failed)
        return {record.partition for record in failed}

    # -- shared ----------------------------------------------------------------------

    async def discard(self, failure: FailureRecord) -> bool:
        """Give up the failure's records (bridge.pipeline.discard). False if stopping first."""
        return await self.discarder.discard(failure)

    def _failure(
        self,
        condition: FailureCondition,
        records: Sequence[Record],
        attempts: int,
        last_result: InvokeResult | None,
    ) -> FailureRecord:
        return self.discarder.failure(condition, records, attempts, last_result)

    def oversized(self, record: Record, limit: int) -> FailureRecord:
        return self.discarder.oversized(record, limit)

    async def _invoke(self, records: list[Record], attempt: int) -> InvokeResult:
        event = self._formatter.encode_event(records)
        request_id = new_request_id()
        metrics = self.metrics
        metrics.invoking(records, attempt)
        journal = self._journal
        if journal is not None:
            journal.started(request_id, attempt, records, self._formatter.stable_position)
        started = time.perf_counter()
        try:
            result = await self._invoker.invoke(event, request_id)
        finally:
            metrics.invoked_for(time.perf_counter() - started)
            if journal is not None:
                journal.ended(request_id)
        if self._debug:
            self._log.debug(
                "batch.invoked",
                **batch_fields(records),
                attempt=attempt,
                duration=round(time.perf_counter() - started, 6),
                request_id=result.request_id,
                function_error=result.function_error,
            )
        return result

    def _classify(self, result: InvokeResult, records: Sequence[Record]) -> Outcome:
        outcome = classify(
            result,
            records,
            report_batch_item_failures=self._policy.report_batch_item_failures,
            parse_identifier=self._formatter.parse_item_identifier,
        )
        if outcome.kind is OutcomeKind.SUCCESS:
            failed = 0
        elif outcome.kind is OutcomeKind.PARTIAL_FAILURE:
            failed = len(outcome.failed_ids)
        else:
            failed = len(records)
        self.metrics.answered(len(records), failed)
        return outcome

    async def _wait_after_transport_error(self, exc: TransportError, failures: int) -> bool:
        delay = self._policy.backoff.delay(failures)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        self._log.warning(
            "invoke.unavailable", error=str(exc), attempt=failures, delay=round(delay, 3)
        )
        return await sleep_unless(self._stopping, delay)

    def _log_failure(self, outcome: Outcome, result: InvokeResult, segment: _Segment) -> None:
        fields: dict[str, object] = {
            **batch_fields(segment.records),
            "attempt": segment.attempts,
            "outcome": outcome.kind.value,
            "request_id": result.request_id,
        }
        if outcome.kind is OutcomeKind.PARTIAL_FAILURE:
            fields["failed_items"] = len(outcome.failed_ids)
        elif outcome.kind is OutcomeKind.INVALID_RESPONSE:
            fields["reason"] = outcome.reason
        else:
            fields.update(error_summary(result.payload))
        self._log.warning("batch.failed", **fields)

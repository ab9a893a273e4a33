"""Giving records up: the failure record, the on-failure destination, then settling.

Records leave a mapping without a successful invocation when retries run out, when they
are too old, or when one alone is over the payload limit (esm-reference.md 6.1, 6.2,
3.1). Their failure record goes to the on-failure destination, and only once it is
written are the records settled; without a destination they are dropped with a
warning (Lambda's DroppedEventCount).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bridge.errors import DestinationError
from bridge.ops.health import Reporter
from bridge.ops.logs import batch_fields
from bridge.ops.metrics import MappingMetrics
from bridge.protocols import Destination, EventFormatter
from bridge.records import FailureCondition, FailureRecord, InvokeResult, Record
from bridge.retry import Backoff, sleep_unless

Settle = Callable[[Sequence[Record]], Awaitable[None]]


class Discarder:
    """Writes failure records of one mapping and settles what they cover."""

    def __init__(
        self,
        *,
        mapping: str,
        function_arn: str,
        formatter: EventFormatter,
        destination: Destination | None,
        settle: Settle,
        stopping: asyncio.Event,
        backoff: Backoff,
        metrics: MappingMetrics,
        health: Reporter,
        wall_clock: Callable[[], float],
    ) -> None:
        self.mapping = mapping
        self.function_arn = function_arn
        self._formatter = formatter
        self._destination = destination
        self._settle = settle
        self._stopping = stopping
        self._backoff = backoff
        self._metrics = metrics
        self._health = health
        self._now = wall_clock
        self._log = structlog.get_logger("bridge.pipeline.dispatch").bind(mapping=mapping)

    def failure(
        self,
        condition: FailureCondition,
        records: Sequence[Record],
        attempts: int,
        last_result: InvokeResult | None,
        reason: str = "",
    ) -> FailureRecord:
        return FailureRecord(
            mapping=self.mapping,
            condition=condition,
            records=list(records),
            approximate_invoke_count=attempts,
            function_arn=self.function_arn,
            timestamp=self._now(),
            last_result=last_result,
            reason=reason,
        )

    def oversized(self, record: Record, limit: int) -> FailureRecord:
        reason = (
            f"the record alone makes an event of {record.size} bytes, "
            f"over the {limit}-byte synchronous invoke limit"
        )
        return self.failure(FailureCondition.PAYLOAD_SIZE_EXCEEDED, [record], 0, None, reason)

    async def discard(self, failure: FailureRecord) -> bool:
        """Write the failure record, then settle its records. False if stopping first.

        A destination that fails for now is retried with backoff (the mapping is reported
        Degraded meanwhile); one that refuses for good (`retriable` False) raises, which
        fails the mapping with the reason. The records stay unsettled either way."""
        destination = self._destination
        log = self._log.bind(condition=failure.condition.value, **batch_fields(failure.records))
        if destination is None:
            log.warning(
                "records.discarded",
                reason=failure.reason or "no on-failure destination is configured",
                approximate_invoke_count=failure.approximate_invoke_count,
            )
            self._metrics.dropped += len(failure.records)
            await self._settle(failure.records)
            return True
        failures = 0
        while True:
            try:
                await destination.send(failure, self._formatter)
                break
            except DestinationError as exc:
                if not exc.retriable:
                    log.error("destination.failed", error=str(exc), permanent=True)
                    raise
                failures += 1
                self._health.failed("destination", str(exc))
                delay = self._backoff.delay(failures)
                log.error(
                    "destination.failed", error=str(exc), attempt=failures, delay=round(delay, 3)
                )
                if not await sleep_unless(self._stopping, delay):
                    return False
        if failures:
            self._health.recovered("destination")
        log.warning(
            "record.sent_to_destination", approximate_invoke_count=failure.approximate_invoke_count
        )
        self._metrics.sent_to_destination += len(failure.records)
        await self._settle(failure.records)
        return True

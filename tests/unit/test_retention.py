"""Unlimited retries still end where the stream ends: a record older than the source's
retention has left the stream and is given up as RecordAgeExceeded, as Lambda moves a
blocked Kinesis or DynamoDB shard on (esm-reference.md 6.1). Driven through the real
MappingRunner, session and dispatcher with the package's in-memory source."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import Ownership
from bridge.records import FailureCondition, InvokeResult, Record
from bridge.retry import Backoff
from bridge.testing import MemoryDestination, MemorySource, ScriptedInvoker

FAST = Backoff(initial=0.01, maximum=0.05)


class RetainingSource(MemorySource):
    """A stream that keeps records `retention` seconds, and says so when opened."""

    def __init__(self, records: list[Record], retention: float) -> None:
        super().__init__(records)
        self.retention = retention

    async def open(self, ownership: Ownership) -> None:
        await super().open(ownership)
        ownership.records_expire_after(self.retention)


def failing(event: dict[str, Any], request_id: str) -> InvokeResult:
    return InvokeResult(
        payload=b'{"errorMessage": "poison", "errorType": "Error"}',
        request_id=request_id,
        function_error="Unhandled",
    )


def run(source: MemorySource, destination: MemoryDestination, age: int = -1) -> None:
    runner = MappingRunner(
        name="stream",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=10),
            retry=RetryPolicy(
                maximum_retry_attempts=-1, maximum_record_age_in_seconds=age, backoff=FAST
            ),
            parallelization_factor=1,
            maximum_concurrency=1,
        ),
        source_factory=lambda: source,
        invoker=ScriptedInvoker(failing),
        destination=destination,
        reconnect_backoff=FAST,
    )

    async def main() -> None:
        task = asyncio.create_task(runner.run())
        try:
            await asyncio.wait_for(source.all_settled.wait(), 10)
        finally:
            runner.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_record_failing_for_ever_is_given_up_once_it_leaves_the_stream() -> None:
    """Unlimited retries and no maximum age: a poison record is retried until it is older
    than the stream's retention, then given up as RecordAgeExceeded (no responseContext),
    and its shard moves on."""
    arrived = time.time() - 59.5
    records = [Record("shard-0", 1, "1", {"n": 1}, arrived, "shard-0")]
    destination = MemoryDestination()
    run(RetainingSource(records, retention=60), destination)
    [failure] = destination.failures
    assert failure.condition is FailureCondition.RECORD_AGE_EXCEEDED
    assert failure.approximate_invoke_count >= 2
    assert "responseContext" not in destination.documents[0]


def test_the_shorter_of_record_age_and_retention_applies() -> None:
    """A maximum record age above the retention cannot keep a record the stream no longer
    has; one below it still applies first."""
    old = time.time() - 100
    destination = MemoryDestination()
    source = RetainingSource([Record("s", 1, "1", {"n": 1}, old, "s")], retention=90)
    run(source, destination, age=3600)
    assert [f.condition for f in destination.failures] == [FailureCondition.RECORD_AGE_EXCEEDED]
    # Given up before it was ever invoked: AWS still counts 1 (esm-reference.md 6.2).
    assert destination.failures[0].approximate_invoke_count == 1

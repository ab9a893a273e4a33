"""Every record read is accounted for once: polled = succeeded + sent to the destination +
dropped + filtered out (+ released, for queues), however often batches were retried,
split or partially failed. Driven through the real MappingRunner, lanes and dispatcher
with the package's in-memory source and a seeded, randomly failing function."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bridge.filtering.criteria import build_filter_set
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import InvokeResult
from bridge.retry import Backoff
from bridge.testing import MemoryDestination, MemorySource, ScriptedInvoker, memory_records

FAST = Backoff(initial=0.0001, maximum=0.001)


class RandomFailures:
    """Reports some records failed, sometimes raises; seeded so a failure replays. A few
    records always fail, so that some batches are given up: a partial failure that made
    progress starts a new batch with a fresh retry count (as on AWS), so random failures
    alone would rarely use up the retries."""

    POISON = frozenset({"100", "351", "598"})

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def __call__(self, event: dict[str, Any], request_id: str) -> InvokeResult:
        if self.random.random() < 0.1:
            return InvokeResult(
                payload=b'{"errorMessage": "boom", "errorType": "Error"}',
                request_id=request_id,
                function_error="Unhandled",
            )
        failed = [
            {"itemIdentifier": record["id"]}
            for record in event["Records"]
            if self.random.random() < 0.15 or record["id"] in self.POISON
        ]
        return InvokeResult(
            payload=f'{{"batchItemFailures": {failed}}}'.replace("'", '"').encode(),
            request_id=request_id,
        )


def run(source: MemorySource, *, destination: Any, seed: int) -> MappingRunner:
    some_filtered = build_filter_set(['{"id": [{"anything-but": ["7", "17", "27"]}]}'], None)
    runner = MappingRunner(
        name="m",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=10),
            retry=RetryPolicy(
                maximum_retry_attempts=2,
                bisect_batch_on_function_error=True,
                report_batch_item_failures=True,
                backoff=FAST,
            ),
            parallelization_factor=1,
            maximum_concurrency=4,
        ),
        source_factory=lambda: source,
        invoker=ScriptedInvoker(RandomFailures(seed)),
        destination=destination,
        filters=some_filtered,
        reconnect_backoff=FAST,
    )

    async def main() -> None:
        task = asyncio.create_task(runner.run())
        try:
            await asyncio.wait_for(source.all_settled.wait(), 20)
        finally:
            runner.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    return runner


def test_stream_metrics_add_up_under_partial_failures_retries_and_bisects() -> None:
    """Ordered partitions, random partial failures and function errors, bisecting and two
    retries: each record is counted once as succeeded, sent to the destination or
    dropped, or filtered out, and the sum is what was polled."""
    for seed, destination in ((1, MemoryDestination()), (2, None)):
        source = MemorySource(
            memory_records(600, partitions=6, payload=lambda n: {"id": str(n)}), chunk=50
        )
        runner = run(source, destination=destination, seed=seed)
        metrics = runner.metrics
        accounted = (
            metrics.succeeded + metrics.sent_to_destination + metrics.dropped + runner.filtered_out
        )
        assert metrics.polled == 600 == accounted, vars(metrics)
        assert runner.filtered_out == 3
        assert metrics.retries > 0 and metrics.sent_to_destination + metrics.dropped > 0
        assert len(source.settled) == 600

"""Keyed lanes (the files source's model, as S3 invokes Lambda): each key's records in
order, keys never waiting for each other, at most `maximum_concurrency` batches at once.
Driven through the real MappingRunner, session, keyed lane and dispatcher."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from bridge.filtering.criteria import build_filter_set
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.records import InvokeResult, Record
from bridge.retry import Backoff
from bridge.testing import MemoryDestination, MemorySource, ScriptedInvoker

FAST = Backoff(initial=0.001, maximum=0.01)


def keyed_records(keys: list[str], per_key: int) -> list[Record]:
    """`per_key` records of each key, interleaved as they would arrive."""
    records = []
    for round_ in range(per_key):
        for key in keys:
            payload = {"key": key, "n": round_}
            records.append(Record(key, round_, f"{key}-{round_}", payload, 0.0, key))
    return records


def runner_for(
    source: MemorySource,
    invoker: ScriptedInvoker,
    *,
    batch: int = 1,
    concurrency: int = 10,
    retry: RetryPolicy | None = None,
    destination: Any = None,
    filters: Any = None,
) -> MappingRunner:
    return MappingRunner(
        name="files",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=batch),
            retry=retry or RetryPolicy(backoff=FAST),
            parallelization_factor=1,
            maximum_concurrency=concurrency,
            keyed=True,
        ),
        source_factory=lambda: source,
        invoker=invoker,
        destination=destination,
        filters=filters,
        reconnect_backoff=FAST,
    )


async def run_until_settled(
    runner: MappingRunner, source: MemorySource, timeout: float = 10
) -> None:
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(source.all_settled.wait(), timeout)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 5)


class Watch:
    """Invoker behaviour: sleeps a moment, records overlaps per key and overall."""

    def __init__(self, delay: float = 0.005, failing: frozenset[str] = frozenset()) -> None:
        self.delay = delay
        self.failing = failing
        self.busy: set[str] = set()
        self.running = 0
        self.peak = 0
        self.key_overlap = False
        self.order: dict[str, list[int]] = defaultdict(list)
        self.calls: list[list[str]] = []

    async def __call__(self, event: dict[str, Any], request_id: str) -> InvokeResult:
        keys = [item["key"] for item in event["Records"]]
        self.calls.append(keys)
        if self.busy & set(keys):
            self.key_overlap = True
        self.busy |= set(keys)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
            self.busy -= set(keys)
        if self.failing & set(keys):
            return InvokeResult(
                payload=b'{"errorMessage": "no", "errorType": "Error"}',
                request_id=request_id,
                function_error="Unhandled",
            )
        for item in event["Records"]:
            self.order[item["key"]].append(item["n"])
        return InvokeResult(payload=b"null", request_id=request_id)


def test_each_key_stays_in_order_and_keys_run_side_by_side() -> None:
    """Forty keys with five records each: every key's records arrive in order, never two
    batches of one key at once, and up to the concurrency limit of batches run at once."""
    keys = [f"file-{index}" for index in range(40)]
    source = MemorySource(keyed_records(keys, 5), chunk=37)
    watch = Watch()
    runner = runner_for(source, ScriptedInvoker(watch), concurrency=8)
    asyncio.run(run_until_settled(runner, source))
    assert not watch.key_overlap
    assert watch.peak == 8
    assert {key: watch.order[key] for key in keys} == {key: [0, 1, 2, 3, 4] for key in keys}
    assert source.checkpoints.keys() == set(keys)
    assert {source.checkpoints[key].position for key in keys} == {4}


def test_a_file_that_always_fails_does_not_delay_the_files_after_it() -> None:
    """The failing key is retried (twice, as S3's asynchronous invocation) and given up to
    the destination after three attempts, while every other key is delivered meanwhile."""
    keys = ["bad", *[f"good-{index}" for index in range(20)]]
    source = MemorySource(keyed_records(keys, 1))
    watch = Watch(failing=frozenset({"bad"}))
    destination = MemoryDestination()
    retry = RetryPolicy(maximum_retry_attempts=2, backoff=Backoff(initial=0.2, maximum=0.2))
    runner = runner_for(source, ScriptedInvoker(watch), retry=retry, destination=destination)
    asyncio.run(run_until_settled(runner, source))
    assert [keys_ for keys_ in watch.calls if keys_ == ["bad"]] == [["bad"]] * 3
    last_bad = max(index for index, called in enumerate(watch.calls) if called == ["bad"])
    first_goods = [index for index, called in enumerate(watch.calls) if called != ["bad"]]
    assert max(first_goods) < last_bad, "the good files waited for the failing one"
    [failure] = destination.failures
    assert failure.approximate_invoke_count == 3
    assert [record.partition for record in failure.records] == ["bad"]


def test_batches_may_hold_many_keys_but_never_one_key_twice_at_once() -> None:
    """With a larger batch size several files go into one event, as before; a key with
    a batch in flight waits for it."""
    keys = [f"file-{index}" for index in range(6)]
    source = MemorySource(keyed_records(keys, 4))
    watch = Watch()
    runner = runner_for(source, ScriptedInvoker(watch), batch=5, concurrency=2)
    asyncio.run(run_until_settled(runner, source))
    assert any(len(set(called)) > 1 for called in watch.calls)
    assert all(len(called) <= 5 for called in watch.calls)
    assert not watch.key_overlap
    assert {key: watch.order[key] for key in keys} == {key: [0, 1, 2, 3] for key in keys}


def test_filtered_records_are_settled_without_a_call() -> None:
    """Records that match no filter are settled at once and never delivered."""
    keys = ["a.csv", "b.txt", "c.csv"]
    source = MemorySource(keyed_records(keys, 2))
    watch = Watch()
    csv_only = build_filter_set(['{"key": [{"suffix": ".csv"}]}'], None)
    runner = runner_for(source, ScriptedInvoker(watch), filters=csv_only)
    asyncio.run(run_until_settled(runner, source))
    assert sorted(watch.order) == ["a.csv", "c.csv"]
    assert source.checkpoints["b.txt"].position == 1

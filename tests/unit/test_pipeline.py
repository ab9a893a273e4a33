"""The mapping worker end to end in memory: lanes, ordering, concurrency, oversize records,
backpressure and supervision, through the real reader/lane/dispatch code."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Sequence
from typing import Any

from bridge.cancellation import cancelled_from_outside
from bridge.errors import PermanentSourceError, SourceError
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner, MappingState
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import DeliveryMode
from bridge.records import InvokeResult, Record, new_request_id
from bridge.retry import Backoff
from bridge.testing import (
    MemoryDestination,
    MemorySource,
    ScriptedInvoker,
    generate_records,
    memory_records,
)

FAST = Backoff(initial=0.001, maximum=0.01)


def runner_for(
    source_factory: Any,
    invoker: Any,
    *,
    batch: int = 10,
    concurrency: int = 2,
    destination: Any = None,
    retry: RetryPolicy | None = None,
    name: str = "m",
) -> MappingRunner:
    return MappingRunner(
        name=name,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=batch),
            retry=retry or RetryPolicy(backoff=FAST),
            parallelization_factor=1,
            maximum_concurrency=concurrency,
        ),
        source_factory=source_factory,
        invoker=invoker,
        destination=destination,
        reconnect_backoff=FAST,
    )


async def run_until(runner: MappingRunner, condition: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 5)


class Concurrency:
    """Invoker behaviour that sleeps a little and remembers how many calls overlapped."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.now = 0
        self.peak = 0
        self.lanes_busy: set[str] = set()
        self.lane_overlap = False

    async def __call__(self, event: dict[str, Any], request_id: str) -> InvokeResult:
        partitions = {str(item["p"]) for item in event["Records"]}
        if self.lanes_busy & partitions:
            self.lane_overlap = True
        self.lanes_busy |= partitions
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(self.delay)
        self.now -= 1
        self.lanes_busy -= partitions
        return InvokeResult(payload=b"null", request_id=request_id)


def test_ordered_source_keeps_each_partition_in_order_with_one_batch_in_flight() -> None:
    """Each partition's records reach the function in order and never in two batches at once,
    while different partitions run in parallel."""
    records = memory_records(
        300, partitions=3, payload=lambda index: {"id": index, "p": f"p{index % 3}"}
    )
    source = MemorySource(records, chunk=37)
    behaviour = Concurrency()
    invoker = ScriptedInvoker(behaviour)
    asyncio.run(run_until(runner_for(lambda: source, invoker), source.all_settled.is_set))
    assert not behaviour.lane_overlap
    assert behaviour.peak > 1
    for partition in ("p0", "p1", "p2"):
        seen = [
            item["id"]
            for event in invoker.events
            for item in event["Records"]
            if item["p"] == partition
        ]
        assert seen == sorted(seen) and len(seen) == 100
    assert {name: record.position for name, record in source.checkpoints.items()} == {
        "p0": 99,
        "p1": 99,
        "p2": 99,
    }


def test_unordered_source_runs_up_to_maximum_concurrency_batches() -> None:
    """A queue source runs several batches at once, never more than maximum_concurrency."""
    records = memory_records(200, payload=lambda index: {"id": index, "p": f"x{index}"})
    source = MemorySource(records, mode=DeliveryMode.QUEUE)
    behaviour = Concurrency(delay=0.02)
    invoker = ScriptedInvoker(behaviour)
    asyncio.run(
        run_until(
            runner_for(lambda: source, invoker, batch=5, concurrency=4), source.all_settled.is_set
        )
    )
    assert behaviour.peak == 4
    assert sorted(item["id"] for event in invoker.events for item in event["Records"]) == list(
        range(200)
    )


def test_record_too_large_for_one_invocation_goes_to_the_destination() -> None:
    """A record whose event alone exceeds 6 MB is sent to the on-failure destination with
    MaximumPayloadSizeExceeded (responseContext null) and the mapping goes on."""
    records = memory_records(
        5, payload=lambda index: {"id": index, "blob": "x" * (7_000_000 if index == 2 else 10)}
    )
    source = MemorySource(records)
    destination = MemoryDestination()
    invoker = ScriptedInvoker()
    asyncio.run(
        run_until(
            runner_for(lambda: source, invoker, destination=destination), source.all_settled.is_set
        )
    )
    delivered = [item["id"] for event in invoker.events for item in event["Records"]]
    assert delivered == [0, 1, 3, 4]
    document = destination.documents[0]
    assert document["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert document["responseContext"] is None
    assert destination.failures[0].records[0].item_id == "2"


def test_batches_respect_the_six_megabyte_limit() -> None:
    """Large records are split over several invocations so no event exceeds 6 MB."""
    records = memory_records(12, payload=lambda index: {"id": index, "blob": "x" * 1_500_000})
    source = MemorySource(records)
    invoker = ScriptedInvoker()
    asyncio.run(
        run_until(runner_for(lambda: source, invoker, batch=100), source.all_settled.is_set)
    )
    assert [len(event["Records"]) for event in invoker.events] == [4, 4, 4]


def test_reader_stops_reading_when_lanes_are_full() -> None:
    """With a slow function, records read ahead stay bounded instead of growing with the source."""
    source = MemorySource(generate_records(100_000), total=100_000, chunk=100)
    gate = asyncio.Event()

    async def slow(event: dict[str, Any], request_id: str) -> InvokeResult:
        await gate.wait()
        return InvokeResult(payload=b"null", request_id=request_id)

    async def scenario() -> int:
        runner = runner_for(lambda: source, ScriptedInvoker(slow), batch=10)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.3)
        read = source.served
        runner.stop()
        gate.set()
        await asyncio.wait_for(task, 5)
        return read

    read = asyncio.run(scenario())
    assert read <= 10 * 4 + 100 + 10


class FlakySource(MemorySource):
    def __init__(
        self, records: Sequence[Record], failures: int, error: type[Exception] = SourceError
    ) -> None:
        super().__init__(records)
        self.failures = failures
        self.error = error
        self.opened = 0

    async def open(self, ownership: Any) -> None:
        self.opened += 1
        if self.opened <= self.failures:
            raise self.error("broker unreachable (scripted)")


def test_source_failure_is_retried_while_other_mappings_keep_running() -> None:
    """A mapping whose source cannot connect retries with backoff and then delivers; a
    healthy mapping next to it is not held up."""
    flaky = FlakySource(memory_records(20), failures=3)
    healthy = MemorySource(memory_records(20))
    flaky_invoker, healthy_invoker = ScriptedInvoker(), ScriptedInvoker()

    async def scenario() -> None:
        first = runner_for(lambda: flaky, flaky_invoker, name="flaky")
        second = runner_for(lambda: healthy, healthy_invoker, name="healthy")
        tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
        async with asyncio.timeout(10):
            await healthy.all_settled.wait()
            await flaky.all_settled.wait()
        first.stop()
        second.stop()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert flaky.opened == 4
    assert sum(len(event["Records"]) for event in flaky_invoker.events) == 20


def test_permanent_source_error_marks_the_mapping_failed() -> None:
    """Access denied or not found: the mapping stops in state Failed with the reason."""
    source = FlakySource(memory_records(1), failures=99, error=PermanentSourceError)
    runner = runner_for(lambda: source, ScriptedInvoker())

    async def scenario() -> None:
        await asyncio.wait_for(runner.run(), 5)

    asyncio.run(scenario())
    assert runner.state is MappingState.FAILED
    assert "unreachable" in runner.state_reason
    assert source.opened == 1


def test_a_blocked_partition_is_paused_and_the_others_keep_flowing() -> None:
    """With a source that can pause partitions, a partition stuck retrying a poison record
    is paused when its lane is full, while every other partition is delivered."""
    records = memory_records(
        6000, partitions=2, payload=lambda index: {"id": index, "p": f"p{index % 2}"}
    )
    source = MemorySource(records, chunk=500, pausable=True)

    def behave(event: dict[str, Any], request_id: str) -> InvokeResult:
        if any(item["p"] == "p0" for item in event["Records"]):
            return InvokeResult(payload=b"{}", request_id=request_id, function_error="Unhandled")
        return InvokeResult(payload=b"null", request_id=request_id)

    invoker = ScriptedInvoker(behave)

    def healthy_done() -> bool:
        return sum(1 for record in source.settled if record.partition == "p1") == 3000

    asyncio.run(run_until(runner_for(lambda: source, invoker, batch=50), healthy_done))
    assert frozenset({"p0"}) in source.pause_calls
    assert source.paused == {"p0"}
    assert not any(record.partition == "p0" for record in source.settled)


def test_revoked_partitions_stop_retrying_and_are_never_settled() -> None:
    """When the source loses a partition (rebalance), its queued records are dropped, its
    retries stop and nothing of it is settled; the other partition goes on."""
    records = memory_records(
        60, partitions=2, payload=lambda index: {"id": index, "p": f"p{index % 2}"}
    )
    source = MemorySource(records, chunk=60)

    def behave(event: dict[str, Any], request_id: str) -> InvokeResult:
        if any(item["p"] == "p0" for item in event["Records"]):
            return InvokeResult(payload=b"{}", request_id=request_id, function_error="Unhandled")
        return InvokeResult(payload=b"null", request_id=request_id)

    invoker = ScriptedInvoker(behave)

    async def scenario() -> int:
        runner = runner_for(lambda: source, invoker, batch=5)
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(10):
            while sum(1 for event in invoker.events if event["Records"][0]["p"] == "p0") < 3:
                await asyncio.sleep(0.005)
            source.ownership.revoked(["p0"])
            while sum(1 for record in source.settled if record.partition == "p1") < 30:
                await asyncio.sleep(0.005)
        calls_after_revoke = sum(1 for event in invoker.events if event["Records"][0]["p"] == "p0")
        await asyncio.sleep(0.1)
        runner.stop()
        await asyncio.wait_for(task, 5)
        return (
            sum(1 for event in invoker.events if event["Records"][0]["p"] == "p0")
            - calls_after_revoke
        )

    extra_p0_calls = asyncio.run(scenario())
    assert extra_p0_calls <= 1
    assert not any(record.partition == "p0" for record in source.settled)
    assert "p0" not in source.checkpoints


def test_ordered_queue_blocks_a_failing_group_and_hands_its_later_messages_back() -> None:
    """SQS FIFO semantics: a message group with a failure is blocked: its failed message
    and every later message of the group waiting in the bridge go back to the queue,
    nothing of it is settled after the failure, and other groups go on (esm-reference.md 5.3)."""
    records = memory_records(
        40, partitions=2, payload=lambda index: {"id": index, "p": f"p{index % 2}"}
    )
    source = MemorySource(records, chunk=40, mode=DeliveryMode.ORDERED_QUEUE)

    def behave(event: dict[str, Any], request_id: str) -> InvokeResult:
        if any(item["id"] == 4 for item in event["Records"]):
            return InvokeResult(payload=b"{}", request_id=request_id, function_error="Unhandled")
        return InvokeResult(payload=b"null", request_id=request_id)

    invoker = ScriptedInvoker(behave)

    def done() -> bool:
        return len(source.settled) + len(source.released) == 40

    asyncio.run(run_until(runner_for(lambda: source, invoker, batch=3), done))
    # The first batch of group p0 (0, 2, 4) fails as a whole: it and all later p0 messages
    # go back; p1 is delivered in full.
    assert sorted(int(record.item_id) for record in source.released) == list(range(0, 40, 2))
    assert sorted(int(record.item_id) for record in source.settled) == list(range(1, 40, 2))
    invoked = [item["id"] for event in invoker.events for item in event["Records"]]
    assert [n for n in invoked if n % 2 == 0] == [0, 2, 4]


class SettleFailsOnce(MemorySource):
    """A queue whose first delete call fails, as when the connection drops mid-settle;
    like SQS, whatever was received and not deleted is received again later."""

    def __init__(self, records: Any) -> None:
        super().__init__(records, mode=DeliveryMode.QUEUE, keep=True)
        self.opened = 0
        self.settle_failed = False
        self.outstanding: dict[str, Record] = {}

    async def open(self, ownership: Any) -> None:
        self.opened += 1
        await super().open(ownership)

    async def read(self) -> Sequence[Record]:
        if self.opened > 1 and self.outstanding:
            chunk, self.outstanding = list(self.outstanding.values()), {}
            return chunk
        chunk = await super().read()
        self.outstanding.update((record.item_id, record) for record in chunk)
        return chunk

    async def acknowledge(self, records: Sequence[Record]) -> None:
        if not self.settle_failed:
            self.settle_failed = True
            raise SourceError("connection reset while deleting messages (scripted)")
        for record in records:
            self.outstanding.pop(record.item_id, None)
        await super().acknowledge(records)


def test_a_failed_settle_on_an_unordered_source_restarts_the_session() -> None:
    """Settling is never lost in a background task: the failure ends the session, the
    mapping reconnects with backoff, and every record is still settled."""
    source = SettleFailsOnce(memory_records(30))
    runner = runner_for(lambda: source, ScriptedInvoker(), batch=5, concurrency=3)

    def all_settled() -> bool:
        return len({record.item_id for record in source.settled}) == 30

    asyncio.run(run_until(runner, all_settled))
    assert source.settle_failed
    assert source.opened == 2


class ReadCancelledOnce(MemorySource):
    """A client library that lets a CancelledError of its own out of a read (aiokafka
    has during an outage): nothing cancelled the mapping."""

    def __init__(self, records: Any) -> None:
        super().__init__(records)
        self.opened = 0

    async def open(self, ownership: Any) -> None:
        self.opened += 1
        await super().open(ownership)

    async def read(self) -> Sequence[Record]:
        if self.opened == 1:
            raise asyncio.CancelledError
        return await super().read()


def test_a_cancelled_error_out_of_a_read_reconnects_rather_than_stopping_reading() -> None:
    """A read that raises CancelledError while the mapping is not stopping ends the
    session as a source error: the mapping reconnects and every record is settled, where
    a reader that just ended would have left the mapping Enabled and reading nothing."""
    source = ReadCancelledOnce(memory_records(20))
    runner = runner_for(lambda: source, ScriptedInvoker(), batch=5)
    asyncio.run(run_until(runner, lambda: len(source.settled) == 20))
    assert source.opened == 2
    assert runner.health.failures["source"] >= 1


def test_a_cancellation_is_told_from_a_stray_cancelled_error() -> None:
    """What a client library lets out of its own cancelled task (as aiokafka's stop() does)
    is not the running task's cancellation; a cancel() of the running task is."""

    async def stray() -> bool:
        inner = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        try:
            await inner
        except asyncio.CancelledError:
            return cancelled_from_outside()
        raise AssertionError("the inner task was not cancelled")

    async def own() -> bool:
        async def waiting() -> bool:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return cancelled_from_outside()
            raise AssertionError("not cancelled")

        task = asyncio.ensure_future(waiting())
        await asyncio.sleep(0)
        task.cancel()
        return await task

    assert asyncio.run(stray()) is False
    assert asyncio.run(own()) is True


def test_request_ids_are_distinct_version_4_uuids() -> None:
    """An invocation's request id has the form of Lambda's: a version 4, RFC 4122 UUID."""
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_request_ids_do_not_repeat_when_a_handler_seeds_random() -> None:
    """A handler in the daemon's process that seeds the `random` module does not make the
    next invocation's request id the same as the last one's."""
    random.seed(7)
    first = new_request_id()
    random.seed(7)
    assert new_request_id() != first


def test_a_forked_child_draws_other_request_ids() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    from_child = os.read(reader, 100).decode()
    os.close(reader)
    assert from_child != new_request_id()

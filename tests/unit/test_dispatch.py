"""The retry machine for ordered sources (esm-reference.md section 6) and the single
attempt of queue sources (section 5), run against scripted functions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codec import dumps
from bridge.errors import TransportError
from bridge.pipeline.dispatch import Dispatcher, RetryPolicy
from bridge.records import FailureCondition, InvokeResult, Record
from bridge.retry import Backoff
from bridge.testing import MemoryDestination, MemoryEventFormatter, ScriptedInvoker, memory_records

FAST = Backoff(initial=0.0001, maximum=0.001)
ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def ids(event: dict[str, Any]) -> list[str]:
    return [str(item["id"]) for item in event["Records"]]


def failing_on(poison: set[str], *, partial: bool = False):  # type: ignore[no-untyped-def]
    def behave(event: dict[str, Any], request_id: str) -> InvokeResult:
        bad = [item for item in ids(event) if item in poison]
        if not bad:
            return InvokeResult(payload=b"null", request_id=request_id)
        if partial:
            body = dumps({"batchItemFailures": [{"itemIdentifier": item} for item in bad]})
            return InvokeResult(payload=body, request_id=request_id)
        return InvokeResult(
            payload=b'{"errorMessage": "poison", "errorType": "ValueError"}',
            request_id=request_id,
            function_error="Unhandled",
        )

    return behave


class Harness:
    def __init__(
        self,
        policy: RetryPolicy,
        behaviour: Any = None,
        destination: MemoryDestination | None = None,
        now: float = 1_000.0,
        redelivery_seconds: float | None = None,
    ) -> None:
        self.invoker = ScriptedInvoker(behaviour)
        self.destination = destination
        self.settled: list[Record] = []
        self.released: list[Record] = []
        self.stopping = asyncio.Event()

        async def settle(records: Sequence[Record]) -> None:
            self.settled.extend(records)

        async def release(records: Sequence[Record]) -> None:
            self.released.extend(records)

        self.dispatcher = Dispatcher(
            mapping="m",
            function_arn=ARN,
            invoker=self.invoker,
            formatter=MemoryEventFormatter(),
            policy=policy,
            settle=settle,
            release=release,
            destination=destination,
            stopping=self.stopping,
            wall_clock=lambda: now,
            redelivery_seconds=lambda: redelivery_seconds,
        )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=24),
    poison=st.sets(st.integers(min_value=0, max_value=23), max_size=4),
    retries=st.integers(min_value=0, max_value=2),
)
def test_bisect_isolates_poison_and_settles_every_record_once_in_order(
    count: int, poison: set[int], retries: int
) -> None:
    """With bisect on, a batch holding poison records ends: each poison record is sent to
    the destination alone, every other record is delivered, each record is settled
    exactly once, and settling keeps the original order."""
    records = memory_records(count)
    bad = {str(index) for index in poison if index < count}
    destination = MemoryDestination()
    harness = Harness(
        RetryPolicy(
            maximum_retry_attempts=retries, bisect_batch_on_function_error=True, backoff=FAST
        ),
        failing_on(bad),
        destination,
    )
    run(harness.dispatcher.deliver_in_order(records))
    assert harness.settled == records
    discarded = [record.item_id for failure in destination.failures for record in failure.records]
    assert sorted(discarded) == sorted(bad)
    for failure in destination.failures:
        assert len(failure.records) == 1
        assert failure.approximate_invoke_count == retries + 1
        assert failure.condition is FailureCondition.RETRY_ATTEMPTS_EXHAUSTED


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=24),
    poison=st.sets(st.integers(min_value=0, max_value=23), max_size=3),
    retries=st.integers(min_value=0, max_value=3),
)
def test_partial_failures_restart_at_the_lowest_failed_record(
    count: int, poison: set[int], retries: int
) -> None:
    """With ReportBatchItemFailures, records before the lowest failed one succeed, the rest
    are retried; when retries run out, only the remaining records are discarded, with
    a null functionError (esm-reference.md 6.4)."""
    records = memory_records(count)
    bad = {str(index) for index in poison if index < count}
    destination = MemoryDestination()
    policy = RetryPolicy(
        maximum_retry_attempts=retries, report_batch_item_failures=True, backoff=FAST
    )
    harness = Harness(policy, failing_on(bad, partial=True), destination)
    run(harness.dispatcher.deliver_in_order(records))
    assert harness.settled == records
    delivered_ok = {item for event in harness.invoker.events for item in ids(event)} - bad
    assert delivered_ok | bad == {record.item_id for record in records}
    for document in destination.documents:
        assert document["requestContext"]["approximateInvokeCount"] == retries + 1
        assert document["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": None,
        }
        discarded = document["payload"]["Records"]
        assert str(discarded[0]["id"]) in bad
    if bad:
        first_bad = min(int(item) for item in bad)
        assert destination.failures[0].records[0].item_id == str(first_bad)


def test_a_partial_failure_that_made_progress_starts_a_new_batch() -> None:
    """AWS's recorded scenario (kinesis and dynamodb report_batch_item_failures): batches
    of 3 from 6 records, the 6th always reported, 3 retries. Records 4 and 5 succeed, so
    the 6th is a new batch counted from 1: it reaches the function 5 times in all, and
    its failure record says approximateInvokeCount 4 (esm-reference.md 6.4)."""
    destination = MemoryDestination()
    policy = RetryPolicy(maximum_retry_attempts=3, report_batch_item_failures=True, backoff=FAST)
    harness = Harness(policy, failing_on({"5"}, partial=True), destination)
    records = memory_records(6)

    async def main() -> None:
        await harness.dispatcher.deliver_in_order(records[:3])
        await harness.dispatcher.deliver_in_order(records[3:])

    run(main())
    calls = [ids(event) for event in harness.invoker.events]
    assert calls == [["0", "1", "2"], ["3", "4", "5"], ["5"], ["5"], ["5"], ["5"]]
    [document] = destination.documents
    assert document["requestContext"]["approximateInvokeCount"] == 4
    assert document["responseContext"]["functionError"] is None
    assert document["MemoryBatchInfo"]["batchSize"] == 1
    assert harness.settled == records


def test_a_partial_failure_without_progress_counts_as_a_retry() -> None:
    """When the batch's first record is the one reported, nothing advanced: that is a
    retry of the same batch, as a function error is."""
    destination = MemoryDestination()
    policy = RetryPolicy(maximum_retry_attempts=2, report_batch_item_failures=True, backoff=FAST)
    harness = Harness(policy, failing_on({"0"}, partial=True), destination)
    run(harness.dispatcher.deliver_in_order(memory_records(3)))
    assert [ids(event) for event in harness.invoker.events] == [["0", "1", "2"]] * 3
    [document] = destination.documents
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["MemoryBatchInfo"]["batchSize"] == 3


def test_retry_attempts_count_retries_not_the_first_attempt() -> None:
    """maximum_retry_attempts N means N+1 invocations, reported as approximateInvokeCount."""
    for retries in (0, 1, 3):
        destination = MemoryDestination()
        harness = Harness(
            RetryPolicy(maximum_retry_attempts=retries, backoff=FAST),
            failing_on({"0"}),
            destination,
        )
        run(harness.dispatcher.deliver_in_order(memory_records(2)))
        assert len(harness.invoker.events) == retries + 1
        document = destination.documents[0]
        assert document["requestContext"]["approximateInvokeCount"] == retries + 1
        assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert document["responseContext"]["functionError"] == "Unhandled"
        assert document["requestContext"]["functionArn"] == ARN
        assert document["MemoryBatchInfo"]["batchSize"] == 2


def test_old_records_split_off_with_record_age_exceeded() -> None:
    """Records older than the maximum age go to the destination without responseContext;
    the younger records of the same batch are still delivered (esm-reference.md 6.2)."""
    now = 10_000.0
    records = [
        Record("p", index, str(index), {"id": index}, now - (7200 if index == 0 else 5))
        for index in range(6)
    ]
    destination = MemoryDestination()
    harness = Harness(
        RetryPolicy(maximum_record_age_in_seconds=3600, backoff=FAST), None, destination, now=now
    )
    run(harness.dispatcher.deliver_in_order(records))
    assert [ids(event) for event in harness.invoker.events] == [["1", "2", "3", "4", "5"]]
    document = destination.documents[0]
    assert document["requestContext"]["condition"] == "RecordAgeExceeded"
    # Never invoked, yet counted once, as AWS records it (kinesis
    # maximum_record_age_exceeded[expire-before-ingestion] and ..._discard_records).
    assert document["requestContext"]["approximateInvokeCount"] == 1
    assert "responseContext" not in document
    assert document["MemoryBatchInfo"]["batchSize"] == 1
    assert sorted(harness.settled, key=lambda record: record.position) == records


def test_transport_errors_do_not_count_as_attempts() -> None:
    """Throttles and unreachable endpoints are retried without using up retry attempts."""
    calls = {"n": 0}

    def behave(event: dict[str, Any], request_id: str) -> InvokeResult:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise TransportError("endpoint down")
        return InvokeResult(payload=b"{}", request_id=request_id, function_error="Unhandled")

    destination = MemoryDestination()
    harness = Harness(RetryPolicy(maximum_retry_attempts=0, backoff=FAST), behave, destination)
    run(harness.dispatcher.deliver_in_order(memory_records(1)))
    assert calls["n"] == 4
    assert destination.documents[0]["requestContext"]["approximateInvokeCount"] == 1


def test_failed_destination_writes_are_retried_before_settling() -> None:
    """Records are settled only after the failure record was written."""
    destination = MemoryDestination()
    destination.fail_next = 3
    harness = Harness(
        RetryPolicy(maximum_retry_attempts=0, backoff=FAST), failing_on({"0"}), destination
    )
    run(harness.dispatcher.deliver_in_order(memory_records(1)))
    assert len(destination.failures) == 1
    assert [record.item_id for record in harness.settled] == ["0"]


def test_without_destination_exhausted_records_are_dropped_and_settled() -> None:
    """Like Lambda without an on-failure destination, a given-up batch is discarded."""
    harness = Harness(RetryPolicy(maximum_retry_attempts=1, backoff=FAST), failing_on({"0"}), None)
    run(harness.dispatcher.deliver_in_order(memory_records(2)))
    assert len(harness.invoker.events) == 2
    assert len(harness.settled) == 2


def test_stop_leaves_a_failing_batch_unsettled() -> None:
    """With unlimited retries a poison batch blocks until the mapping stops; then it is
    left unsettled (delivered again after a restart), never acknowledged."""

    async def scenario() -> Harness:
        harness = Harness(
            RetryPolicy(backoff=Backoff(initial=0.01, maximum=0.02)),
            failing_on({"0"}),
            MemoryDestination(),
        )
        task = asyncio.create_task(harness.dispatcher.deliver_in_order(memory_records(3)))
        while len(harness.invoker.events) < 3:
            await asyncio.sleep(0.005)
        harness.stopping.set()
        await asyncio.wait_for(task, 2)
        return harness

    harness = run(scenario())
    assert harness.settled == []
    assert harness.destination is not None and harness.destination.failures == []


def test_partial_response_with_bisect_restarts_at_the_failed_item() -> None:
    """With bisect and a partial response, the batch is split at the returned item and only
    the rest is retried (esm-reference.md 6.3). The rest is a new batch (records before
    it succeeded), so even with no retries it gets its own attempt before it is given
    up, as AWS's recorded report_batch_item_failures cases show (6.4)."""
    destination = MemoryDestination()
    policy = RetryPolicy(
        maximum_retry_attempts=0,
        bisect_batch_on_function_error=True,
        report_batch_item_failures=True,
        backoff=FAST,
    )
    harness = Harness(policy, failing_on({"2"}, partial=True), destination)
    run(harness.dispatcher.deliver_in_order(memory_records(5)))
    assert [ids(event) for event in harness.invoker.events] == [
        ["0", "1", "2", "3", "4"],
        ["2", "3", "4"],
    ]
    assert [str(item["id"]) for item in destination.documents[0]["payload"]["Records"]] == [
        "2",
        "3",
        "4",
    ]


def test_queue_mode_success_partial_and_failure() -> None:
    """Queue sources: success settles all; a partial response settles all but the listed
    messages, which are released; a function error releases the whole batch."""
    records = memory_records(4)
    harness = Harness(
        RetryPolicy(report_batch_item_failures=True, backoff=FAST),
        failing_on({"1", "3"}, partial=True),
    )
    run(harness.dispatcher.deliver_once(records))
    assert [record.item_id for record in harness.settled] == ["0", "2"]
    assert [record.item_id for record in harness.released] == ["1", "3"]

    harness = Harness(RetryPolicy(backoff=FAST), failing_on({"1"}))
    run(harness.dispatcher.deliver_once(records))
    assert harness.settled == [] and harness.released == records

    harness = Harness(RetryPolicy(backoff=FAST))
    run(harness.dispatcher.deliver_once(records))
    assert harness.settled == records and harness.released == []


def test_queue_batch_that_cannot_be_invoked_is_released_after_the_redelivery_time() -> None:
    """An SQS batch whose function stays throttled is retried until the visibility
    timeout would hand it out again, then released to the queue, not held forever."""
    calls = {"n": 0}

    def throttled(event: dict[str, Any], request_id: str) -> InvokeResult:
        calls["n"] += 1
        raise TransportError("TooManyRequestsException")

    records = memory_records(3)
    harness = Harness(RetryPolicy(backoff=FAST), throttled, redelivery_seconds=0.05)
    blocked = run(harness.dispatcher.deliver_once(records))
    assert harness.released == records and harness.settled == []
    assert blocked == {record.partition for record in records}
    assert calls["n"] > 1

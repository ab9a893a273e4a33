"""The batch builder: count, window and byte limits (esm-reference.md section 3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.pipeline.batching import SEPARATOR_BYTES, BatchBuilder, BatchPolicy
from bridge.records import Record


def record(index: int, size: int = 10) -> Record:
    return Record("p", index, str(index), {"pad": "x" * size}, 0.0)


def drain(policy: BatchPolicy, records: list[Record]) -> tuple[list[list[Record]], list[Record]]:
    """Feed records the way a lane does; return the batches and the records too big to send."""
    builder = BatchBuilder(policy)
    batches: list[list[Record]] = []
    oversized: list[Record] = []
    pending = list(records)
    while pending:
        accepted = builder.add_many(pending[: builder.room], now=0.0)
        if accepted == 0:
            if builder.records:
                batches.append(builder.take())
            else:
                oversized.append(pending.pop(0))
            continue
        del pending[:accepted]
        if builder.full:
            batches.append(builder.take())
    if builder.records:
        batches.append(builder.take())
    return batches, oversized


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), max_size=200),
    max_records=st.integers(min_value=1, max_value=50),
    max_bytes=st.integers(min_value=20, max_value=3000),
    envelope=st.integers(min_value=0, max_value=30),
)
def test_batches_never_lose_duplicate_reorder_or_exceed(
    sizes: list[int], max_records: int, max_bytes: int, envelope: int
) -> None:
    """Every record comes out exactly once, in order, either in a batch within both limits
    or flagged as too large to send alone."""
    policy = BatchPolicy(max_records=max_records, max_bytes=max_bytes, envelope_bytes=envelope)
    records = [record(index, size) for index, size in enumerate(sizes)]
    batches, oversized = drain(policy, records)
    delivered = [item for batch in batches for item in batch]
    assert sorted(delivered + oversized, key=lambda item: item.position) == records
    assert delivered == [item for item in records if item not in oversized]
    for batch in batches:
        assert 1 <= len(batch) <= max_records
        assert envelope + sum(item.size + SEPARATOR_BYTES for item in batch) <= max_bytes
    for item in oversized:
        assert policy.too_large_alone(item)


def test_record_too_large_alone_is_refused_by_an_empty_builder() -> None:
    """A record larger than the limit on its own is never accepted, so it cannot wedge a lane."""
    policy = BatchPolicy(max_records=10, max_bytes=100)
    builder = BatchBuilder(policy)
    big = record(0, size=500)
    assert policy.too_large_alone(big)
    assert builder.add_many([big], now=0.0) == 0
    assert builder.records == []


def test_byte_limit_flushes_before_it_would_be_exceeded() -> None:
    """Records are added until the next one would take the event past max_bytes."""
    one = record(0, size=10)
    per_record = one.size + SEPARATOR_BYTES
    policy = BatchPolicy(max_records=100, max_bytes=per_record * 3 + 5)
    builder = BatchBuilder(policy)
    assert builder.add_many([record(index, 10) for index in range(5)], now=0.0) == 3
    assert builder.size_bytes == per_record * 3


def test_window_zero_is_due_as_soon_as_records_wait() -> None:
    """With no batching window a batch goes out as soon as it has one record."""
    builder = BatchBuilder(BatchPolicy(max_records=10, window=0))
    assert not builder.due(0.0)
    builder.add_many([record(0)], now=0.0)
    assert builder.due(0.0)


def test_window_from_first_record() -> None:
    """Kafka-style windows start with the first record of the batch."""
    builder = BatchBuilder(BatchPolicy(max_records=10, window=2.0, window_from_first_record=True))
    builder.open_window(0.0)
    builder.add_many([record(0)], now=5.0)
    assert builder.deadline() == 7.0
    assert not builder.due(6.9)
    assert builder.due(7.0)


def test_window_from_previous_invocation() -> None:
    """SQS/Kinesis-style windows start when the previous invocation completes, so records
    arriving late in the window are invoked at its end, and after it at once."""
    builder = BatchBuilder(BatchPolicy(max_records=10, window=2.0))
    builder.open_window(0.0)
    builder.add_many([record(0)], now=1.5)
    assert builder.deadline() == 2.0
    assert not builder.due(1.9)
    assert builder.due(2.0)
    builder.take()
    builder.open_window(10.0)
    builder.add_many([record(1)], now=13.0)
    assert builder.due(13.0)


def test_full_batch_is_due_before_the_window_ends() -> None:
    """Reaching batch_size flushes regardless of the window."""
    builder = BatchBuilder(BatchPolicy(max_records=2, window=300))
    builder.open_window(0.0)
    builder.add_many([record(0), record(1), record(2)], now=0.0)
    assert builder.full and builder.due(0.0)
    assert [item.position for item in builder.take()] == [0, 1]

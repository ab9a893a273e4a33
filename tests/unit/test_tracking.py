"""Checkpoints move only over a contiguous prefix of settled records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.pipeline.tracking import PartitionTracker
from bridge.records import Record


def records_for(partitions: int, count: int) -> list[Record]:
    return [Record(f"p{index % partitions}", index, str(index), {}, 0.0) for index in range(count)]


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    partitions=st.integers(min_value=1, max_value=4),
    count=st.integers(min_value=1, max_value=60),
)
def test_checkpoint_never_passes_an_unsettled_record(
    data: st.DataObject, partitions: int, count: int
) -> None:
    """Whatever order records settle in (in groups), each partition's checkpoint is the
    last record of its longest fully settled prefix, and reaches the last record once
    everything is settled."""
    records = records_for(partitions, count)
    tracker = PartitionTracker()
    tracker.track(records)
    order = data.draw(st.permutations(records))
    settled: set[int] = set()
    checkpoint: dict[str, Record] = {}
    position = 0
    while position < len(order):
        size = data.draw(st.integers(min_value=1, max_value=5))
        group = order[position : position + size]
        position += size
        moved = tracker.settle(group)
        settled.update(item.position for item in group)
        checkpoint.update(moved)
        for name, record in checkpoint.items():
            in_partition = [item for item in records if item.partition == name]
            prefix = in_partition[: in_partition.index(record) + 1]
            assert all(item.position in settled for item in prefix)
            following = in_partition[len(prefix) : len(prefix) + 1]
            assert not following or following[0].position not in settled
    for name in {item.partition for item in records}:
        assert checkpoint[name] is [item for item in records if item.partition == name][-1]
    assert tracker.unsettled == 0


def test_out_of_order_settle_waits_for_the_gap() -> None:
    """A later record settling first does not move the checkpoint until the gap fills."""
    records = records_for(1, 3)
    tracker = PartitionTracker()
    tracker.track(records)
    assert tracker.settle([records[2]]) == {}
    assert tracker.settle([records[0]]) == {"p0": records[0]}
    assert tracker.settle([records[1]]) == {"p0": records[2]}
    assert tracker.unsettled_in("p0") == 0


def test_partitions_are_independent() -> None:
    """An unsettled record in one partition does not hold back another."""
    records = records_for(2, 4)
    tracker = PartitionTracker()
    tracker.track(records)
    assert tracker.settle([records[1], records[3]]) == {"p1": records[3]}
    assert tracker.unsettled == 2

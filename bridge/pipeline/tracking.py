"""Per-partition tracking of the highest contiguous settled record.

Records are tracked in the order they were read. A partition's checkpoint only moves
over a prefix of records that are all settled, so a crash can redeliver records but
never skip one (architecture.md section 3, rule 1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import groupby, islice
from operator import attrgetter, is_

from bridge.records import Record

_PARTITION = attrgetter("partition")


class _Partition:
    __slots__ = ("done_out_of_order", "pending")

    def __init__(self) -> None:
        self.pending: deque[Record] = deque()
        self.done_out_of_order: set[Record] = set()


class PartitionTracker:
    """Knows every read-but-unsettled record and the checkpoint each partition may advance to."""

    def __init__(self) -> None:
        self._partitions: dict[str, _Partition] = {}

    def track(self, records: Iterable[Record]) -> None:
        partitions = self._partitions
        for name, run in groupby(records, _PARTITION):
            state = partitions.get(name)
            if state is None:
                state = partitions[name] = _Partition()
            state.pending.extend(run)

    def settle(self, records: Sequence[Record]) -> dict[str, Record]:
        """Mark records settled; return partition -> new checkpoint record where it moved."""
        if records and self._settle_prefix(records):
            return {records[0].partition: records[-1]}
        moved: dict[str, Record] = {}
        partitions = self._partitions
        current: str | None = None
        state: _Partition | None = None
        for record in records:
            if record.partition != current:
                current = record.partition
                state = partitions.get(current)
            if state is None:
                continue
            pending = state.pending
            if pending and pending[0] is record:
                pending.popleft()
                moved[current] = record
                if state.done_out_of_order:
                    self._advance(current, state, moved)
            else:
                state.done_out_of_order.add(record)
        for name in list(moved):
            state = partitions[name]
            if not state.pending:
                del partitions[name]
        return moved

    def _settle_prefix(self, records: Sequence[Record]) -> bool:
        """The common case: the records are exactly the oldest pending records of one
        partition, in order (a lane delivering a batch of its own partition)."""
        first, count = records[0], len(records)
        state = self._partitions.get(first.partition)
        if state is None or state.done_out_of_order:
            return False
        pending = state.pending
        if len(pending) < count or pending[0] is not first:
            return False
        if not all(map(is_, islice(pending, count), records)):
            return False
        for _ in range(count):
            pending.popleft()
        if not pending:
            del self._partitions[first.partition]
        return True

    @staticmethod
    def _advance(name: str, state: _Partition, moved: dict[str, Record]) -> None:
        pending, done = state.pending, state.done_out_of_order
        while pending and pending[0] in done:
            record = pending.popleft()
            done.discard(record)
            moved[name] = record

    def forget(self, partitions: Iterable[str]) -> None:
        """Drop partitions this reader no longer owns; their records never checkpoint."""
        for name in partitions:
            self._partitions.pop(name, None)

    @property
    def unsettled(self) -> int:
        return sum(len(state.pending) for state in self._partitions.values())

    def unsettled_in(self, partition: str) -> int:
        state = self._partitions.get(partition)
        return len(state.pending) if state else 0

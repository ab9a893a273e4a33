"""Batch assembly by count, batching window and payload bytes: a pure object with no I/O.

Lambda flushes a batch when it holds `BatchSize` records, when the batching window has
passed, or when the payload would reach the 6 MB synchronous invoke limit
(esm-reference.md section 3). The caller's loop feeds records and asks when to flush; the
clock is passed in, so tests drive time by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.records import MAX_SYNC_PAYLOAD_BYTES, Record

# Bytes each record adds to the event besides its own JSON: the separating comma.
SEPARATOR_BYTES = 1


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch is complete.

    `window_from_first_record`: Kafka and MQ start the window when the first record
    arrives; SQS, Kinesis and DynamoDB start the next window as soon as the previous
    invocation completes (esm-reference.md section 3, rule 2).
    """

    max_records: int
    window: float = 0.0
    max_bytes: int = MAX_SYNC_PAYLOAD_BYTES
    envelope_bytes: int = 0
    window_from_first_record: bool = False

    def too_large_alone(self, record: Record) -> bool:
        """A record that cannot be delivered even in a batch of its own."""
        return self.envelope_bytes + record.size + SEPARATOR_BYTES > self.max_bytes


class BatchBuilder:
    """Collects records for one batch. Never holds more than the policy allows."""

    __slots__ = ("_bytes", "_deadline", "policy", "records")

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.records: list[Record] = []
        self._bytes = policy.envelope_bytes
        self._deadline: float | None = None

    def open_window(self, now: float) -> None:
        """Mark the moment the lane became free for its next batch."""
        if not self.policy.window_from_first_record and self._deadline is None:
            self._deadline = now + self.policy.window

    def add_many(self, records: list[Record], now: float) -> int:
        """Add the longest prefix of `records` that fits; return how many were added.

        0 with an empty builder means `records[0]` is too large to deliver at all.
        """
        room = self.policy.max_records - len(self.records)
        limit = self.policy.max_bytes
        total = self._bytes
        if len(records) <= room:
            # Common case first: everything fits, measured without a Python-level loop.
            whole = (
                total + sum(map(len, map(Record.encode, records))) + SEPARATOR_BYTES * len(records)
            )
            if whole <= limit:
                self._accept(records, now, whole)
                return len(records)
        accepted = 0
        for record in records:
            if accepted == room:
                break
            size = len(record.encode()) + SEPARATOR_BYTES
            if total + size > limit:
                break
            total += size
            accepted += 1
        if accepted:
            self._accept(records[:accepted], now, total)
        return accepted

    def _accept(self, records: list[Record], now: float, total: int) -> None:
        if not self.records and self._deadline is None:
            self._deadline = now + self.policy.window
        self.records.extend(records)
        self._bytes = total

    @property
    def room(self) -> int:
        """How many more records the batch may take."""
        return self.policy.max_records - len(self.records)

    @property
    def full(self) -> bool:
        return len(self.records) >= self.policy.max_records

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def due(self, now: float) -> bool:
        """True when the records held should be invoked now."""
        if not self.records:
            return False
        if self.full or self.policy.window <= 0:
            return True
        return self._deadline is not None and now >= self._deadline

    def deadline(self) -> float | None:
        """When the window closes, if it is open and records wait."""
        return self._deadline if self.records else None

    def take(self) -> list[Record]:
        """Hand over the batch and start empty, with no window open."""
        records = self.records
        self.records = []
        self._bytes = self.policy.envelope_bytes
        self._deadline = None
        return records

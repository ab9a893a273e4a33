"""Shard lineage and saved positions, shared by the Kinesis and DynamoDB Streams sources
(esm-reference.md 6.1 and 17). Pure bookkeeping: `shards` does the I/O.

Saved values per shard:

- `<sequence number>`: resume after it (AFTER_SEQUENCE_NUMBER);
- `SHARD_END`: finished: read to its end and every record settled;
- `AT_TIMESTAMP:<epoch>`: a new LATEST mapping started the shard at its tip at that
  time and nothing of it has settled yet: a restart reads from that time on, so what
  came while the mapping was down is not skipped (`TRIM_HORIZON` and `LATEST` are
  accepted too).

The key `#stream` holds the identity of the stream the positions belong to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from bridge.records import Record

SHARD_END = "SHARD_END"
STREAM_KEY = "#stream"
AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"


class Phase(enum.Enum):
    WAITING = "waiting for its parent shards"
    READING = "reading"
    DRAINED = "read to its end, records unsettled"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a shard iterator starts."""

    kind: str
    sequence: str | None = None
    timestamp: float | None = None

    def stored(self) -> str:
        if self.kind == AFTER_SEQUENCE_NUMBER:
            assert self.sequence is not None
            return self.sequence
        if self.kind == AT_TIMESTAMP:
            return f"{AT_TIMESTAMP}:{self.timestamp!r}"
        return self.kind


def parse_position(value: str) -> Position | None:
    """A saved value as a Position; None if it is not one."""
    if value.isdigit():
        return Position(AFTER_SEQUENCE_NUMBER, sequence=value)
    if value in (TRIM_HORIZON, LATEST):
        return Position(value)
    kind, _, moment = value.partition(":")
    if kind == AT_TIMESTAMP:
        try:
            return Position(AT_TIMESTAMP, timestamp=float(moment))
        except ValueError:
            return None
    return None


class ShardInfo(NamedTuple):
    """A shard as the service lists it; `ending` is set once the shard is closed."""

    shard_id: str
    parents: tuple[str, ...]
    ending: str | None


class Fetched(NamedTuple):
    records: list[Record]
    next_iterator: str | None
    behind: bool


class ShardState:
    __slots__ = (
        "ending",
        "failures",
        "iterator",
        "last_read",
        "next_poll",
        "parents",
        "phase",
        "settled",
        "shard_id",
        "start",
    )

    def __init__(self, info: ShardInfo, phase: Phase, start: Position) -> None:
        self.shard_id = info.shard_id
        self.parents = info.parents
        self.ending = info.ending
        self.phase = phase
        self.start = start
        self.iterator: str | None = None
        # Sequence numbers of the last record read and of the last one settled.
        self.last_read: str | None = start.sequence
        self.settled: str | None = start.sequence
        self.next_poll = 0.0
        self.failures = 0

    def resume_position(self) -> Position:
        if self.last_read is not None:
            return Position(AFTER_SEQUENCE_NUMBER, sequence=self.last_read)
        return self.start

    def past_end(self) -> bool:
        """A closed shard whose last record has been read, for emulators that keep
        handing out iterators at the end of a closed shard (AWS returns none)."""
        return self.ending is not None and int(self.last_read or 0) >= int(self.ending)


def arrived_since(records: list[Record], start: float) -> list[Record]:
    """Drop records that arrived before `start`: botocore sends AT_TIMESTAMP in whole
    seconds, so the service may answer from up to a second earlier."""
    for index, record in enumerate(records):
        if record.arrival >= start:
            return records[index:] if index else records
    return []


class ShardLineage:
    """Every shard of the stream, its phase and where it starts.

    A shard without a saved position waits until each parent it came from (a split or
    a merge) is finished, then starts from its beginning: its records are all younger
    than its parents'. With AT_TIMESTAMP it starts at the timestamp instead, which is
    the same for shards created after it and the right start for older ones.
    """

    def __init__(self, starting_position: str, starting_timestamp: float | None) -> None:
        self.starting_position = starting_position
        self.starting_timestamp = starting_timestamp
        self.shards: dict[str, ShardState] = {}
        self._changed = False

    def initial_position(self) -> Position:
        if self.starting_position == AT_TIMESTAMP:
            return Position(AT_TIMESTAMP, timestamp=self.starting_timestamp)
        return Position(TRIM_HORIZON)

    def add(self, info: ShardInfo, saved: str | None, fresh: bool, tip: Position) -> str | None:
        """Track a listed shard; return the value to save for it, if any. `fresh`: the
        mapping has no saved positions at all; `tip`: what to save for a shard a new
        LATEST mapping starts at its tip. Raise ValueError for an unreadable value."""
        if saved == SHARD_END:
            self.shards[info.shard_id] = ShardState(info, Phase.FINISHED, Position(SHARD_END))
            return None
        if saved is not None:
            position = parse_position(saved)
            if position is None:
                raise ValueError(
                    f"shard {info.shard_id} has an unreadable saved position {saved!r}"
                )
            self.shards[info.shard_id] = ShardState(info, Phase.READING, position)
            return None
        if fresh and self.starting_position == LATEST:
            # Closed shards hold only history; open ones start at their tip.
            if info.ending is not None:
                self.shards[info.shard_id] = ShardState(info, Phase.FINISHED, Position(SHARD_END))
                return SHARD_END
            self.shards[info.shard_id] = ShardState(info, Phase.READING, Position(LATEST))
            return tip.stored()
        self.shards[info.shard_id] = ShardState(info, Phase.WAITING, self.initial_position())
        self._changed = True
        return None

    def finish(self, state: ShardState) -> None:
        state.phase = Phase.FINISHED
        state.iterator = None
        self._changed = True

    def start_ready(self) -> list[ShardState]:
        """Start the waiting shards whose parents are all finished (or long gone)."""
        started: list[ShardState] = []
        while self._changed:
            self._changed = False
            for state in self.shards.values():
                if state.phase is not Phase.WAITING:
                    continue
                parents = [self.shards.get(parent) for parent in state.parents]
                if all(parent is None or parent.phase is Phase.FINISHED for parent in parents):
                    state.phase = Phase.READING
                    started.append(state)
        return started


def check_identity(
    identity: str,
    stored: dict[str, str],
    updates: dict[str, str | None],
    log: Any,
    stream: Any,
) -> bool:
    """Drop positions saved for another stream (deleted and recreated, or a new stream
    label), with a prominent warning; True if the mapping starts afresh."""
    previous = stored.pop(STREAM_KEY, None)
    if previous == identity:
        return False
    if previous is not None:
        log.warning(
            "stream.changed",
            previous=previous,
            current=identity,
            discarded_positions=len(stored),
            message=(
                f"STREAM CHANGED: {stream.where} is not the stream this mapping read before "
                "(deleted and recreated, or a new stream label); its saved positions are "
                f"discarded and reading starts at {stream._starting_position}"
            ),
        )
        updates.update(dict.fromkeys(stored))
        stored.clear()
    updates[STREAM_KEY] = identity
    return not stored

"""Shard lineage and saved positions (connectors.shardstreams.lineage), shared by the Kinesis
and DynamoDB Streams sources: which shard starts when, and from where, without a
service."""

from __future__ import annotations

import pytest

from bridge.records import Record
from connectors.shardstreams.lineage import (
    AT_TIMESTAMP,
    LATEST,
    SHARD_END,
    TRIM_HORIZON,
    Phase,
    Position,
    ShardInfo,
    ShardLineage,
    arrived_since,
    parse_position,
)

TIP = Position(AT_TIMESTAMP, timestamp=1_790_000_000.5)
OPEN = None


def shard(name: str, *parents: str, ending: str | None = OPEN) -> ShardInfo:
    return ShardInfo(name, parents, ending)


def phases(lineage: ShardLineage) -> dict[str, Phase]:
    return {name: state.phase for name, state in lineage.shards.items()}


def test_saved_values_round_trip() -> None:
    """Every value a source saves parses back to the same position; anything else is
    not a position."""
    for position in (
        Position("AFTER_SEQUENCE_NUMBER", sequence="4959033827149025660855969253836"),
        Position(TRIM_HORIZON),
        Position(LATEST),
        TIP,
    ):
        assert parse_position(position.stored()) == position
    assert parse_position("AT_TIMESTAMP:soon") is None
    assert parse_position("12ab") is None


def test_children_of_a_split_wait_for_the_parent_to_finish() -> None:
    """Both children of a split wait while the parent is read or drained, and start from
    their beginning once it is finished (esm-reference.md 6.1: order per shard lineage)."""
    lineage = ShardLineage(TRIM_HORIZON, None)
    for info in (shard("p", ending="9"), shard("a", "p"), shard("b", "p")):
        assert lineage.add(info, None, True, TIP) is None
    assert [state.shard_id for state in lineage.start_ready()] == ["p"]
    assert phases(lineage) == {"p": Phase.READING, "a": Phase.WAITING, "b": Phase.WAITING}
    lineage.shards["p"].phase = Phase.DRAINED
    assert lineage.start_ready() == []
    lineage.finish(lineage.shards["p"])
    started = lineage.start_ready()
    assert [state.shard_id for state in started] == ["a", "b"]
    assert {state.start for state in started} == {Position(TRIM_HORIZON)}


def test_merged_child_waits_for_both_parents_and_grandchildren_for_it() -> None:
    """A merge's child starts only after both parents finished; its own child after it."""
    lineage = ShardLineage(TRIM_HORIZON, None)
    for info in (
        shard("left", ending="5"),
        shard("right", ending="7"),
        shard("merged", "left", "right", ending="9"),
        shard("grandchild", "merged"),
    ):
        lineage.add(info, None, True, TIP)
    lineage.start_ready()
    lineage.finish(lineage.shards["left"])
    assert lineage.start_ready() == []
    lineage.finish(lineage.shards["right"])
    assert [state.shard_id for state in lineage.start_ready()] == ["merged"]
    lineage.finish(lineage.shards["merged"])
    assert [state.shard_id for state in lineage.start_ready()] == ["grandchild"]


def test_saved_positions_decide_over_lineage() -> None:
    """Finished shards stay finished and are never started; a shard with a saved sequence
    number resumes after it; a child whose parent is gone from the listing starts."""
    lineage = ShardLineage(TRIM_HORIZON, None)
    lineage.add(shard("old", ending="3"), SHARD_END, False, TIP)
    lineage.add(shard("current", "old"), "42", False, TIP)
    lineage.add(shard("orphan", "expired-long-ago"), None, False, TIP)
    lineage.start_ready()
    assert phases(lineage) == {
        "old": Phase.FINISHED,
        "current": Phase.READING,
        "orphan": Phase.READING,
    }
    current = lineage.shards["current"]
    assert current.resume_position() == Position("AFTER_SEQUENCE_NUMBER", sequence="42")
    assert current.last_read == current.settled == "42"
    with pytest.raises(ValueError, match="unreadable saved position"):
        lineage.add(shard("broken"), "garbage", False, TIP)


def test_new_latest_mapping_skips_closed_shards_and_saves_its_start() -> None:
    """A new LATEST mapping treats closed shards as history (finished) and starts open
    ones at their tip, saving when it did so a restart does not skip what came since;
    once the mapping has positions, new shards start from their beginning."""
    lineage = ShardLineage(LATEST, None)
    assert lineage.add(shard("closed", ending="8"), None, True, TIP) == SHARD_END
    assert lineage.add(shard("open", "closed"), None, True, TIP) == TIP.stored()
    assert lineage.shards["open"].start == Position(LATEST)
    lineage.start_ready()
    assert phases(lineage) == {"closed": Phase.FINISHED, "open": Phase.READING}
    assert lineage.add(shard("later", "open"), None, False, TIP) is None
    lineage.finish(lineage.shards["open"])
    [later] = lineage.start_ready()
    assert later.start == Position(TRIM_HORIZON)


def test_at_timestamp_starts_every_unsaved_shard_at_the_timestamp() -> None:
    """With AT_TIMESTAMP, roots and children alike start at the timestamp, which is their
    beginning for shards created after it."""
    lineage = ShardLineage(AT_TIMESTAMP, 1_700_000_000.0)
    lineage.add(shard("p", ending="4"), None, True, TIP)
    lineage.add(shard("c", "p"), None, True, TIP)
    [parent] = lineage.start_ready()
    assert parent.start == Position(AT_TIMESTAMP, timestamp=1_700_000_000.0)
    assert lineage.shards["c"].start == parent.start


def test_records_before_the_start_time_are_left_out() -> None:
    """botocore sends AT_TIMESTAMP in whole seconds: records that arrived before the
    exact start time are dropped, later ones kept in order."""
    records = [Record("s", n, str(n), {"n": n}, 100.0 + n / 10) for n in range(10)]
    assert [record.position for record in arrived_since(records, 100.45)] == [5, 6, 7, 8, 9]
    assert arrived_since(records, 99.0) is records
    assert arrived_since(records, 200.0) == []

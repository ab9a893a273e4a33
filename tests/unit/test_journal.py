"""The invocation journal: what the previous run left open is found again (an entry torn
by the process's end ignored), finished invocations are forgotten, it grows with the
invocations under way, and a clean stop removes it."""

from __future__ import annotations

from pathlib import Path

from bridge.pipeline import journal as journal_module
from bridge.pipeline.journal import InvocationJournal, MappingJournal, charged
from bridge.records import Record


def record(partition: str, position: object) -> Record:
    return Record(partition, position, str(position), {"p": partition}, 0.0, partition)


def position(item: Record) -> object:
    return item.position


def test_open_invocations_are_recovered_and_ended_ones_are_not(tmp_path: Path) -> None:
    """Two started, one ended, and the process dies mid-line: one is recovered, with the
    span of each partition it covered."""
    first = InvocationJournal(tmp_path)
    first.open()
    view = MappingJournal(first, "orders", [])
    view.started("r1", 1, [record("s-0", (5, 0)), record("s-0", (7, 1))], position)
    view.started("r2", 2, [record("s-1", 3)], position)
    view.ended("r2")
    view.started("r3", 1, [record("s-2", 3)], position)
    slot = journal_module.SLOT_BYTES * 1  # r3 took the slot r2 gave back
    with first.path.open("r+b") as torn:
        torn.seek(slot + 20)
        torn.write(b"\0")
    [crashed] = InvocationJournal(tmp_path).recover()
    assert (crashed.mapping, crashed.request_id, crashed.attempt) == ("orders", "r1", 1)
    assert list(crashed.spans) == ["s-0"]
    assert crashed.covers(record("s-0", (5, 0)), (5, 0))
    assert crashed.covers(record("s-0", (6, 0)), (6, 0))
    assert not crashed.covers(record("s-0", (8, 0)), (8, 0))
    assert not crashed.covers(record("s-1", (6, 0)), (6, 0))
    assert crashed.result().function_error == "Unhandled"
    assert b"Runtime.ExitError" in crashed.result().payload


def test_positions_beyond_64_bits_keep_their_order(tmp_path: Path) -> None:
    """DynamoDB's sequence numbers are longer than JSON numbers hold; they are written so
    that a later one still compares as later."""
    journal = InvocationJournal(tmp_path)
    journal.open()
    big = 10**25
    MappingJournal(journal, "m", []).started(
        "r", 1, [record("p", big), record("p", big + 5)], position
    )
    [crashed] = InvocationJournal(tmp_path).recover()
    assert crashed.covers(record("p", big + 3), big + 3)
    assert not crashed.covers(record("p", big + 6), big + 6)
    assert not crashed.covers(record("p", 9), 9)


def test_a_claim_covers_the_prefix_of_the_crashed_records_once(tmp_path: Path) -> None:
    """Records delivered again are matched by partition and position; the crashed entry
    covers the prefix it held and is used up."""
    journal = InvocationJournal(tmp_path)
    journal.open()
    view = MappingJournal(journal, "orders", [])
    view.started("r1", 2, [record("p", 10), record("p", 11)], position)
    crashed = InvocationJournal(tmp_path).recover()
    again = MappingJournal(journal, "orders", crashed)
    batch = [record("p", 10), record("p", 11), record("p", 12)]
    claimed = again.claim(batch, position)
    assert claimed is not None and claimed[1] == 2 and claimed[0].attempt == 2
    assert again.claim(batch, position) is None


def test_the_journal_grows_with_the_invocations_under_way_and_goes_on_a_clean_stop(
    tmp_path: Path,
) -> None:
    """More invocations at once than it has slots: it grows, and every one is found; once
    all have ended, closing removes the file."""
    journal = InvocationJournal(tmp_path)
    journal.open()
    view = MappingJournal(journal, "m", [])
    many = journal_module.INITIAL_SLOTS * 3
    for index in range(many):
        view.started(f"r{index}", 1, [record("p", index)], position)
    assert len(InvocationJournal(tmp_path).recover()) == many
    for index in range(many):
        view.ended(f"r{index}")
    assert InvocationJournal(tmp_path).recover() == []
    journal.close()
    assert not journal.path.exists()


def test_only_the_invocation_that_ended_the_process_is_charged(tmp_path: Path) -> None:
    """A handler's os._exit marks its own invocation; after the restart it alone counts
    a failed attempt and the others in flight beside it were bystanders. Without a mark
    (kill -9, a crash in native code) every invocation in flight counts."""
    journal = InvocationJournal(tmp_path)
    journal.open()
    view = MappingJournal(journal, "m", [])
    view.started("guilty", 1, [record("a", 1)], position)
    view.started("bystander", 1, [record("b", 1)], position)
    unmarked = InvocationJournal(tmp_path).recover()
    assert charged(unmarked) == (unmarked, [])
    journal.note_exit("guilty")
    counted, spared = charged(InvocationJournal(tmp_path).recover())
    assert [entry.request_id for entry in counted] == ["guilty"]
    assert [entry.request_id for entry in spared] == ["bystander"]
    journal.close()

"""The files source's ledger: a file's checkpointed state never moves past an event of
that file that is not settled, and states saved without an event wait for them."""

from __future__ import annotations

import os
from typing import Any

from bridge.codec import dumps, loads
from bridge.records import Record
from connectors.files.events import FileChange, FileEventBuilder
from connectors.files.keys import stored_key
from connectors.files.ledger import Ledger, decode_states, encode_state

MD5 = "9e107d9d372bb6826bd81d3542a419d6"
OTHER_MD5 = "0cc175b9c0f1b6a831c399e269772661"


def builder() -> FileEventBuilder:
    return FileEventBuilder(
        root="/srv/inbox", bucket="inbox", region="eu-west-1", configuration_id="m"
    )


def created(key: str, mtime_ns: int, etag: str = MD5) -> FileChange:
    return FileChange(key, size=5, mtime_ns=mtime_ns, etag=etag, changed_ns=mtime_ns)


def state(value: str | None) -> dict[str, Any]:
    assert value is not None
    fields: dict[str, Any] = loads(value)
    return fields


def emit(ledger: Ledger, events: FileEventBuilder, change: FileChange) -> Record:
    record = events.record(change)
    ledger.emitted(record)
    return record


def test_silent_state_without_unsettled_records_is_saved_at_once() -> None:
    """A touch of a file with nothing in flight is saved at once, keeping the sequencer
    last delivered for it."""
    ledger, events = Ledger(), builder()
    first = emit(ledger, events, created("a.txt", 1))
    [(key, value)] = ledger.committed([first]).items()
    assert key == "a.txt"
    assert state(value)["sequencer"] == first.position
    updates = ledger.silent(created("a.txt", 2))
    assert state(updates["a.txt"])["mtime_ns"] == 2
    assert state(updates["a.txt"])["sequencer"] == first.position


def test_silent_state_is_held_until_the_last_record_settles() -> None:
    """A touch while the file's create event is in flight saves nothing; when the event
    settles, the touched (newer) state is saved, with the event's sequencer."""
    ledger, events = Ledger(), builder()
    record = emit(ledger, events, created("a.txt", 1))
    assert ledger.silent(created("a.txt", 2)) == {}
    updates = ledger.committed([record])
    assert state(updates["a.txt"])["mtime_ns"] == 2
    assert state(updates["a.txt"])["sequencer"] == record.position


def test_held_state_waits_for_every_unsettled_record_of_the_file() -> None:
    """With two events of the file in flight, settling the first saves the first's state;
    the held state is saved only with the second."""
    ledger, events = Ledger(), builder()
    first = emit(ledger, events, created("a.txt", 1))
    second = emit(ledger, events, created("a.txt", 2, OTHER_MD5))
    ledger.silent(created("a.txt", 3, OTHER_MD5))
    assert state(ledger.committed([first])["a.txt"])["mtime_ns"] == 1
    assert state(ledger.committed([second])["a.txt"])["mtime_ns"] == 3


def test_a_later_event_supersedes_a_held_state() -> None:
    """A real change emitted after a held touch carries the newer state: the touch is
    dropped and the change's own state is saved when it settles."""
    ledger, events = Ledger(), builder()
    first = emit(ledger, events, created("a.txt", 1))
    ledger.silent(created("a.txt", 2))
    second = emit(ledger, events, created("a.txt", 3, OTHER_MD5))
    assert state(ledger.committed([first])["a.txt"])["mtime_ns"] == 1
    saved = state(ledger.committed([second])["a.txt"])
    assert (saved["mtime_ns"], saved["etag"]) == (3, OTHER_MD5)


def test_a_commit_settles_every_earlier_record_of_its_partition() -> None:
    """Committing a file's second event settles its first too: the second's state is
    saved and nothing of the file is left to hold a touch back."""
    ledger, events = Ledger(), builder()
    emit(ledger, events, created("a.txt", 1))
    second = emit(ledger, events, created("a.txt", 2, OTHER_MD5))
    assert state(ledger.committed([second])["a.txt"])["mtime_ns"] == 2
    assert set(ledger.silent(created("a.txt", 3, OTHER_MD5))) == {"a.txt"}


def test_silent_removal_is_held_and_deletes_the_checkpoint_when_settled() -> None:
    """A removal that is not emitted (`events:` without removals) while the create is in
    flight is held; settling the create then deletes the file's checkpoint."""
    ledger, events = Ledger(), builder()
    record = emit(ledger, events, created("a.txt", 1))
    assert ledger.silent(FileChange("a.txt", changed_ns=5)) == {}
    assert ledger.committed([record]) == {"a.txt": None}


def test_files_are_independent() -> None:
    """One file's event in flight does not hold back another file's touch."""
    ledger, events = Ledger(), builder()
    emit(ledger, events, created("a.txt", 1))
    assert set(ledger.silent(created("b.txt", 2))) == {"b.txt"}


def test_records_the_ledger_never_emitted_save_nothing() -> None:
    """Settling records of another source (an earlier session) saves nothing here."""
    ledger = Ledger()
    stranger = builder().record(created("a.txt", 1))
    assert ledger.committed([stranger]) == {}


def test_states_round_trip_including_names_that_are_not_utf8() -> None:
    """Encoded states decode to the same change and sequencer, also for a name that is
    not UTF-8; a value that cannot be read is listed rather than raised."""
    bad = os.fsdecode(b"bad-\xff.txt")
    changes = [created("a b.txt", 1), created(bad, 2)]
    stored = {stored_key(change.key): encode_state(change, 7) for change in changes}
    stored["broken.txt"] = "{not json"
    stored["odd.txt"] = dumps({"size": 1, "unexpected": True}).decode()
    states, unreadable = decode_states({k: v for k, v in stored.items() if v is not None})
    assert states == {change.key: (change, 7) for change in changes}
    assert sorted(unreadable) == ["broken.txt", "odd.txt"]


def test_checkpoints_of_earlier_versions_still_load() -> None:
    """A value written before names were encoded (with `key` and no escapes) loads."""
    value = dumps(
        {"key": "a.txt", "size": 5, "mtime_ns": 1, "etag": MD5, "changed_ns": 1, "sequencer": 9}
    ).decode()
    states, unreadable = decode_states({"a.txt": value})
    assert states == {"a.txt": (created("a.txt", 1), 9)}
    assert unreadable == []

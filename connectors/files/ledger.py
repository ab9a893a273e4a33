"""Which state of each file may be checkpointed, and how it is written.

A file's checkpointed state never moves past an event of that file that is not settled
(architecture.md section 3, rule 1): after a crash the folder is compared with the
checkpoints, and a file whose state is checkpointed is not reported again. So, per file,
the ledger keeps the records emitted and not yet settled, and a record's state is saved
when the mapping commits its partition up to it (bridge.protocols.Source.commit).

Some states are saved without an event: a touch that left the content as it was, or a
change of a kind `events:` does not emit. Such a silent state is saved at once when the
file has nothing unsettled; otherwise it is held, and saved instead of the record's own
state when the file's last unsettled record settles (it is newer). A record emitted for
the file meanwhile supersedes a held state, since it carries a newer one itself.

The stored value is the file's state and a sequencer: the highest one delivered for the
file, so a restarted source issues sequencers above it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.codec import dumps, loads
from bridge.records import Record
from connectors.files.events import FileChange
from connectors.files.keys import key_of_stored, stored_key

Updates = dict[str, str | None]


@dataclass
class _File:
    unsettled: int = 0
    held: FileChange | None = None


def encode_state(change: FileChange, sequencer: int | None) -> str | None:
    """The checkpoint value of a file: its state, or None (deleted) once it is removed."""
    if change.removed:
        return None
    # Spelled out rather than dataclasses.asdict, which deep-copies: this runs on the
    # event loop for every settled file.
    state = {
        "key": stored_key(change.key),
        "size": change.size,
        "mtime_ns": change.mtime_ns,
        "etag": change.etag,
        "changed_ns": change.changed_ns,
        "sequencer": sequencer,
    }
    return dumps(state).decode()


def decode_states(stored: Mapping[str, str]) -> tuple[dict[str, tuple[FileChange, int]], list[str]]:
    """The checkpointed states by key, with their sequencers (0 if unknown); and the stored
    keys whose values cannot be read (those files are treated as never delivered)."""
    states: dict[str, tuple[FileChange, int]] = {}
    unreadable: list[str] = []
    for name, value in stored.items():
        try:
            fields = loads(value)
            sequencer = int(fields.pop("sequencer", None) or 0)
            fields["key"] = key_of_stored(name)
            states[fields["key"]] = (FileChange(**fields), sequencer)
        except (ValueError, TypeError, AttributeError):
            unreadable.append(name)
    return states, unreadable


class Ledger:
    """Per partition: the records emitted and not settled, in the order they were read;
    per file: how many of them it has, a held silent state, and the highest sequencer
    settled."""

    def __init__(self) -> None:
        self._emitted: dict[str, deque[Record]] = {}
        self._files: dict[str, _File] = {}
        self._sequencers: dict[str, int] = {}

    def know(self, key: str, sequencer: int) -> None:
        """A file checkpointed by an earlier run, delivered up to `sequencer`."""
        if sequencer:
            self._sequencers[key] = sequencer

    def emitted(self, record: Record) -> None:
        key = record.handle.key
        entry = self._files.get(key)
        if entry is None:
            entry = self._files[key] = _File()
        entry.unsettled += 1
        entry.held = None
        queue = self._emitted.get(record.partition)
        if queue is None:
            queue = self._emitted[record.partition] = deque()
        queue.append(record)

    def silent(self, change: FileChange) -> Updates:
        """A state saved without an event: what to save now (nothing if it is held)."""
        entry = self._files.get(change.key)
        if entry is not None:
            entry.held = change
            return {}
        return {stored_key(change.key): self._value(change, None)}

    def committed(self, positions: Iterable[Record]) -> Updates:
        """Each record given, and every record emitted before it in its partition, is
        settled: return the states that may be saved now."""
        moved: dict[str, Record] = {}
        for newest in positions:
            queue = self._emitted.get(newest.partition)
            if queue is None or not any(record is newest for record in queue):
                continue  # not emitted by this ledger (an earlier session's record)
            while True:
                record = queue.popleft()
                moved[record.handle.key] = record
                self._files[record.handle.key].unsettled -= 1
                if record is newest:
                    break
            if not queue:
                del self._emitted[newest.partition]
        updates: Updates = {}
        for key, record in moved.items():
            entry = self._files[key]
            state = record.handle
            if not entry.unsettled:
                del self._files[key]
                if entry.held is not None:
                    state = entry.held
            updates[stored_key(key)] = self._value(state, record.position)
        return updates

    def _value(self, change: FileChange, delivered: int | None) -> str | None:
        if change.removed:
            self._sequencers.pop(change.key, None)
            return None
        sequencer = max(delivered or 0, self._sequencers.get(change.key, 0))
        if sequencer:
            self._sequencers[change.key] = sequencer
        return encode_state(change, sequencer or None)

"""The redrive ledger: which failure record was redriven, and which was in flight.

JSON Lines, appended and fsynced, one line per step: `in-flight` is written before a
record is sent again, `redriven` or `failed` after. A record whose last line is
`redriven` is never sent again; one left `in-flight` by a crash is sent again by the next
redrive (at least once: only the record in flight can reach the function twice). The
file is locked while a redrive runs, so two redrives of one mapping cannot overlap.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.failures import iso_millis
from bridge.folders import make_private_folder

IN_FLIGHT = "in-flight"
REDRIVEN = "redriven"
FAILED = "failed"


class LedgerBusy(Exception):
    """Another redrive holds the ledger."""


@dataclass
class Entry:
    state: str
    attempts: int = 0
    at: str = ""
    error: str | None = None


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def read(self) -> dict[str, Entry]:
        """The last state of each failure id (a torn last line is ignored)."""
        entries: dict[str, Entry] = {}
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return entries
        for line in text.splitlines():
            try:
                step: dict[str, Any] = loads(line)
                failure_id = str(step["id"])
                state = str(step["state"])
            except (JSONDecodeError, KeyError, TypeError):
                continue
            entry = entries.setdefault(failure_id, Entry(state))
            entry.state = state
            entry.at = str(step.get("at", ""))
            entry.error = step.get("error")
            if state == IN_FLIGHT:
                entry.attempts += 1
        return entries

    def lock(self) -> None:
        """Open for appending and take the lock; LedgerBusy if another redrive has it."""
        created = not self.path.exists()
        make_private_folder(self.path.parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise LedgerBusy(f"another redrive is running (it holds {self.path})") from None
        self._file = os.fdopen(descriptor, "ab", buffering=0)
        if created:
            _fsync_folder(self.path.parent)

    def write(self, failure_id: str, state: str, error: str | None = None) -> None:
        """Append one step, durably: it is on disk when this returns."""
        assert self._file is not None, "lock() first"
        step: dict[str, Any] = {"id": failure_id, "state": state, "at": iso_millis(time.time())}
        if error is not None:
            step["error"] = error
        self._file.write(dumps(step) + b"\n")
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

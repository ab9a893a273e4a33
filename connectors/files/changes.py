"""Deciding what changed in the watched folder since the state last reported.

`known` holds, per key, the state last reported (or delivered before a restart). A scan
or a watcher notification marks keys to examine; examining a key compares it with
`known`, waits until the file is stable, hashes it, and yields the change to report.
Scanning and examining run on a worker thread; the event loop does not touch this
object meanwhile.

A file or sub-folder that cannot be read (permissions, a name too long, a symlink loop)
is reported once with the reason and looked at again later, with a growing delay; it
is never taken for removed, and the rest of the folder goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

from connectors.files.events import FileChange
from connectors.files.keys import shown_key
from connectors.files.scan import FileSig, FolderVanished, FolderView, Scanned

# Looking again at what could not be read: after 1 s, doubling up to this.
RETRY_MAX_SECONDS = 60.0


@dataclass
class Examined:
    """Changes to report, and content-identical files whose new mtime is only recorded."""

    changes: list[FileChange] = field(default_factory=list)
    refreshed: list[FileChange] = field(default_factory=list)


class ChangeDetector:
    def __init__(self, view: FolderView, stable_after: float) -> None:
        self.view = view
        self.stable_after = stable_after
        self.known: dict[str, FileChange] = {}
        self.recheck_at: dict[str, float] = {}
        # Sub-folders that could not be read, to scan again at these times.
        self.folder_recheck_at: dict[str, float] = {}
        self._first_seen: dict[str, tuple[FileSig, float]] = {}
        # Files and sub-folders that could not be read, and how many times in a row.
        self._unreadable: dict[str, int] = {}
        self._unreadable_folders: dict[str, int] = {}
        self._log = structlog.get_logger("connectors.files")

    def reconcile(self, below: str) -> tuple[list[FileChange], set[str]]:
        """Scan the folder (or its sub-folder `below`): the removals, and the keys that
        need a closer look."""
        scanned = self.view.scan(below or None)
        self._note_folders(below, scanned.unreadable_folders)
        return self.compare(f"{below}/" if below else "", scanned)

    def compare(self, prefix: str, scanned: Scanned) -> tuple[list[FileChange], set[str]]:
        """After a scan of `prefix`: the removals, and the keys that need a closer look.
        Files under a sub-folder that could not be read are not taken for removed."""
        present = scanned.files
        hidden = tuple(f"{folder}/" for folder in scanned.unreadable_folders)
        now_ns = time.time_ns()
        removed = [
            FileChange(key, changed_ns=now_ns)
            for key in self.known
            if key.startswith(prefix)
            and key not in present
            and not (hidden and key.startswith(hidden))
        ]
        for change in removed:
            del self.known[change.key]
        suspects = set()
        for key, sig in present.items():
            known = self.known.get(key)
            if (
                known is None
                or sig is None
                or not sig.same_content_stamp(known.size, known.mtime_ns)
            ):
                suspects.add(key)
        return removed, suspects

    def _note_folders(self, below: str, unreadable: dict[str, str]) -> None:
        inside = f"{below}/" if below else ""
        for folder in [f for f in self._unreadable_folders if f == below or f.startswith(inside)]:
            if folder not in unreadable:
                del self._unreadable_folders[folder]
                self.folder_recheck_at.pop(folder, None)
        for folder, reason in unreadable.items():
            failures = self._unreadable_folders.get(folder, 0) + 1
            self._unreadable_folders[folder] = failures
            if failures == 1:
                self._log.warning("files.folder_unreadable", folder=shown_key(folder), error=reason)
            self.folder_recheck_at[folder] = time.monotonic() + _retry_delay(failures)

    def examine(self, keys: list[str]) -> Examined:
        found = Examined()
        for key in keys:
            self.recheck_at.pop(key, None)
            try:
                self._examine_one(key, found)
            except FolderVanished:
                self.recheck_at[key] = time.monotonic()
                raise
            except OSError as exc:
                failures = self._unreadable.get(key, 0) + 1
                self._unreadable[key] = failures
                if failures == 1:
                    self._log.warning(
                        "files.unreadable", key=shown_key(key), error=exc.strerror or str(exc)
                    )
                delay = max(self.stable_after, _retry_delay(failures))
                self.recheck_at[key] = time.monotonic() + delay
        return found

    def _examine_one(self, key: str, found: Examined) -> None:
        sig = self.view.stat(key)
        known = self.known.get(key)
        if sig is None:
            self._first_seen.pop(key, None)
            self._unreadable.pop(key, None)
            if known is not None:
                del self.known[key]
                found.changes.append(FileChange(key, changed_ns=time.time_ns()))
            return
        if known is not None and sig.same_content_stamp(known.size, known.mtime_ns):
            return
        if not self._stable(key, sig):
            return
        etag = self.view.md5(key)
        if etag is None or self.view.stat(key) != sig:
            # Written to while we read it, or replaced: look again once it settles.
            self.recheck_at[key] = time.monotonic() + max(self.stable_after, 0.1)
            return
        self._first_seen.pop(key, None)
        self._unreadable.pop(key, None)
        change = FileChange(key, sig.size, sig.mtime_ns, etag, max(sig.mtime_ns, sig.ctime_ns))
        self.known[key] = change
        if known is not None and known.etag == etag and known.size == sig.size:
            # Same content, only a new mtime (touch, checkout, restore): no new object.
            found.refreshed.append(change)
        else:
            found.changes.append(change)

    def _stable(self, key: str, sig: FileSig) -> bool:
        """Stable once the mtime is `stable_after` old, or once the size and times have
        not changed for that long (covers mtimes set in the future)."""
        still_for = time.time() - sig.mtime_ns / 1e9
        now = time.monotonic()
        seen = self._first_seen.get(key)
        if seen is None or seen[0] != sig:
            seen = self._first_seen[key] = (sig, now)
        unchanged_for = now - seen[1]
        if still_for >= self.stable_after or unchanged_for >= self.stable_after:
            return True
        self.recheck_at[key] = now + self.stable_after - max(still_for, unchanged_for) + 0.01
        return False


def _retry_delay(failures: int) -> float:
    return float(min(RETRY_MAX_SECONDS, 2 ** (failures - 1)))

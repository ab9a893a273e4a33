"""The `files` source: a folder's changes as S3 event notification records.

State: for every file the last state delivered (size, mtime, MD5) is checkpointed per
file once its event is settled. On start the folder is compared with that state, so
what changed while the daemon was down is reported; after that the watcher says which
paths to look at again. A file is reported once its mtime has been still for
`stable_after_seconds`, so a file being written is reported once, complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import structlog

from bridge.codec import dumps, loads
from bridge.errors import PermanentSourceError, SourceError
from bridge.plugins import SourceContext
from bridge.records import Record
from connectors.files.config import FilesSourceConfig
from connectors.files.events import FileChange, FileEventBuilder, FileEventFormatter
from connectors.files.scan import FileSig, FolderView, md5_of
from connectors.files.watch import FolderWatcher

# How long read() waits for a change before returning an empty list.
IDLE_READ_SECONDS = 0.5
# Files examined per read(), so a large catch-up is delivered in steps.
EXAMINE_CHUNK = 1000


class FilesSource:
    ordered = True

    def __init__(self, config: FilesSourceConfig, context: SourceContext) -> None:
        self.config = config
        root = config.path.resolve()
        excluded = [context.state_dir, *context.extras.get("excluded_paths", [])]
        self._view = FolderView(
            root,
            recursive=config.recursive,
            patterns=config.patterns,
            ignore_patterns=config.ignore_patterns,
            excluded=excluded,
        )
        self._events = FileEventBuilder(
            root=str(root),
            bucket=config.bucket or root.name,
            region=context.identity.region,
            configuration_id=context.mapping,
            parallelization_factor=context.parallelization_factor,
        )
        self.formatter: FileEventFormatter = self._events.formatter
        self._emit_created = "s3:ObjectCreated:*" in config.events
        self._emit_removed = "s3:ObjectRemoved:*" in config.events
        self._store = context.checkpoints
        self._namespace = f"{context.mapping}|{config.source_id()}"
        self._watcher = FolderWatcher(
            root,
            recursive=config.recursive,
            mode=config.observer,
            poll_interval=config.poll_interval_seconds,
        )
        self._known: dict[str, FileChange] = {}
        self._dirty: set[str] = set()
        self._dirty_folders: set[str] = set()
        self._recheck_at: dict[str, float] = {}
        self._first_seen: dict[str, tuple[FileSig, float]] = {}
        self._full_scan = True
        self._next_rescan = float("inf")
        self._wakeup = asyncio.Event()
        self._log = structlog.get_logger("connectors.files").bind(
            mapping=context.mapping, path=str(root)
        )

    async def open(self) -> None:
        root = self._view.root
        try:
            if self.config.create_path:
                root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(f"cannot create {root}: {exc.strerror}") from exc
        if not root.is_dir():
            raise PermanentSourceError(f"{root} is not a folder")
        stored = await self._store.load(self._namespace)
        self._known = {key: FileChange(**loads(value)) for key, value in stored.items()}
        try:
            observer = self._watcher.start(asyncio.get_running_loop(), self._touched)
        except OSError as exc:
            raise SourceError(f"cannot watch {root}: {exc}") from exc
        self._full_scan = True
        self._log.info("files.watching", observer=observer, known_files=len(self._known))

    def _touched(self, path: str, is_directory: bool) -> None:
        if is_directory:
            prefix = self._view.folder_key_of(path)
            if prefix == "":
                self._full_scan = True
            elif prefix is not None:
                self._dirty_folders.add(prefix)
        else:
            key = self._view.key_of(path)
            if key is not None:
                self._dirty.add(key)
        self._wakeup.set()

    async def read(self) -> Sequence[Record]:
        give_up = time.monotonic() + IDLE_READ_SECONDS
        while True:
            records = await self._changes()
            if records:
                return records
            now = time.monotonic()
            if now >= give_up:
                return []
            wake = min([give_up, *self._recheck_at.values()])
            self._wakeup.clear()
            if self._dirty or self._dirty_folders or self._full_scan:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(wake - now, 0.0))

    async def _changes(self) -> list[Record]:
        changes: list[FileChange] = []
        if self._full_scan or time.monotonic() >= self._next_rescan:
            self._full_scan = False
            interval = self.config.rescan_interval_seconds
            self._next_rescan = time.monotonic() + interval if interval > 0 else float("inf")
            present = await asyncio.to_thread(self._view.scan)
            changes += self._compare("", present)
        while self._dirty_folders:
            prefix = self._dirty_folders.pop()
            present = await asyncio.to_thread(self._view.scan, prefix)
            changes += self._compare(prefix + "/", present)
        now = time.monotonic()
        due = [key for key, when in self._recheck_at.items() if when <= now]
        self._dirty.update(due)
        keys = [self._dirty.pop() for _ in range(min(len(self._dirty), EXAMINE_CHUNK))]
        if keys:
            changes += await asyncio.to_thread(self._examine, keys)
        return await self._to_records(changes)

    def _compare(self, prefix: str, present: dict[str, FileSig]) -> list[FileChange]:
        """Removals found by a scan; new or changed files are queued for examination."""
        removed = [
            FileChange(key) for key in self._known if key.startswith(prefix) and key not in present
        ]
        for change in removed:
            del self._known[change.key]
        for key, sig in present.items():
            known = self._known.get(key)
            if known is None or known.size != sig.size or known.mtime_ns != sig.mtime_ns:
                self._dirty.add(key)
        return removed

    def _examine(self, keys: list[str]) -> list[FileChange]:
        """Runs on a worker thread: stat, wait for stability, hash."""
        changes: list[FileChange] = []
        stable_after = self.config.stable_after_seconds
        for key in keys:
            self._recheck_at.pop(key, None)
            sig = self._view.stat(key)
            known = self._known.get(key)
            if sig is None:
                self._first_seen.pop(key, None)
                if known is not None:
                    del self._known[key]
                    changes.append(FileChange(key))
                continue
            if known is not None and known.size == sig.size and known.mtime_ns == sig.mtime_ns:
                continue
            if not self._stable(key, sig, stable_after):
                continue
            try:
                etag = md5_of(self._view.path_of(key))
            except OSError:
                self._recheck_at[key] = time.monotonic() + max(stable_after, 0.1)
                continue
            if self._view.stat(key) != sig:
                self._recheck_at[key] = time.monotonic() + max(stable_after, 0.1)
                continue
            self._first_seen.pop(key, None)
            change = FileChange(key, sig.size, sig.mtime_ns, etag)
            self._known[key] = change
            changes.append(change)
        return changes

    def _stable(self, key: str, sig: FileSig, stable_after: float) -> bool:
        """Stable once the mtime is `stable_after` old, or once the size and mtime have
        not changed for that long (covers mtimes set in the future)."""
        still_for = time.time() - sig.mtime_ns / 1e9
        now = time.monotonic()
        seen = self._first_seen.get(key)
        if seen is None or seen[0] != sig:
            seen = self._first_seen[key] = (sig, now)
        unchanged_for = now - seen[1]
        if still_for >= stable_after or unchanged_for >= stable_after:
            return True
        self._recheck_at[key] = now + stable_after - max(still_for, unchanged_for) + 0.01
        return False

    async def _to_records(self, changes: list[FileChange]) -> list[Record]:
        records: list[Record] = []
        silent: dict[str, str | None] = {}
        for change in changes:
            wanted = self._emit_removed if change.removed else self._emit_created
            if wanted:
                records.append(self._events.record(change))
            else:
                silent[change.key] = None if change.removed else dumps(asdict(change)).decode()
        if silent:
            await self._store.save(self._namespace, silent)
        return records

    async def settle(self, records: Sequence[Record], checkpoints: Mapping[str, Record]) -> None:
        updates: dict[str, str | None] = {}
        for key, record in checkpoints.items():
            change: FileChange = record.handle
            updates[key] = None if change.removed else dumps(asdict(change)).decode()
        if updates:
            await self._store.save(self._namespace, updates)

    async def release(self, records: Sequence[Record]) -> None:
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self._watcher.stop)

    @property
    def root(self) -> Path:
        return self._view.root

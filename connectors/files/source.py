"""The `files` source: a folder's changes as S3 event notification records.

State: for every file the state last delivered (size, mtime, MD5, sequencer) is
checkpointed per file once its events are settled (ledger.py). On start the folder is
compared with that state, so what changed while the daemon was down is reported; after
that the watcher says which paths to look at again, and a periodic rescan catches
anything a watcher missed. A file is reported once it has been still for
`stable_after_seconds`, so a file being written is reported once, complete.

Nothing that walks, stats, hashes or reads files runs on the event loop: scans,
examining files, decoding the checkpoints and starting or stopping the watcher all run
on worker threads, so `/healthz` and the systemd watchdog answer during a large catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from bridge.config.plugins import SourceContext
from bridge.errors import PermanentSourceError, SourceError
from bridge.protocols import DeliveryMode, Ownership, Source
from bridge.records import Record
from connectors.files.changes import ChangeDetector
from connectors.files.config import FilesSourceConfig
from connectors.files.events import FileChange, FileEventBuilder, FileEventFormatter
from connectors.files.keys import shown_key
from connectors.files.ledger import Ledger, decode_states
from connectors.files.scan import FolderView
from connectors.files.watch import FolderWatcher

# How long read() waits for a change before returning an empty list.
IDLE_READ_SECONDS = 0.5
# Files examined per read(), so a large catch-up is delivered in steps.
EXAMINE_CHUNK = 1000
# While reconciling the folder at start, progress is logged this often.
PROGRESS_LOG_SECONDS = 5.0


class FilesSource(Source):
    """A stream over a folder: each file is a partition, its states in order."""

    mode = DeliveryMode.STREAM

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
        self._detector = ChangeDetector(self._view, config.stable_after_seconds)
        self._events = FileEventBuilder(
            root=shown_key(str(root)),
            bucket=config.bucket or shown_key(root.name),
            region=context.identity.region,
            configuration_id=context.mapping,
        )
        self.formatter: FileEventFormatter = self._events.formatter
        self._emit_created = "s3:ObjectCreated:*" in config.events
        self._emit_removed = "s3:ObjectRemoved:*" in config.events
        self._store = context.checkpoints
        self._ledger = Ledger()
        self._namespace = f"{context.mapping}|{config.source_id()}"
        self._watcher = FolderWatcher(
            root,
            recursive=config.recursive,
            mode=config.observer,
            poll_interval=config.poll_interval_seconds,
        )
        self._dirty: set[str] = set()
        self._removals: list[FileChange] = []
        self._dirty_folders: set[str] = set()
        self._full_scan = True
        self._next_rescan = float("inf")
        self._wakeup = asyncio.Event()
        # The first full scan's reconciliation: files to examine and how many are done.
        self._catch_up: dict[str, int] | None = None
        self._catch_up_started = 0.0
        self._catch_up_logged = 0.0
        self._log = structlog.get_logger("connectors.files").bind(
            mapping=context.mapping, path=shown_key(str(root))
        )

    async def open(self, ownership: Ownership) -> None:
        await asyncio.to_thread(self._check_root)
        stored = await self._store.load(self._namespace)
        await asyncio.to_thread(self._restore, stored)
        try:
            observer = await asyncio.to_thread(
                self._watcher.start, asyncio.get_running_loop(), self._touched
            )
        except OSError as exc:
            raise SourceError(f"cannot watch {self._shown_root}: {exc}") from exc
        self._full_scan = True
        self._catch_up = {"done": 0, "total": 0}
        self._log.info("files.watching", observer=observer, known_files=len(self._detector.known))

    @property
    def _shown_root(self) -> str:
        return shown_key(str(self._view.root))

    def _check_root(self) -> None:
        root = self._view.root
        try:
            if self.config.create_path:
                root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(f"cannot create {self._shown_root}: {exc.strerror}") from exc
        if not root.exists():
            # It may be a mount point that comes back: keep trying.
            raise SourceError(f"{self._shown_root} does not exist")
        if not root.is_dir():
            raise PermanentSourceError(f"{self._shown_root} is not a folder")

    def _restore(self, stored: dict[str, str]) -> None:
        """Take on the checkpointed states (on a worker thread: there may be many)."""
        states, unreadable = decode_states(stored)
        if unreadable:
            self._log.warning(
                "files.checkpoint_unreadable", keys=len(unreadable), first=unreadable[0]
            )
        for key, (change, sequencer) in states.items():
            self._events.continue_after(sequencer)
            # Keys that no longer count (patterns, recursion or excluded folders changed
            # since they were checkpointed) are left alone, not reported as removed: their
            # files may well still be there, only no longer watched.
            if self._view.counts(key):
                self._detector.known[key] = change
                self._ledger.know(key, sequencer)

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
            detector = self._detector
            wake = min(
                [give_up, *detector.recheck_at.values(), *detector.folder_recheck_at.values()]
            )
            self._wakeup.clear()
            if self._dirty or self._dirty_folders or self._full_scan or self._removals:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(wake - now, 0.0))

    async def _changes(self) -> list[Record]:
        if self._full_scan or time.monotonic() >= self._next_rescan:
            self._full_scan = False
            interval = self.config.rescan_interval_seconds
            self._next_rescan = time.monotonic() + interval if interval > 0 else float("inf")
            self._removals += await self._scan("")
        now = time.monotonic()
        detector = self._detector
        self._dirty_folders.update(
            folder for folder, when in detector.folder_recheck_at.items() if when <= now
        )
        while self._dirty_folders:
            self._removals += await self._scan(self._dirty_folders.pop())
        # Removals found by scans go first (a key removed, then created again, keeps its
        # order), at most a chunk at a time; files are examined once none is left.
        removals = self._removals[:EXAMINE_CHUNK]
        del self._removals[:EXAMINE_CHUNK]
        keys: list[str] = []
        if not self._removals:
            now = time.monotonic()
            self._dirty.update(key for key, when in detector.recheck_at.items() if when <= now)
            count = min(len(self._dirty), EXAMINE_CHUNK - len(removals))
            keys = [self._dirty.pop() for _ in range(count)]
        taken: list[Record | FileChange] = []
        if removals or keys:
            try:
                taken = await asyncio.to_thread(self._take_on, removals, keys)
            except OSError as exc:
                raise SourceError(f"cannot scan {self._shown_root}: {exc}") from exc
        self._note_progress(len(keys))
        return await self._settle_silently(taken)

    def _take_on(self, removals: list[FileChange], keys: list[str]) -> list[Record | FileChange]:
        """On a worker thread: examine `keys`; return, in the order they happened, a record
        for each change `events:` asks for and the bare change for the others (and for
        files whose content did not change), whose state is saved without an event."""
        examined = self._detector.examine(keys)
        taken: list[Record | FileChange] = []
        for change in [*removals, *examined.changes]:
            wanted = self._emit_removed if change.removed else self._emit_created
            taken.append(self._events.record(change) if wanted else change)
        taken += examined.refreshed
        return taken

    @property
    def progress(self) -> dict[str, int] | None:
        """While the folder is reconciled at start: files examined and to examine."""
        return (
            dict(self._catch_up) if self._catch_up is not None and self._catch_up["total"] else None
        )

    def _note_progress(self, examined: int) -> None:
        catch_up = self._catch_up
        if catch_up is None:
            return
        now = time.monotonic()
        if not catch_up["total"]:
            catch_up["total"] = len(self._dirty) + examined
            self._catch_up_started = self._catch_up_logged = now
        catch_up["done"] = min(catch_up["done"] + examined, catch_up["total"])
        if not self._dirty:
            if catch_up["total"]:
                self._log.info(
                    "files.caught_up",
                    files=catch_up["total"],
                    seconds=round(now - self._catch_up_started, 3),
                )
            self._catch_up = None
        elif now - self._catch_up_logged >= PROGRESS_LOG_SECONDS:
            self._catch_up_logged = now
            self._log.info("files.catching_up", done=catch_up["done"], total=catch_up["total"])

    async def _scan(self, prefix: str) -> list[FileChange]:
        """Scan the folder (or one sub-folder); return removals, queue what to examine."""
        try:
            removed, suspects = await asyncio.to_thread(self._detector.reconcile, prefix)
        except OSError as exc:
            # An unreadable folder is not an empty one: reconnect rather than report removals.
            shown = shown_key(str(self._view.root / prefix))
            raise SourceError(f"cannot scan {shown}: {exc.strerror or exc}") from exc
        self._dirty |= suspects
        return removed

    async def _settle_silently(self, taken: list[Record | FileChange]) -> list[Record]:
        """Hand the records to the ledger, and save what it lets through of the states
        that come without an event; return the records to deliver."""
        records: list[Record] = []
        updates: dict[str, str | None] = {}
        for item in taken:
            if isinstance(item, Record):
                self._ledger.emitted(item)
                records.append(item)
            else:
                updates.update(self._ledger.silent(item))
        if updates:
            await self._store.save(self._namespace, updates)
        return records

    async def commit(self, positions: Mapping[str, Record]) -> None:
        """Save the states the ledger lets through: each file's state as of its newest
        settled record, or the state held back behind it once nothing is unsettled."""
        updates = self._ledger.committed(positions.values())
        if updates:
            await self._store.save(self._namespace, updates)

    async def close(self) -> None:
        await asyncio.to_thread(self._watcher.stop)

    @property
    def root(self) -> Path:
        return self._view.root

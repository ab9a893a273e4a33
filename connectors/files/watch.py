"""watchdog's observer thread, bridged into the event loop.

The observer only says which paths were touched; what changed is decided by looking at
the folder again, so missed or coalesced notifications cannot produce wrong events.
Starting an observer walks the folder (inotify adds a watch per sub-folder, the polling
observer takes a snapshot of every file) and stopping one joins its threads, so both are
called on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

Touched = Callable[[str, bool], None]
# The events asked for (inotify is told so, and does not report the opens and reads of
# the files the source hashes). A folder's own "modified" events only repeat what its
# files' events say; lost events (an inotify queue overflow) make the whole folder be
# scanned again.
_WANTED: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
]
_FOLDER_EVENTS = frozenset({"created", "deleted", "moved", "events_lost"})


class _Forwarder(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, touched: Touched) -> None:
        self._loop = loop
        self._touched = touched

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type not in _FOLDER_EVENTS:
            return
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(dest)
        for path in paths:
            text = os.fsdecode(path)
            self._loop.call_soon_threadsafe(self._touched, text, event.is_directory)


class FolderWatcher:
    """Calls `touched(path, is_directory)` on the event loop for every change under `root`.

    `start` and `stop` block (call them on a worker thread); a `stop` that comes while
    `start` is still running waits for it, and a `start` after `stop` does nothing, so
    no observer is left behind.
    """

    def __init__(self, root: Path, *, recursive: bool, mode: str, poll_interval: float) -> None:
        self.root = root
        self.recursive = recursive
        self.mode = mode
        self.poll_interval = poll_interval
        self._observer: Any = None
        self._lock = threading.Lock()
        self._stopped = False
        self._log = structlog.get_logger("connectors.files")

    def start(self, loop: asyncio.AbstractEventLoop, touched: Touched) -> str:
        """Start watching; returns the kind of observer in use."""
        with self._lock:
            if self._stopped:
                return "none (stopped)"
            return self._start(_Forwarder(loop, touched))

    def _start(self, handler: _Forwarder) -> str:
        if self.mode != "polling":
            try:
                observer = Observer()
                observer.schedule(
                    handler, str(self.root), recursive=self.recursive, event_filter=_WANTED
                )
                observer.start()
                self._observer = observer
                return type(observer).__name__
            except OSError as exc:
                if self.mode == "native":
                    raise
                self._log.warning(
                    "files.native_watch_unavailable", error=str(exc), fallback="polling"
                )
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(handler, str(self.root), recursive=self.recursive, event_filter=_WANTED)
        observer.start()
        self._observer = observer
        return "PollingObserver"

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            observer = self._observer
            self._observer = None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

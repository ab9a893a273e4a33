"""The `file` destination: one JSON document per line, appended, flushed and fsynced.

Each line is the on-failure record in AWS's shape with the discarded event embedded
under `payload`, as AWS does for S3 destinations (esm-reference.md 10.2), so the
records themselves are kept and can be replayed. Creating the folder, encoding the
record (up to the 6 MB of its event) and writing it run on a worker thread. The folder is
created 0700 and the files 0600, never through a symlink: they hold whole payloads.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

from bridge.codec import dumps
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.failures import failure_document
from bridge.folders import make_private_folder
from bridge.protocols import EventFormatter
from bridge.records import Delivery, FailureRecord
from connectors.files.config import FileDestinationConfig

_REFUSED = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,  # a symlink put where the failure file goes is never followed
    }
)


class FileDestination:
    def __init__(self, name: str, config: FileDestinationConfig) -> None:
        self.name = name
        self.folder = config.path
        self._fsync = config.fsync
        self._locks: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        try:
            await asyncio.to_thread(make_private_folder, self.folder)
        except OSError as exc:
            raise DestinationError(
                f"destination {self.name!r}: cannot create {self.folder}: {exc.strerror}"
            ) from exc

    def file_for(self, mapping: str) -> Path:
        return self.folder / f"{mapping}.jsonl"

    def _write(self, path: Path, failure: FailureRecord, formatter: EventFormatter) -> None:
        document = failure_document(failure, formatter, include_payload=True)
        self._append(path, dumps(document) + b"\n")

    def _append(self, path: Path, line: bytes) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(path, flags, 0o600)
        try:
            size_before = os.fstat(descriptor).st_size
            try:
                written = os.write(descriptor, line)
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
                if self._fsync:
                    os.fsync(descriptor)
            except OSError:
                # Leave no half line behind: the record is written again whole.
                os.ftruncate(descriptor, size_before)
                raise
        finally:
            os.close(descriptor)

    async def send(self, failure: FailureRecord, formatter: EventFormatter) -> None:
        path = self.file_for(failure.mapping)
        lock = self._locks.setdefault(failure.mapping, asyncio.Lock())
        async with lock:
            try:
                await asyncio.to_thread(self._write, path, failure, formatter)
            except OSError as exc:
                # A full disk or an I/O error may pass; a path that cannot be written
                # (no permission, read-only, not a folder) will not.
                kind = PermanentDestinationError if exc.errno in _REFUSED else DestinationError
                raise kind(f"destination {self.name!r}: cannot write {path}: {exc}") from exc

    async def deliver(self, delivery: Delivery) -> None:
        """An asynchronous invocation's record (or dead-letter event): one line of
        `<origin>.jsonl`, as the record was built."""
        path = self.file_for(delivery.origin)
        lock = self._locks.setdefault(delivery.origin, asyncio.Lock())
        async with lock:
            try:
                await asyncio.to_thread(self._append, path, delivery.body + b"\n")
            except OSError as exc:
                kind = PermanentDestinationError if exc.errno in _REFUSED else DestinationError
                raise kind(f"destination {self.name!r}: cannot write {path}: {exc}") from exc

    async def close(self) -> None:
        return None

"""Driving a `files` source the way a mapping does, for the connector tests: a real
folder, the real watchdog observer and the SQLite checkpoint store (reading and settling:
tests/connectors/reading.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.config.plugins import Identity, SourceContext
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.protocols import Source
from bridge.records import Record
from connectors.files.config import FilesSourceConfig


def write(path: Path, data: bytes = b"hello") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def obj(record: Record) -> dict[str, Any]:
    s3_object: dict[str, Any] = record.payload["s3"]["object"]
    return s3_object


def name_of(record: Record) -> str:
    event_name: str = record.payload["eventName"]
    return event_name


def summary(records: Sequence[Record]) -> set[tuple[str, str]]:
    return {(name_of(record), record.partition) for record in records}


async def started(source: Source) -> None:
    """One idle read, so the initial full scan is behind: changes made afterwards reach
    the source through the observer."""
    assert await source.read() == []


def has_keys(*keys: str) -> Callable[[list[Record]], bool]:
    return lambda records: set(keys) <= {record.partition for record in records}


class NoOwnership:
    """A files source never loses partitions; it is given this to open."""

    def revoked(self, partitions: Any) -> None:
        raise AssertionError("a files source revoked partitions")


class Folder:
    """A watched folder, a state folder and the checkpoint store kept in it."""

    def __init__(self, tmp_path: Path, *, state_dir: Path | None = None) -> None:
        self.inbox = tmp_path / "inbox"
        self.state_dir = state_dir or tmp_path / "state"

    @contextlib.asynccontextmanager
    async def source(self, **settings: Any) -> AsyncIterator[Source]:
        """An opened source on a freshly opened store; both closed (and persisted) on exit,
        as a daemon that stops and later starts again would."""
        store = SqliteCheckpointStore(self.state_dir / "c.sqlite3")
        await store.open()
        try:
            context = SourceContext(
                mapping="m", identity=Identity(), checkpoints=store, state_dir=self.state_dir
            )
            settings.setdefault("path", self.inbox)
            settings.setdefault("stable_after_seconds", 0.2)
            config = FilesSourceConfig(type="files", **settings)
            source = config.build(context)
            await source.open(NoOwnership())
            try:
                yield source
            finally:
                await source.close()
        finally:
            await store.close()

    async def checkpoints(self) -> dict[str, dict[str, Any]]:
        """The states checkpointed for the folder, by stored key, read through the store's
        own API (use it while no source is open: a source's store flushes on close)."""
        store = SqliteCheckpointStore(self.state_dir / "c.sqlite3")
        await store.open()
        try:
            namespace = f"m|{FilesSourceConfig(type='files', path=self.inbox).source_id()}"
            stored = await store.load(namespace)
        finally:
            await store.close()
        return {key: json.loads(value) for key, value in stored.items()}

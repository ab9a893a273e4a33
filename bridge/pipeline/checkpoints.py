"""The embedded checkpoint store: SQLite in `state_dir`.

Saves are staged in memory and written in one transaction at a short interval and on
close, so a busy mapping does not pay a disk write per batch. A crash loses at most the
last interval's progress, which means redelivery, never a skipped record. A write that
fails (disk full, a locked or broken file) keeps what it could not write, is tried again
with backoff, and says so: the store's `problem` makes every mapping that checkpoints
here `Degraded`, and `write_failures` is exported as a metric.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog
from pydantic import Field

from bridge.config.plugins import BuildContext, CheckpointStoreConfig, PathSetting
from bridge.errors import BridgeError
from bridge.folders import create_private_file, make_private_folder
from bridge.pipeline.leases import (
    LEASES_SCHEMA,
    SqliteLeaseTable,
    immediate,
    lease_owner,
    write_fenced,
)
from bridge.retry import Backoff

T = TypeVar("T")

# After a failed write, the next one is tried after this backoff (never sooner than the
# flush interval).
FLUSH_BACKOFF = Backoff(initial=1.0, maximum=30.0)
BUSY_TIMEOUT_SECONDS = 10.0
DEFAULT_LEASE_TTL_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    namespace TEXT NOT NULL,
    partition TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, partition)
) WITHOUT ROWID
"""


class StagedPositions:
    """Saves staged in memory until the next flush, shared by the checkpoint stores:
    `save` stages, `overlay` shows what a load must return (the stored positions with
    the staged ones on top, a staged None deleting), `flush_periodically` writes them
    in the background and reports failures."""

    def __init__(self) -> None:
        self._staged: dict[tuple[str, str], str | None] = {}
        # Positions of leased partitions: written only while `owner` holds the lease.
        self._fenced: dict[tuple[str, str], tuple[str, str]] = {}
        self.problem: str | None = None
        self.write_failures = 0
        self.fenced_out = 0

    async def flush(self) -> None:
        raise NotImplementedError

    async def flush_periodically(self, interval: float, where: str) -> None:
        """Flush every `interval` seconds until cancelled. A failed flush keeps its
        positions staged; it is reported (`problem`, `write_failures`, a log line per
        attempt) and tried again with backoff, until a flush succeeds."""
        log = structlog.get_logger("bridge.pipeline.checkpoints").bind(store=where)
        failures = 0
        while True:
            delay = interval if not failures else max(interval, FLUSH_BACKOFF.delay(failures))
            await asyncio.sleep(delay)
            try:
                await self.flush()
            except Exception as exc:
                failures += 1
                self.write_failures += 1
                self.problem = f"cannot write checkpoints to {where}: {exc or type(exc).__name__}"
                log.error(
                    "checkpoints.write_failed",
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    attempt=failures,
                    staged=len(self._staged),
                )
                continue
            if failures:
                log.info("checkpoints.write_recovered", after_attempts=failures)
                failures = 0
                self.problem = None

    async def save(self, namespace: str, updates: Mapping[str, str | None]) -> None:
        for partition, value in updates.items():
            self._staged[(namespace, partition)] = value

    def stage_fenced(self, namespace: str, owner: str, updates: Mapping[str, str]) -> None:
        for partition, value in updates.items():
            self._fenced[(namespace, partition)] = (owner, value)

    def drop_fenced(self, namespace: str, partitions: Collection[str]) -> None:
        for partition in partitions:
            self._fenced.pop((namespace, partition), None)

    def take_staged(
        self,
    ) -> tuple[dict[tuple[str, str], str | None], dict[tuple[str, str], tuple[str, str]]]:
        staged, self._staged = self._staged, {}
        fenced, self._fenced = self._fenced, {}
        return staged, fenced

    def restore_staged(
        self,
        staged: dict[tuple[str, str], str | None],
        fenced: dict[tuple[str, str], tuple[str, str]],
    ) -> None:
        """Keep what could not be written, without overwriting anything newer."""
        self._staged = {**staged, **self._staged}
        self._fenced = {**fenced, **self._fenced}

    def fenced_off(self, where: str, refused: Collection[tuple[str, str]]) -> None:
        """These positions were not written: their writer no longer holds the lease."""
        if not refused:
            return
        self.fenced_out += len(refused)
        structlog.get_logger("bridge.pipeline.checkpoints").warning(
            "checkpoints.fenced",
            store=where,
            partitions=sorted(f"{namespace}/{partition}" for namespace, partition in refused),
            reason="the lease is held by another daemon now; its position stands",
        )

    def overlay(self, namespace: str, stored: dict[str, str]) -> dict[str, str]:
        for (staged_namespace, partition), value in self._staged.items():
            if staged_namespace != namespace:
                continue
            if value is None:
                stored.pop(partition, None)
            else:
                stored[partition] = value
        for (staged_namespace, partition), (_, fenced) in self._fenced.items():
            if staged_namespace == namespace:
                stored[partition] = fenced
        return stored


class SqliteCheckpointStore(StagedPositions):
    """CheckpointStore backed by one SQLite file, accessed from one worker thread. Several
    daemons on one host may share the file: each write holds the file's write lock for
    its transaction, and sources that lease their partitions (`lease_table`) share them."""

    def __init__(
        self,
        path: Path,
        flush_interval: float = 0.5,
        *,
        lease_owner: str | None = None,
        lease_ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS,
    ) -> None:
        super().__init__()
        self.path = path
        self._flush_interval = flush_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        self.connection: sqlite3.Connection | None = None
        self._lease_owner = lease_owner
        self._lease_ttl_seconds = lease_ttl_seconds
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def run(self, function: Any, *args: Any) -> Any:
        """Run SQLite work on the store's own thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def lease_table(self, namespace: str) -> SqliteLeaseTable | None:
        """Leases in this file: always available (a lone daemon takes every lease at once,
        so it pays one small write per shard and renewal period)."""
        if self._lease_owner is None:
            return None
        return SqliteLeaseTable(self, namespace, self._lease_owner, self._lease_ttl_seconds)

    def _connect(self) -> None:
        make_private_folder(self.path.parent)
        create_private_file(self.path)
        # Daemons sharing the file wait for each other's (short) write transactions.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_SCHEMA)
        connection.execute(LEASES_SCHEMA)
        connection.commit()
        self.connection = connection

    async def open(self) -> None:
        try:
            await self.run(self._connect)
        except (OSError, sqlite3.Error) as exc:
            raise BridgeError(f"checkpoint store {str(self.path)!r}: cannot open: {exc}") from None
        self._flusher = asyncio.create_task(
            self.flush_periodically(self._flush_interval, str(self.path)),
            name="checkpoint-flusher",
        )

    def _select(self, namespace: str) -> dict[str, str]:
        assert self.connection is not None
        rows = self.connection.execute(
            "SELECT partition, value FROM checkpoints WHERE namespace = ?", (namespace,)
        )
        return dict(rows.fetchall())

    async def load(self, namespace: str) -> dict[str, str]:
        # Under the flush lock: a flush moves values out of `_staged` before its write
        # lands, and a load in between would see them in neither place.
        async with self._lock:
            stored: dict[str, str] = await self.run(self._select, namespace)
        return self.overlay(namespace, stored)

    def _write(
        self,
        staged: dict[tuple[str, str], str | None],
        fenced: dict[tuple[str, str], tuple[str, str]],
    ) -> list[tuple[str, str]]:
        connection = self.connection
        assert connection is not None
        now = time.time()

        def work() -> list[tuple[str, str]]:
            deleted = [key for key, value in staged.items() if value is None]
            connection.executemany(
                "DELETE FROM checkpoints WHERE namespace = ? AND partition = ?", deleted
            )
            connection.executemany(
                "DELETE FROM leases WHERE namespace = ? AND partition = ?", deleted
            )
            connection.executemany(
                "INSERT INTO checkpoints (namespace, partition, value, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (namespace, partition) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [
                    (namespace, partition, value, now)
                    for (namespace, partition), value in staged.items()
                    if value is not None
                ],
            )
            return write_fenced(connection, fenced, now)

        refused: list[tuple[str, str]] = immediate(connection, work)
        return refused

    async def flush(self) -> None:
        async with self._lock:
            if not (self._staged or self._fenced) or self.connection is None:
                return
            staged, fenced = self.take_staged()
            try:
                refused = await self.run(self._write, staged, fenced)
            except BaseException:
                self.restore_staged(staged, fenced)
                raise
        self.fenced_off(str(self.path), refused)

    def _delete(self, prefix: str) -> int:
        assert self.connection is not None
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.connection:
            cursor = self.connection.execute(
                "DELETE FROM checkpoints WHERE namespace LIKE ? ESCAPE '\\'", (pattern,)
            )
            self.connection.execute(
                "DELETE FROM leases WHERE namespace LIKE ? ESCAPE '\\'", (pattern,)
            )
        return int(cursor.rowcount)

    async def clear(self, namespace_prefix: str) -> int:
        await self.flush()
        for key in [key for key in self._staged if key[0].startswith(namespace_prefix)]:
            del self._staged[key]
        for key in [key for key in self._fenced if key[0].startswith(namespace_prefix)]:
            del self._fenced[key]
        deleted: int = await self.run(self._delete, namespace_prefix)
        return deleted

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await self.flush()
        if self.connection is not None:
            await self.run(self.connection.close)
            self.connection = None
        self._executor.shutdown(wait=True)


class SqliteCheckpointStoreConfig(CheckpointStoreConfig):
    """The default store: `checkpoints.sqlite3` in `state_dir`."""

    type: Literal["sqlite"] = "sqlite"
    flush_interval_seconds: float = Field(
        0.5, gt=0, le=60, description="How often staged checkpoints are written."
    )
    path: PathSetting | None = Field(
        None,
        description="The SQLite file (default `state_dir/checkpoints.sqlite3`); daemons on "
        "one host that name the same file share the shards of their Kinesis and DynamoDB "
        "Streams mappings.",
    )
    lease_ttl_seconds: float = Field(
        DEFAULT_LEASE_TTL_SECONDS,
        ge=1,
        le=600,
        description="A shard lease lapses this long after its holder last renewed it; "
        "another daemon then takes the shard over.",
    )

    def build(self, context: BuildContext) -> SqliteCheckpointStore:
        return SqliteCheckpointStore(
            self.path or context.state_dir / "checkpoints.sqlite3",
            self.flush_interval_seconds,
            lease_owner=lease_owner(context.state_dir),
            lease_ttl_seconds=self.lease_ttl_seconds,
        )

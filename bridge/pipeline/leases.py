"""Partition leases in the SQLite checkpoint store (bridge.protocols.LeaseTable), for
several daemons on one host sharing one SQLite file.

A lease is a row of `leases` (namespace, partition, owner, counter); the partition's
checkpoint stays in `checkpoints`. Every change runs in a `BEGIN IMMEDIATE` transaction,
which takes the file's write lock before reading, so the condition checked and the
write made are one atomic step across processes. A fenced checkpoint is written in the
same kind of transaction, only where the lease row names its writer.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.protocols import Lease

if TYPE_CHECKING:
    from bridge.pipeline.checkpoints import SqliteCheckpointStore

LEASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL,
    partition TEXT NOT NULL,
    owner TEXT,
    counter INTEGER NOT NULL,
    PRIMARY KEY (namespace, partition)
) WITHOUT ROWID
"""


def lease_owner(state_dir: Path) -> str:
    """`<hostname>-<8 hex of state_dir>#<8 hex new at every start>`: the part before `#`
    tells a daemon the leases its own previous run left (after a kill -9), which it takes
    back at once; the token fences that previous run's writes off."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}#{uuid.uuid4().hex[:8]}"


def immediate(connection: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    """Run `work` in one transaction that holds the write lock from its start."""
    connection.execute("BEGIN IMMEDIATE")
    with connection:
        return work()


def write_fenced(
    connection: sqlite3.Connection, fenced: Mapping[tuple[str, str], tuple[str, str]], now: float
) -> list[tuple[str, str]]:
    """Inside a transaction: write each position whose lease its writer holds; return
    the keys refused."""
    refused: list[tuple[str, str]] = []
    for (namespace, partition), (owner, value) in fenced.items():
        cursor = connection.execute(
            "INSERT INTO checkpoints (namespace, partition, value, updated_at) "
            "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM leases WHERE namespace = ? "
            "AND partition = ? AND owner = ?) ON CONFLICT (namespace, partition) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (namespace, partition, value, now, namespace, partition, owner),
        )
        if cursor.rowcount != 1:
            refused.append((namespace, partition))
    return refused


class SqliteLeaseTable:
    """The leases of one namespace in a SqliteCheckpointStore; all SQL runs on the
    store's worker thread."""

    def __init__(
        self, store: SqliteCheckpointStore, namespace: str, owner: str, ttl_seconds: float
    ) -> None:
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self._store = store
        self._namespace = namespace

    def _connection(self) -> sqlite3.Connection:
        connection = self._store.connection
        assert connection is not None, "the checkpoint store is not open"
        return connection

    def _list(self) -> dict[str, Lease]:
        rows = self._connection().execute(
            "SELECT l.partition, l.owner, l.counter, c.value FROM leases l LEFT JOIN "
            "checkpoints c ON c.namespace = l.namespace AND c.partition = l.partition "
            "WHERE l.namespace = ?",
            (self._namespace,),
        )
        return {row[0]: Lease(*row) for row in rows.fetchall()}

    async def list_leases(self) -> dict[str, Lease]:
        leases: dict[str, Lease] = await self._store.run(self._list)
        staged = self._store.overlay(self._namespace, {})
        return {
            partition: lease._replace(checkpoint=staged.get(partition, lease.checkpoint))
            if lease.owner == self.owner
            else lease
            for partition, lease in leases.items()
        }

    def _create(self, checkpoints: Mapping[str, str | None]) -> None:
        connection = self._connection()

        def work() -> None:
            for partition, value in checkpoints.items():
                created = connection.execute(
                    "INSERT INTO leases (namespace, partition, owner, counter) "
                    "VALUES (?, ?, NULL, 0) ON CONFLICT DO NOTHING",
                    (self._namespace, partition),
                ).rowcount
                if created and value is not None:
                    connection.execute(
                        "INSERT INTO checkpoints (namespace, partition, value, updated_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (self._namespace, partition, value, time.time()),
                    )

        immediate(connection, work)

    async def create(self, checkpoints: Mapping[str, str | None]) -> None:
        if checkpoints:
            await self._store.run(self._create, dict(checkpoints))

    def _take(self, lease: Lease) -> Lease | None:
        connection = self._connection()

        def work() -> Lease | None:
            taken = connection.execute(
                "UPDATE leases SET owner = ?, counter = counter + 1 "
                "WHERE namespace = ? AND partition = ? AND counter = ?",
                (self.owner, self._namespace, lease.partition, lease.counter),
            ).rowcount
            if not taken:
                return None
            row = connection.execute(
                "SELECT value FROM checkpoints WHERE namespace = ? AND partition = ?",
                (self._namespace, lease.partition),
            ).fetchone()
            return Lease(lease.partition, self.owner, lease.counter + 1, row and row[0])

        result: Lease | None = immediate(connection, work)
        return result

    async def take(self, lease: Lease) -> Lease | None:
        taken: Lease | None = await self._store.run(self._take, lease)
        return taken

    def _change_own(self, partitions: list[str], owner: str | None) -> set[str]:
        connection = self._connection()

        def work() -> set[str]:
            return {
                partition
                for partition in partitions
                if connection.execute(
                    "UPDATE leases SET owner = ?, counter = counter + 1 "
                    "WHERE namespace = ? AND partition = ? AND owner = ?",
                    (owner, self._namespace, partition, self.owner),
                ).rowcount
            }

        changed: set[str] = immediate(connection, work)
        return changed

    async def renew(self, partitions: Collection[str]) -> set[str]:
        if not partitions:
            return set()
        renewed: set[str] = await self._store.run(self._change_own, list(partitions), self.owner)
        return renewed

    async def release(self, partitions: Collection[str]) -> None:
        if partitions:
            await self._store.run(self._change_own, list(partitions), None)

    async def checkpoint(self, updates: Mapping[str, str]) -> None:
        self._store.stage_fenced(self._namespace, self.owner, updates)

    def forget(self, partitions: Collection[str]) -> None:
        self._store.drop_fenced(self._namespace, partitions)

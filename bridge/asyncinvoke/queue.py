"""A function's durable queue of asynchronous events: one SQLite file in WAL mode.

An event is on disk (committed, synchronous=FULL) before `put` returns, so the 202 that
follows never promises an event a crash could lose. Rows leave only through `remove`,
after the event's records are delivered: an event being invoked when the daemon died is
still there after a restart and runs again (at least once, as Lambda's own queue may
deliver twice, esm-reference.md 12). An outcome already decided (`outcome` set) is not
invoked again after a restart: only its records are delivered.

All SQLite work runs on worker threads (asyncio.to_thread), one statement at a time under
a lock: the connection is shared by the threads, never used by two at once.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bridge.folders import create_private_file, make_private_folder

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    setbacks INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    outcome TEXT,
    last_result TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt, seq);
"""
_COLUMNS = (
    "request_id, qualifier, payload, received, attempts, setbacks, next_attempt, outcome, "
    "last_result"
)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One accepted event. `attempts` counts invocations that reached the function;
    `setbacks` throttles and service errors in a row (their backoff grows with them);
    `outcome` is the condition decided for it, waiting for its records to be delivered;
    `last_result` the JSON of the last invocation's answer."""

    request_id: str
    qualifier: str
    payload: bytes
    received: float
    attempts: int = 0
    setbacks: int = 0
    next_attempt: float = 0.0
    outcome: str | None = None
    last_result: str | None = None


def queue_file(folder: Path, function: str) -> Path:
    """Where a function's queue lives: `<folder>/<function, percent-encoded>.sqlite`."""
    return folder / f"{quote(function, safe='-_.')}.sqlite"


class EventQueue:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._commit_lock = asyncio.Lock()
        self._waiting: list[tuple[QueuedEvent, asyncio.Future[None]]] = []
        self._commits: set[asyncio.Task[None]] = set()

    # -- thread side ----------------------------------------------------------------

    def _open(self) -> None:
        make_private_folder(self.path.parent)
        create_private_file(self.path)
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        self._connection = connection

    def _run(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._connection is None:
                raise RuntimeError(f"the queue {self.path} is closed")
            return self._connection.execute(sql, parameters).fetchall()

    # -- loop side ------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def put(self, event: QueuedEvent) -> None:
        """Commit the event; it is durable when this returns.

        Events put while a commit is under way are committed together by the next one
        (one transaction, one fsync), each caller returning once its own is on disk: many
        callers at once cost about one commit each round rather than one each."""
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((event, committed))
        async with self._commit_lock:
            if not committed.done():
                batch, self._waiting = self._waiting, []
                # A task, so that a caller who gives up (its client went away) neither
                # stops the commit nor leaves the others of its batch without an answer.
                inserting = asyncio.to_thread(self._insert, [event for event, _ in batch])
                commit: asyncio.Task[None] = asyncio.create_task(inserting)
                self._commits.add(commit)
                commit.add_done_callback(functools.partial(self._settle, batch))
                await asyncio.wait([commit])
        await committed

    def _settle(
        self, batch: list[tuple[QueuedEvent, asyncio.Future[None]]], commit: asyncio.Task[None]
    ) -> None:
        self._commits.discard(commit)
        failure = None if commit.cancelled() else commit.exception()
        for _, future in batch:
            if future.done():
                continue
            if commit.cancelled():
                future.cancel()
            elif failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(None)

    def _insert(self, events: list[QueuedEvent]) -> None:
        rows = [
            (
                event.request_id,
                event.qualifier,
                event.payload,
                event.received,
                event.attempts,
                event.setbacks,
                event.next_attempt,
                event.outcome,
                event.last_result,
            )
            for event in events
        ]
        with self._lock:
            connection = self._connection
            if connection is None:
                raise RuntimeError(f"the queue {self.path} is closed")
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    async def due(self, now: float, limit: int, busy: Collection[str] = ()) -> list[QueuedEvent]:
        """Up to `limit` events whose next attempt has come, oldest accepted first,
        leaving out the request ids in `busy` (being handled now)."""
        if limit <= 0:
            return []
        rows = await asyncio.to_thread(
            self._run,
            f"SELECT {_COLUMNS} FROM events WHERE next_attempt <= ? ORDER BY seq LIMIT ?",
            (now, limit + len(busy)),
        )
        events = [QueuedEvent(*row) for row in rows if row[0] not in busy]
        return events[:limit]

    async def next_due(self, busy: Collection[str] = ()) -> float | None:
        """The earliest next attempt of an event not in `busy`; None if there is none."""
        rows = await asyncio.to_thread(
            self._run,
            "SELECT request_id, next_attempt FROM events ORDER BY next_attempt LIMIT ?",
            (len(busy) + 1,),
        )
        times = [when for request_id, when in rows if request_id not in busy]
        return times[0] if times else None

    async def update(self, event: QueuedEvent) -> None:
        """Save what the worker decided for the event (attempts, next attempt, outcome)."""
        await asyncio.to_thread(
            self._run,
            "UPDATE events SET attempts = ?, setbacks = ?, next_attempt = ?, outcome = ?, "
            "last_result = ? WHERE request_id = ?",
            (
                event.attempts,
                event.setbacks,
                event.next_attempt,
                event.outcome,
                event.last_result,
                event.request_id,
            ),
        )

    async def remove(self, request_id: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM events WHERE request_id = ?", (request_id,))

    async def stats(self) -> tuple[int, float | None]:
        """(events queued, when the oldest was accepted)."""
        [(depth, oldest)] = await asyncio.to_thread(
            self._run, "SELECT COUNT(*), MIN(received) FROM events"
        )
        return int(depth), oldest

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await asyncio.to_thread(close)

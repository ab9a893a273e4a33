"""A journal of in-process invocations, so that a handler that ends the process cannot
put the daemon in a crash loop.

A `python` handler runs inside the daemon. One that calls `os._exit()`, or crashes the
interpreter, takes the daemon with it; after a restart the same records would be
delivered again, kill it again, and so on for ever. So each in-process invocation of an
ordered source is written to `<state_dir>/invocations.journal` before it starts and
crossed out when it ends. On start, an invocation still open was in flight when the
daemon died: when its records are delivered again, that counts as a failed attempt with
`Runtime.ExitError` (Lambda's error for a runtime that exited mid-invocation), so the
usual retry, bisect and on-failure destination rules end the loop (esm-reference.md 6).

The journal holds no record contents: the mapping, the request id, the attempt, and per
partition the first and last position of the records. Writes go to the page cache only
(no fsync): they must survive the process, not the machine. It is rewritten with only
the open entries once it grows past a megabyte, and removed on a clean stop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.invokers import error_document
from bridge.logs import batch_fields
from bridge.records import InvokeResult, Record

FILE_NAME = "invocations.journal"
COMPACT_BYTES = 1 << 20
# A record matches a span by partition alone when its source has no position that stays
# the same when it is delivered again (a folder's files).
ANY_POSITION = None


def _position_key(value: Any) -> Any:
    """A position as it is written to the journal and compared when read back: tuples
    as lists, integers as zero-padded text (DynamoDB's sequence numbers exceed what JSON
    numbers hold), so that order is kept."""
    if isinstance(value, tuple | list):
        return [_position_key(part) for part in value]
    if isinstance(value, int) and value >= 0:
        return f"{value:040d}"
    return value


@dataclass(frozen=True)
class InFlight:
    """An in-process invocation that had started and not ended when the daemon died."""

    mapping: str
    request_id: str
    attempt: int
    # partition -> [first, last] stable position of its records, or None (any).
    spans: dict[str, list[Any] | None]
    records: int

    def covers(self, record: Record, position: Any) -> bool:
        if record.partition not in self.spans:
            return False
        span = self.spans[record.partition]
        if span is None or position is ANY_POSITION:
            return True
        first, last = span
        try:
            return bool(first <= _position_key(position) <= last)
        except TypeError:
            return False

    def result(self) -> InvokeResult:
        """What the crashed attempt amounts to: a function error, as Lambda reports a
        runtime that exited during an invocation."""
        message = f"RequestId: {self.request_id} Error: Runtime exited without providing a reason"
        return InvokeResult(
            payload=error_document("Runtime.ExitError", message, self.request_id),
            request_id=self.request_id,
            function_error="Unhandled",
        )


class InvocationJournal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._descriptor: int | None = None
        self._open: dict[str, bytes] = {}
        self._size = 0
        self._log = structlog.get_logger("bridge.journal")

    def recover(self) -> list[InFlight]:
        """The invocations left open by the previous run (call before `open`)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return []
        started: dict[str, InFlight] = {}
        for line in text.splitlines():
            try:
                entry = loads(line)
            except JSONDecodeError:
                continue  # the line being written when the process died
            if not isinstance(entry, dict):
                continue
            if "end" in entry:
                started.pop(str(entry["end"]), None)
                continue
            try:
                started[entry["id"]] = InFlight(
                    mapping=str(entry["mapping"]),
                    request_id=str(entry["id"]),
                    attempt=int(entry["attempt"]),
                    spans=dict(entry["spans"]),
                    records=int(entry["records"]),
                )
            except (KeyError, TypeError, ValueError):
                continue
        return list(started.values())

    def open(self) -> None:
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._size = 0

    def started(
        self,
        mapping: str,
        request_id: str,
        attempt: int,
        spans: dict[str, list[Any] | None],
        records: int,
    ) -> None:
        entry = {"id": request_id, "mapping": mapping, "attempt": attempt, "spans": spans}
        try:
            line = dumps({**entry, "records": records}) + b"\n"
        except TypeError as exc:
            # A position the journal cannot hold: this invocation goes unprotected.
            self._log.warning("journal.write_failed", error=str(exc), mapping=mapping)
            return
        self._open[request_id] = line
        self._write(line)

    def ended(self, request_id: str) -> None:
        if self._open.pop(request_id, None) is None:
            return
        self._write(b'{"end":' + dumps(request_id) + b"}\n")
        if self._size > COMPACT_BYTES:
            self._compact()

    def _write(self, line: bytes) -> None:
        if self._descriptor is None:
            return
        try:
            os.write(self._descriptor, line)
        except OSError as exc:
            self._log.warning("journal.write_failed", error=str(exc), path=str(self.path))
            return
        self._size += len(line)

    def _compact(self) -> None:
        """Rewrite the journal with only the invocations still open (a few lines)."""
        if self._descriptor is None:
            return
        scratch = self.path.with_suffix(".tmp")
        try:
            scratch.write_bytes(b"".join(self._open.values()))
            os.replace(scratch, self.path)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._log.warning("journal.write_failed", error=str(exc), path=str(self.path))
            return
        os.close(self._descriptor)
        self._descriptor = descriptor
        self._size = sum(map(len, self._open.values()))

    def close(self) -> None:
        """On a clean stop nothing is open: the journal goes."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        if not self._open:
            self.path.unlink(missing_ok=True)


def spans_of(records: Sequence[Record], position_of: Any) -> dict[str, list[Any] | None]:
    """Per partition, the first and last stable position of `records` (in order)."""
    spans: dict[str, list[Any] | None] = {}
    for record in records:
        position = position_of(record)
        partition = record.partition
        if position is ANY_POSITION:
            spans[partition] = None
            continue
        key = _position_key(position)
        span = spans.get(partition, [key, key])
        if span is not None:
            span[1] = key
            spans[partition] = span
    return spans


class MappingJournal:
    """One mapping's view: write its invocations, and find its crashed ones."""

    def __init__(self, journal: InvocationJournal, mapping: str, crashed: list[InFlight]) -> None:
        self._journal = journal
        self.mapping = mapping
        self._crashed = crashed
        self._log = structlog.get_logger("bridge.journal").bind(mapping=mapping)

    @property
    def has_crashes(self) -> bool:
        return bool(self._crashed)

    def started(
        self, request_id: str, attempt: int, records: Sequence[Record], position_of: Any
    ) -> None:
        self._journal.started(
            self.mapping, request_id, attempt, spans_of(records, position_of), len(records)
        )

    def ended(self, request_id: str) -> None:
        self._journal.ended(request_id)

    def claim(self, records: Sequence[Record], position_of: Any) -> tuple[InFlight, int] | None:
        """The crashed invocation that `records` start with, and how many of them it
        covers (a prefix); it is then used up. None if the first record was in none."""
        first = records[0]
        position = position_of(first)
        for entry in self._crashed:
            if not entry.covers(first, position):
                continue
            covered = 1
            while covered < len(records) and entry.covers(
                records[covered], position_of(records[covered])
            ):
                covered += 1
            self._crashed.remove(entry)
            self._log.warning(
                "batch.crashed_before",
                **batch_fields(records[:covered]),
                attempt=entry.attempt,
                request_id=entry.request_id,
                reason="the daemon ended during this batch's invocation (the handler exited "
                "the process, or it was killed): counted as a failed attempt, Runtime.ExitError",
            )
            return entry, covered
        return None

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
partition the first and last position of the records. It is a memory-mapped file of
fixed slots, so writing it costs no system call; the pages survive the process (not the
machine, which needs no protection here). It is removed on a clean stop.
"""

from __future__ import annotations

import asyncio
import mmap
import os
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.invokers import error_document
from bridge.ops.logs import batch_fields
from bridge.records import InvokeResult, Record

FILE_NAME = "invocations.journal"
SLOT_BYTES = 16 * 1024
INITIAL_SLOTS = 64
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
    # Its handler called os._exit(): it ended the process, not just died with it.
    culprit: bool = False

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
    """The journal file, mapped into memory as slots of SLOT_BYTES: an invocation writes
    its entry into a free slot when it starts and zeroes the slot's first byte when it
    ends. These are memory writes, no system calls: the kernel keeps the pages when the
    process dies, and the event loop never gives up the GIL for the journal."""

    # The daemon's open journal, for the os._exit hook.
    active: InvocationJournal | None = None

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._map: mmap.mmap | None = None
        self._free: list[int] = []
        self._slots: dict[str, int] = {}
        self._texts: dict[int, bytes] = {}
        self._warned = False
        self._log = structlog.get_logger("bridge.pipeline.journal")

    def recover(self) -> list[InFlight]:
        """The invocations left open by the previous run (call before `open`)."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found: list[InFlight] = []
        for start in range(0, len(content), SLOT_BYTES):
            text = content[start : start + SLOT_BYTES].split(b"\0", 1)[0]
            if not text:
                continue
            try:
                entry = loads(text)
                found.append(
                    InFlight(
                        mapping=str(entry["mapping"]),
                        request_id=str(entry["id"]),
                        attempt=int(entry["attempt"]),
                        spans=dict(entry["spans"]),
                        records=int(entry["records"]),
                        culprit=entry.get("culprit") is True,
                    )
                )
            except (JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # being written when the process died
        return found

    def open(self) -> None:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(descriptor, SLOT_BYTES * INITIAL_SLOTS)
            self._map = mmap.mmap(descriptor, SLOT_BYTES * INITIAL_SLOTS)
        finally:
            os.close(descriptor)
        self._free = list(range(INITIAL_SLOTS - 1, -1, -1))
        InvocationJournal.active = self

    def started(
        self,
        mapping: str,
        request_id: str,
        attempt: int,
        spans: dict[str, list[Any] | None],
        records: int,
    ) -> None:
        if self._map is None:
            return
        entry = {"id": request_id, "mapping": mapping, "attempt": attempt, "spans": spans}
        try:
            text = dumps({**entry, "records": records})
        except TypeError as exc:
            self._unprotected(mapping, str(exc))
            return
        if len(text) >= SLOT_BYTES:
            self._unprotected(mapping, f"an entry of {len(text)} bytes (too many partitions)")
            return
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._write(slot, text)
        self._slots[request_id] = slot
        self._texts[slot] = text

    def _write(self, slot: int, text: bytes) -> None:
        assert self._map is not None
        start = slot * SLOT_BYTES
        self._map[start : start + len(text) + 1] = text + b"\0"

    def note_exit(self, request_id: str) -> None:
        """The handler of this invocation is ending the process (os._exit): mark it, so
        that after the restart it alone counts the failed attempt, not the invocations
        that only happened to run beside it."""
        slot = self._slots.get(request_id)
        text = self._texts.get(slot) if slot is not None else None
        if slot is None or text is None or len(text) + 16 >= SLOT_BYTES:
            return
        self._write(slot, text[:-1] + b',"culprit":true}')

    def ended(self, request_id: str) -> None:
        slot = self._slots.pop(request_id, None)
        if slot is None or self._map is None:
            return
        self._map[slot * SLOT_BYTES] = 0
        self._texts.pop(slot, None)
        self._free.append(slot)

    def _grow(self) -> None:
        """Twice the slots: more invocations are under way than ever before."""
        assert self._map is not None
        slots = len(self._map) // SLOT_BYTES
        self._map.resize(2 * slots * SLOT_BYTES)
        self._free.extend(range(2 * slots - 1, slots - 1, -1))

    def _unprotected(self, mapping: str, why: str) -> None:
        """This invocation goes without an entry: if the daemon dies during it, it does
        not count as an attempt. Said once."""
        if not self._warned:
            self._warned = True
            self._log.warning("journal.write_failed", mapping=mapping, error=why)

    def close(self) -> None:
        """On a clean stop nothing is open: the journal goes."""
        if InvocationJournal.active is self:
            InvocationJournal.active = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if not self._slots:
            self.path.unlink(missing_ok=True)


# The request id of the in-process invocation running in this thread or task, set by the
# `python` invoker around its handler.
RUNNING_INVOCATION: ContextVar[str | None] = ContextVar("running_invocation", default=None)
_exit = os._exit


def _exit_noting_the_invocation(status: int) -> NoReturn:
    """os._exit, called by a handler: mark its invocation in the journal first."""
    request_id = RUNNING_INVOCATION.get()
    journal = InvocationJournal.active
    if request_id is not None and journal is not None:
        journal.note_exit(request_id)
    _exit(status)


def install_exit_hook() -> None:
    """Have os._exit note which invocation called it (once per process)."""
    os._exit = _exit_noting_the_invocation


def charged(crashed: list[InFlight]) -> tuple[list[InFlight], list[InFlight]]:
    """The crashed invocations that count a failed attempt, and those that do not. When
    a handler ended the process itself, only its invocation counts; the others were
    bystanders. Otherwise (kill -9, a crash in native code, the OOM killer) nobody can
    tell, and every invocation in flight counts, as the issue of a crash loop demands."""
    culprits = [entry for entry in crashed if entry.culprit]
    if not culprits:
        return crashed, []
    return culprits, [entry for entry in crashed if not entry.culprit]


def spans_of(records: Sequence[Record], position_of: Any) -> dict[str, list[Any] | None]:
    """Per partition, the first and last stable position of `records` (in order)."""
    ends: dict[str, list[Record]] = {}
    for record in records:
        found = ends.get(record.partition)
        if found is None:
            ends[record.partition] = [record, record]
        else:
            found[1] = record
    spans: dict[str, list[Any] | None] = {}
    for partition, (first, last) in ends.items():
        start, end = position_of(first), position_of(last)
        if start is ANY_POSITION or end is ANY_POSITION:
            spans[partition] = None
        else:
            spans[partition] = [_position_key(start), _position_key(end)]
    return spans


class MappingJournal:
    """One mapping's view: write its invocations, and find its crashed ones."""

    def __init__(self, journal: InvocationJournal, mapping: str, crashed: list[InFlight]) -> None:
        self._journal = journal
        self.mapping = mapping
        self._crashed = crashed
        self._log = structlog.get_logger("bridge.pipeline.journal").bind(mapping=mapping)

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


async def open_journal(
    state_dir: Path, log: Any
) -> tuple[InvocationJournal, dict[str, list[InFlight]]]:
    """Open the daemon's journal, and the invocations the previous run died in, by
    mapping (each logged: charged as a failed attempt, or delivered again uncharged)."""
    journal = InvocationJournal(state_dir)
    counted, bystanders = charged(await asyncio.to_thread(journal.recover))
    crashed_by_mapping: dict[str, list[InFlight]] = {}
    for crashed in counted:
        crashed_by_mapping.setdefault(crashed.mapping, []).append(crashed)
        log.warning(
            "invocation.crashed",
            mapping=crashed.mapping,
            request_id=crashed.request_id,
            attempt=crashed.attempt,
            records=crashed.records,
            ended_the_process=crashed.culprit,
            reason="the daemon ended while this in-process invocation ran (its handler "
            "exited the process, or the daemon was killed); when its records come again "
            "it counts as a failed attempt (Runtime.ExitError)",
        )
    for bystander in bystanders:
        log.info(
            "invocation.interrupted",
            mapping=bystander.mapping,
            request_id=bystander.request_id,
            reason="another invocation's handler ended the process: delivered again "
            "without counting an attempt",
        )
    await asyncio.to_thread(journal.open)
    install_exit_hook()
    return journal, crashed_by_mapping

"""Driving a source the way a mapping does, for the connector tests: read until records
arrive, read on to see that nothing more comes, settle what was read.

Waits poll for up to `TIMEOUT` seconds; no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from bridge.protocols import Source
from bridge.records import Record

TIMEOUT = 10.0
# How long to keep reading after the expected records, to see that nothing else comes.
QUIET = 0.5


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


async def collect(source: Source, count: int, timeout: float = TIMEOUT) -> list[Record]:
    """Read until at least `count` records arrived, or `timeout` seconds passed."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await source.read())
    return records


async def collect_until(
    source: Source, done: Callable[[list[Record]], bool], timeout: float = TIMEOUT
) -> list[Record]:
    """Read until `done(records so far)` is true, or `timeout` seconds passed."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(records) and time.monotonic() < deadline:
        records.extend(await source.read())
    return records


async def quiet(source: Source, seconds: float = QUIET) -> list[Record]:
    """Whatever arrives within the next `seconds`."""
    records: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records.extend(await source.read())
    return records


async def settle(source: Source, records: Sequence[Record]) -> None:
    """Settle records of a stream, read in order: commit each partition's newest."""
    await source.commit({record.partition: record for record in records})

"""The `files` source never checkpoints a file past an event of it that is not settled,
even when the file changes meanwhile in a way that is saved without an event (a touch
that keeps the content, a removal `events:` does not emit).

Each test drives the source as the mapping does and then reads what the checkpoint store
holds once the source is closed (closing flushes the store, as a stop would; a crash
keeps at most that much)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from connectors.files.events import CREATED
from tests.connectors.files_support import (
    Folder,
    has_keys,
    started,
    summary,
    write,
)
from tests.connectors.reading import collect, collect_until, quiet, run, settle


def touch_in_the_past(path: Path) -> int:
    """A new mtime, old enough that the file counts as stable at once; returns it."""
    mtime_ns = time.time_ns() - 100 * 10**9
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return mtime_ns


def test_touch_while_the_create_is_in_flight_does_not_hide_the_create(tmp_path: Path) -> None:
    """A file's create event is in flight; the file is touched (same content). The touch
    is no event and saves nothing, so after a restart the create is delivered again."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            write(folder.inbox / "a.txt", b"content")
            assert summary(await collect(source, 1)) == {(CREATED, "a.txt")}
            touch_in_the_past(folder.inbox / "a.txt")
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            assert summary(records) == {(CREATED, "sentinel.txt")}
            await settle(source, records)
        assert set(await folder.checkpoints()) == {"sentinel.txt"}
        async with folder.source() as source:
            again = await collect_until(source, has_keys("a.txt"))
            again += await quiet(source)
            assert summary(again) == {(CREATED, "a.txt")}

    run(main)


def test_touch_while_in_flight_is_saved_once_the_create_settles(tmp_path: Path) -> None:
    """When the in-flight create settles, the touched state (newer) is saved in its place,
    with the create's sequencer; a restart reports nothing."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            write(folder.inbox / "a.txt", b"content")
            [created] = await collect(source, 1)
            touched_ns = touch_in_the_past(folder.inbox / "a.txt")
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            await settle(source, [created, *records])
        saved = (await folder.checkpoints())["a.txt"]
        assert saved["mtime_ns"] == touched_ns
        assert saved["sequencer"] == created.position
        async with folder.source() as source:
            assert await quiet(source) == []

    run(main)


def test_touch_of_a_settled_file_is_saved_at_once(tmp_path: Path) -> None:
    """A touch of a file with nothing in flight is saved without waiting for anything, and
    keeps the sequencer delivered for the file."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "a.txt", b"content")
            [created] = await collect(source, 1)
            await settle(source, [created])
            touched_ns = touch_in_the_past(folder.inbox / "a.txt")
            write(folder.inbox / "sentinel.txt")
            await collect_until(source, has_keys("sentinel.txt"))
        saved = await folder.checkpoints()
        assert saved["a.txt"]["mtime_ns"] == touched_ns
        assert saved["a.txt"]["sequencer"] == created.position
        assert "sentinel.txt" not in saved

    run(main)


def test_removal_not_emitted_while_in_flight_forgets_the_file_when_settled(
    tmp_path: Path,
) -> None:
    """With `events: ["s3:ObjectCreated:*"]`, a file deleted while its create is in flight
    is not checkpointed when the create settles: its state is the removal."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source(events=["s3:ObjectCreated:*"]) as source:
            await started(source)
            write(folder.inbox / "a.txt", b"content")
            [created] = await collect(source, 1)
            (folder.inbox / "a.txt").unlink()
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            await settle(source, [created, *records])
        assert set(await folder.checkpoints()) == {"sentinel.txt"}

    run(main)


def test_a_change_after_the_touch_supersedes_it(tmp_path: Path) -> None:
    """Create in flight, then a touch, then a real change: the change is reported, and
    once both events settle its state is the one saved."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            write(folder.inbox / "a.txt", b"first")
            [created] = await collect(source, 1)
            touch_in_the_past(folder.inbox / "a.txt")
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            write(folder.inbox / "a.txt", b"second, longer")
            [changed] = await collect(source, 1)
            assert changed.payload["s3"]["object"]["size"] == len(b"second, longer")
            await settle(source, [created, *records, changed])
        saved = (await folder.checkpoints())["a.txt"]
        assert saved["size"] == len(b"second, longer")
        assert saved["sequencer"] == changed.position

    run(main)

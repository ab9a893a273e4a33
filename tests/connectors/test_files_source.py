"""The `files` source on a real folder, with the real watchdog observer and SQLite store.

Each test drives the source the way the mapping does: `read()` until the expected
records arrive, `settle()` what was delivered, `close()`. Waits poll for up to
`TIMEOUT` seconds; no assertion depends on how long anything took. Where a test checks
that a change is NOT reported, it mostly writes a sentinel file afterwards and waits for
the sentinel's record first, so the ignored change had every chance to show up.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from bridge.records import Record
from connectors.files.events import CREATED, REMOVED, FileChange
from tests.connectors.files_support import (
    Folder,
    has_keys,
    name_of,
    obj,
    started,
    summary,
    write,
)
from tests.connectors.reading import collect, collect_until, quiet, run, settle

# -- creation ---------------------------------------------------------------------------


def test_new_file_is_reported_once_as_put(tmp_path: Path) -> None:
    """A new file yields exactly one ObjectCreated:Put with its key, size, MD5 eTag and
    the folder's name as the bucket."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            data = write(folder.inbox / "report.csv", b"a,b\n1,2\n")
            records = await collect(source, 1)
            records += await quiet(source)
            assert len(records) == 1, records
            record = records[0]
            assert name_of(record) == CREATED
            assert record.partition == "report.csv"
            assert obj(record)["key"] == "report.csv"
            assert obj(record)["size"] == len(data)
            assert obj(record)["eTag"] == hashlib.md5(data).hexdigest()
            assert obj(record)["sequencer"] == record.item_id
            assert record.payload["s3"]["bucket"]["name"] == "inbox"
            assert record.payload["s3"]["bucket"]["arn"] == "arn:aws:s3:::inbox"
            assert record.payload["s3"]["configurationId"] == "m"
            change = record.handle
            assert isinstance(change, FileChange)
            assert (change.key, change.size) == ("report.csv", len(data))

    run(main)


def test_bucket_setting_overrides_the_folder_name(tmp_path: Path) -> None:
    """`bucket:` is the bucket name (and ARN) written into records."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source(bucket="uploads") as source:
            write(folder.inbox / "a.txt")
            [record] = await collect(source, 1)
            assert record.payload["s3"]["bucket"]["name"] == "uploads"
            assert record.payload["s3"]["bucket"]["arn"] == "arn:aws:s3:::uploads"

    run(main)


def test_file_in_sub_folder_has_slash_separated_key(tmp_path: Path) -> None:
    """A file in a new sub-folder is reported with key "sub/name", even though the
    folder and the file appear together."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            write(folder.inbox / "sub" / "deeper" / "name.txt")
            write(folder.inbox / "sub" / "name.txt")
            records = await collect(source, 2)
            records += await quiet(source)
            assert summary(records) == {
                (CREATED, "sub/name.txt"),
                (CREATED, "sub/deeper/name.txt"),
            }
            assert len(records) == 2
            keys = {obj(record)["key"] for record in records}
            assert keys == {"sub/name.txt", "sub/deeper/name.txt"}

    run(main)


def test_key_with_space_is_url_encoded_but_partition_is_raw(tmp_path: Path) -> None:
    """S3 URL-encodes keys in events; the source's partition keeps the real file name."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "my dir" / "q1 report+final.csv")
            [record] = await collect(source, 1)
            assert record.partition == "my dir/q1 report+final.csv"
            assert obj(record)["key"] == "my+dir/q1+report%2Bfinal.csv"

    run(main)


def test_file_written_in_steps_is_reported_once_with_final_size(tmp_path: Path) -> None:
    """A file still being written (its mtime keeps moving) is reported once, after it has
    been still for `stable_after_seconds`, with its final size and MD5."""
    folder = Folder(tmp_path)
    chunks = [bytes([65 + index]) * 1000 for index in range(6)]

    async def main() -> None:
        async with folder.source(stable_after_seconds=0.3) as source:
            await started(source)

            async def writer() -> None:
                with (folder.inbox / "big.bin").open("wb") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
                        handle.flush()
                        await asyncio.sleep(0.1)

            writing = asyncio.create_task(writer())
            records: list[Record] = []
            while not writing.done():
                records.extend(await source.read())
            await writing
            records += await collect(source, 1 - len(records))
            records += await quiet(source)
            assert len(records) == 1, records
            data = b"".join(chunks)
            assert obj(records[0])["size"] == len(data)
            assert obj(records[0])["eTag"] == hashlib.md5(data).hexdigest()

    run(main)


def test_modified_file_is_reported_again(tmp_path: Path) -> None:
    """Rewriting a delivered file reports a new ObjectCreated:Put with the new size and
    eTag and a higher sequencer."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "a.txt", b"one")
            [first] = await collect(source, 1)
            await settle(source, [first])
            write(folder.inbox / "a.txt", b"second version")
            [second] = await collect(source, 1)
            assert name_of(second) == CREATED
            assert obj(second)["size"] == len(b"second version")
            assert obj(second)["eTag"] == hashlib.md5(b"second version").hexdigest()
            assert obj(second)["sequencer"] > obj(first)["sequencer"]

    run(main)


# -- removal ----------------------------------------------------------------------------


def test_deleting_a_delivered_file_reports_removal(tmp_path: Path) -> None:
    """Deleting a reported file yields ObjectRemoved:Delete with only key and sequencer,
    ordered after its creation."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            path = folder.inbox / "a b.txt"
            write(path)
            [created] = await collect(source, 1)
            await settle(source, [created])
            path.unlink()
            records = await collect(source, 1)
            records += await quiet(source)
            assert len(records) == 1, records
            [removed] = records
            assert name_of(removed) == REMOVED
            assert removed.partition == "a b.txt"
            assert obj(removed) == {"key": "a+b.txt", "sequencer": removed.item_id}
            assert obj(removed)["sequencer"] > obj(created)["sequencer"]
            assert removed.handle.removed

    run(main)


def test_deleting_a_file_never_reported_yields_nothing(tmp_path: Path) -> None:
    """A file that disappears before it was reported produces neither a creation nor a
    removal."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            path = folder.inbox / "short-lived.txt"
            write(path)
            path.unlink()
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "sentinel.txt")}

    run(main)


def test_events_setting_suppresses_removals(tmp_path: Path) -> None:
    """With `events: ["s3:ObjectCreated:*"]` deleting a delivered file reports nothing,
    and nothing is reported for it after a restart either."""
    folder = Folder(tmp_path)

    async def main() -> None:
        settings: dict[str, Any] = {"events": ["s3:ObjectCreated:*"]}
        async with folder.source(**settings) as source:
            write(folder.inbox / "a.txt")
            [created] = await collect(source, 1)
            await settle(source, [created])
            (folder.inbox / "a.txt").unlink()
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "sentinel.txt")}
            await settle(source, records)
        async with folder.source(**settings) as source:
            assert await quiet(source) == []

    run(main)


# -- what counts ------------------------------------------------------------------------


def test_patterns_and_ignore_patterns_select_keys(tmp_path: Path) -> None:
    """Only keys matching `patterns` (`*` crosses `/`) and none of `ignore_patterns`."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source(patterns=["*.csv"], ignore_patterns=["tmp/*"]) as source:
            await started(source)
            write(folder.inbox / "notes.txt")
            write(folder.inbox / "tmp" / "scratch.csv")
            write(folder.inbox / "sub" / "b.csv")
            write(folder.inbox / "a.csv")
            records = await collect_until(source, has_keys("a.csv", "sub/b.csv"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "a.csv"), (CREATED, "sub/b.csv")}
            assert len(records) == 2

    run(main)


def test_non_recursive_ignores_sub_folders(tmp_path: Path) -> None:
    """With `recursive: false` files in sub-folders are not reported, before or after
    the source starts."""
    folder = Folder(tmp_path)
    write(folder.inbox / "old" / "inner.txt")

    async def main() -> None:
        async with folder.source(recursive=False) as source:
            await started(source)
            write(folder.inbox / "sub" / "inner.txt")
            write(folder.inbox / "top.txt")
            records = await collect_until(source, has_keys("top.txt"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "top.txt")}

    run(main)


def test_symlinks_inside_are_followed_outside_are_not(tmp_path: Path) -> None:
    """A symlink to a file inside the folder is reported (with the target's content); one
    to a file outside the folder is not."""
    folder = Folder(tmp_path)
    outside = tmp_path / "outside.txt"
    write(outside, b"secret")

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            target = folder.inbox / "target.txt"
            data = write(target, b"inside")
            os.symlink(outside, folder.inbox / "link-out.txt")
            os.symlink(target, folder.inbox / "link-in.txt")
            records = await collect_until(source, has_keys("target.txt", "link-in.txt"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "target.txt"), (CREATED, "link-in.txt")}
            assert len(records) == 2
            for record in records:
                assert obj(record)["eTag"] == hashlib.md5(data).hexdigest()

    run(main)


def test_folder_moved_in_reports_each_file(tmp_path: Path) -> None:
    """A folder moved into the watched folder, with files already in it, reports every
    file under its new key."""
    folder = Folder(tmp_path)
    staging = tmp_path / "staging" / "batch"
    write(staging / "x.txt", b"x")
    write(staging / "deep" / "y.txt", b"yy")
    write(staging / "deep" / "z z.txt", b"zzz")

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            os.rename(staging, folder.inbox / "batch")
            expected = {"batch/x.txt", "batch/deep/y.txt", "batch/deep/z z.txt"}
            records = await collect_until(source, has_keys(*expected))
            records += await quiet(source)
            assert summary(records) == {(CREATED, key) for key in expected}
            assert len(records) == 3
            sizes = {record.partition: obj(record)["size"] for record in records}
            assert sizes == {"batch/x.txt": 1, "batch/deep/y.txt": 2, "batch/deep/z z.txt": 3}

    run(main)


def test_folder_moved_out_reports_removals(tmp_path: Path) -> None:
    """Moving a sub-folder out of the watched folder removes each delivered file in it."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "batch" / "x.txt")
            write(folder.inbox / "batch" / "deep" / "y.txt")
            created = await collect(source, 2)
            await settle(source, created)
            os.rename(folder.inbox / "batch", tmp_path / "elsewhere")
            records = await collect(source, 2)
            records += await quiet(source)
            assert summary(records) == {
                (REMOVED, "batch/x.txt"),
                (REMOVED, "batch/deep/y.txt"),
            }
            assert len(records) == 2

    run(main)


def test_state_dir_inside_the_folder_is_never_reported(tmp_path: Path) -> None:
    """The checkpoint database (and anything else) under a state_dir inside the watched
    folder is not reported, even while it is written."""
    folder = Folder(tmp_path, state_dir=tmp_path / "inbox" / ".state")

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            write(folder.state_dir / "other.txt")
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            await settle(source, records)
            records += await quiet(source, 1.2)  # the store flushes every 0.5 s
            assert summary(records) == {(CREATED, "sentinel.txt")}
        assert (folder.state_dir / "c.sqlite3").exists()
        async with folder.source() as source:
            assert await quiet(source) == []

    run(main)


def test_polling_observer_detects_files(tmp_path: Path) -> None:
    """`observer: polling` reports files created after the start."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source(observer="polling", poll_interval_seconds=0.1) as source:
            await started(source)
            data = write(folder.inbox / "polled.txt", b"polled")
            write(folder.inbox / "sub" / "polled.txt", b"also")
            records = await collect(source, 2)
            assert summary(records) == {(CREATED, "polled.txt"), (CREATED, "sub/polled.txt")}
            by_key = {record.partition: record for record in records}
            assert obj(by_key["polled.txt"])["eTag"] == hashlib.md5(data).hexdigest()
            (folder.inbox / "polled.txt").unlink()
            records = await collect(source, 1)
            assert summary(records) == {(REMOVED, "polled.txt")}

    run(main)


# -- restarts ---------------------------------------------------------------------------


def test_restart_reports_what_changed_while_down(tmp_path: Path) -> None:
    """After a restart the folder is compared with the settled state: a file created,
    one modified and one deleted while down are reported; an untouched one is not."""
    folder = Folder(tmp_path)
    for name in ("keep.txt", "modify.txt", "delete.txt"):
        write(folder.inbox / name, name.encode())

    async def main() -> None:
        async with folder.source() as source:
            records = await collect(source, 3)
            assert len(records) == 3
            await settle(source, records)

        # While the daemon is down.
        write(folder.inbox / "new.txt", b"new")
        write(folder.inbox / "modify.txt", b"modified, and longer")
        (folder.inbox / "delete.txt").unlink()

        async with folder.source() as source:
            records = await collect(source, 3)
            records += await quiet(source)
            assert summary(records) == {
                (CREATED, "new.txt"),
                (CREATED, "modify.txt"),
                (REMOVED, "delete.txt"),
            }
            assert len(records) == 3
            by_key = {record.partition: record for record in records}
            modified = obj(by_key["modify.txt"])
            assert modified["size"] == len(b"modified, and longer")
            assert modified["eTag"] == hashlib.md5(b"modified, and longer").hexdigest()
            await settle(source, records)

        async with folder.source() as source:
            assert await quiet(source) == []

    run(main)


def test_unsettled_records_are_reported_again_after_restart(tmp_path: Path) -> None:
    """Records read but not settled before close are reported again by the next source
    (creation, modification and removal alike); settled ones are not."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "settled.txt")
            write(folder.inbox / "modified.txt", b"v1")
            write(folder.inbox / "removed.txt")
            records = await collect(source, 3)
            await settle(source, records)
            write(folder.inbox / "unsettled.txt")
            write(folder.inbox / "modified.txt", b"version 2")
            (folder.inbox / "removed.txt").unlink()
            unsettled = await collect(source, 3)
            assert summary(unsettled) == {
                (CREATED, "unsettled.txt"),
                (CREATED, "modified.txt"),
                (REMOVED, "removed.txt"),
            }

        async with folder.source() as source:
            again = await collect(source, 3)
            again += await quiet(source)
            assert summary(again) == summary(unsettled)
            assert len(again) == 3
            by_key = {record.partition: record for record in again}
            assert obj(by_key["modified.txt"])["size"] == len(b"version 2")
            assert min(obj(record)["sequencer"] for record in again) > max(
                obj(record)["sequencer"] for record in unsettled
            )

    run(main)


def test_narrowed_settings_after_restart_report_no_removals(tmp_path: Path) -> None:
    """Files that stop counting because `patterns` or `recursive` changed between runs
    are still there: they are not reported as removed, and widening the settings again
    does not report them a second time."""
    folder = Folder(tmp_path)
    for key in ("a.csv", "b.txt", "sub/c.csv"):
        write(folder.inbox / key)

    async def main() -> None:
        async with folder.source() as source:
            records = await collect(source, 3)
            assert len(records) == 3
            await settle(source, records)
        async with folder.source(patterns=["*.csv"], recursive=False) as source:
            assert await quiet(source) == []
        async with folder.source() as source:
            assert await quiet(source) == []

    run(main)


def test_file_renamed_inside_the_folder(tmp_path: Path) -> None:
    """Renaming a delivered file reports the old key removed and the new key created,
    with the same content."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            data = write(folder.inbox / "draft.txt", b"content")
            created = await collect(source, 1)
            await settle(source, created)
            os.rename(folder.inbox / "draft.txt", folder.inbox / "final.txt")
            records = await collect(source, 2)
            records += await quiet(source)
            assert summary(records) == {(REMOVED, "draft.txt"), (CREATED, "final.txt")}
            assert len(records) == 2
            [final] = [record for record in records if record.partition == "final.txt"]
            assert obj(final)["eTag"] == hashlib.md5(data).hexdigest()

    run(main)


def test_rescan_finds_changes_the_observer_missed(tmp_path: Path) -> None:
    """With an observer that does not look again for an hour, the periodic full rescan
    (`rescan_interval_seconds`) still reports new and deleted files."""
    folder = Folder(tmp_path)
    write(folder.inbox / "before.txt")

    async def main() -> None:
        settings: dict[str, Any] = {
            "observer": "polling",
            "poll_interval_seconds": 3600,
            "rescan_interval_seconds": 0.3,
        }
        async with folder.source(**settings) as source:
            [before] = await collect(source, 1)
            await settle(source, [before])
            write(folder.inbox / "later.txt")
            (folder.inbox / "before.txt").unlink()
            records = await collect(source, 2)
            assert summary(records) == {(CREATED, "later.txt"), (REMOVED, "before.txt")}

    run(main)


# -- content, times and sequencers ---------------------------------------------------------


def test_touch_without_a_content_change_is_not_reported_again(tmp_path: Path) -> None:
    """A new mtime with the same bytes (touch, checkout, restore) is no new object; a
    real change of content is."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "same.txt", b"unchanged")
            [first] = await collect(source, 1)
            await settle(source, [first])
            later = time.time() + 5
            os.utime(folder.inbox / "same.txt", (later, later))
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            assert summary(records) == {(CREATED, "sentinel.txt")}
            write(folder.inbox / "same.txt", b"now different")
            [changed] = await collect(source, 1)
            assert obj(changed)["eTag"] == hashlib.md5(b"now different").hexdigest()

    run(main)


def test_event_time_is_when_the_file_arrived_not_its_old_mtime(tmp_path: Path) -> None:
    """A file moved in with an old mtime (cp -p, tar, mv) is stamped with the time it
    changed here (its ctime), so record age counts from its arrival."""
    folder = Folder(tmp_path)
    outside = tmp_path / "outside.txt"
    write(outside)
    old = time.time() - 7200
    os.utime(outside, (old, old))

    async def main() -> None:
        async with folder.source() as source:
            await started(source)
            before = time.time()
            os.rename(outside, folder.inbox / "moved.txt")
            [record] = await collect(source, 1)
            assert record.arrival >= before - 1
            assert record.payload["eventTime"] >= time.strftime("%Y-%m-%dT", time.gmtime(before))

    run(main)


def test_sequencers_continue_above_those_delivered_before_a_restart(tmp_path: Path) -> None:
    """Sequencers of a restarted source are above every sequencer it delivered before, even
    if the clock went back, so handlers that order by sequencer keep working."""
    folder = Folder(tmp_path)
    future = (time.time_ns() + 3600 * 10**9) * 1

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "a.txt")
            [record] = await collect(source, 1)
            record.position = future
            await settle(source, [record])
        async with folder.source() as source:
            write(folder.inbox / "b.txt")
            [later] = await collect(source, 1)
            assert later.position > future
            assert int(later.item_id, 16) == later.position

    run(main)


def test_vanished_folder_is_a_source_error_not_a_mass_removal(tmp_path: Path) -> None:
    """If the watched folder itself disappears (unmounted, moved away), the source fails
    and the mapping reconnects; it does not report every known file as removed."""
    from bridge.errors import SourceError

    folder = Folder(tmp_path)
    folder.inbox.mkdir()

    async def main() -> None:
        async with folder.source(rescan_interval_seconds=0.2, create_path=False) as source:
            write(folder.inbox / "kept.txt")
            [record] = await collect(source, 1)
            await settle(source, [record])
            os.rename(folder.inbox, tmp_path / "moved-away")
            try:
                records = await collect(source, 1, timeout=3)
            except SourceError as exc:
                assert "cannot scan" in str(exc)
            else:
                raise AssertionError(f"expected a SourceError, got {records}")

    run(main)

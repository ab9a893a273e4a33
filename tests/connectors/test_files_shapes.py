"""File names and folder shapes that must never stop a `files` source: each file is
settled on its own (delivered, or reported with the reason and skipped) and the rest of
the folder goes on. Each test ends with a sentinel file that must still arrive."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import stat
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote_plus

from structlog.testing import capture_logs

# Imported here, not when a source is built: the unprivileged child below cannot read
# a checkout that only root may enter (as `mktemp -d` makes it).
import connectors.files.source  # noqa: F401
from connectors.files.events import CREATED, REMOVED
from connectors.files.keys import shown_key
from tests.connectors.files_support import (
    Folder,
    has_keys,
    obj,
    summary,
    write,
)
from tests.connectors.reading import collect, collect_until, quiet, run, settle


def as_unprivileged(tmp_path: Path, body: Callable[[Path], None]) -> None:
    """Run `body` on a folder of its own; as root (whom file permissions do not stop),
    in a forked child that has become `nobody`, on a folder it owns outside pytest's
    (which `nobody` cannot enter), so that unreadable files are unreadable."""
    if os.geteuid() != 0:
        body(tmp_path)
        return
    nobody = pwd.getpwnam("nobody")
    workspace = Path(tempfile.mkdtemp(prefix="lambda-bridge-unprivileged-"))
    try:
        os.chown(workspace, nobody.pw_uid, nobody.pw_gid)
        child = os.fork()
        if child == 0:
            status = 1
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                body(workspace)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged run failed (see stderr)"
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


ODD_NAMES = [
    b"new\nline.txt",
    b"carriage\rreturn.txt",
    b"100%.txt",
    b"%FF.txt",
    b"a+b.txt",
    b"  spaced  name .txt",
    b"tab\tand\\backslash.txt",
    b"x" * 251 + b".txt",
    b"bad-\xff\xfe.txt",
    b"dir-\xff/inside.txt",
    b"caf\xc3\xa9.txt",
]


def make(folder: Path, raw: bytes, data: bytes = b"data") -> str:
    """Create the file `raw` (bytes, may hold `/`) under `folder`; return its key."""
    path = os.fsencode(folder) + b"/" + raw
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return os.fsdecode(raw)


def test_odd_names_are_each_delivered_once(tmp_path: Path) -> None:
    """Newlines, `%`, `+`, spaces, a 255-byte name, names and folders that are not UTF-8:
    each file is delivered, its event key decodes back to the exact name, and after a
    restart none is delivered again."""
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    keys = [make(folder.inbox, raw) for raw in ODD_NAMES]

    async def main() -> None:
        async with folder.source() as source:
            records = await collect(source, len(keys))
            records += await quiet(source)
            assert sorted(record.partition for record in records) == sorted(map(shown_key, keys))
            decoded = {
                unquote_plus(obj(record)["key"], errors="surrogateescape") for record in records
            }
            assert decoded == set(keys)
            await settle(source, records)
        async with folder.source() as source:
            write(folder.inbox / "sentinel.txt")
            records = await collect_until(source, has_keys("sentinel.txt"))
            records += await quiet(source)
            assert summary(records) == {(CREATED, "sentinel.txt")}

    run(main)


def test_removal_of_a_name_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    """Deleting a delivered file whose name is not UTF-8 reports its removal under the
    same encoded key."""
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    key = make(folder.inbox, b"gone-\xff.txt")

    async def main() -> None:
        async with folder.source() as source:
            [created] = await collect(source, 1)
            await settle(source, [created])
            os.unlink(os.path.join(folder.inbox, key))
            [removed] = await collect(source, 1)
            assert summary([removed]) == {(REMOVED, "gone-\\xff.txt")}
            assert obj(removed)["key"] == "gone-%FF.txt"

    run(main)


@contextlib.contextmanager
def unix_socket(path: Path) -> Iterator[None]:
    """A listening unix socket at `path` (bound from its folder: socket paths are short)."""
    with socket.socket(socket.AF_UNIX) as server:
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            server.bind(path.name)
        finally:
            os.chdir(cwd)
        yield


def test_fifos_sockets_and_devices_are_not_files(tmp_path: Path) -> None:
    """A fifo, a unix socket, a character device (where it may be made) and a symlink to
    the fifo are skipped without waiting on them; regular files around them arrive."""
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    os.mkfifo(folder.inbox / "pipe")
    os.symlink("pipe", folder.inbox / "link-to-pipe")
    with contextlib.suppress(PermissionError):
        os.mknod(folder.inbox / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    write(folder.inbox / "before.txt")

    async def main() -> None:
        with unix_socket(folder.inbox / "sock"):
            async with folder.source() as source:
                records = await collect_until(source, has_keys("before.txt"))
                records += await quiet(source)
                assert summary(records) == {(CREATED, "before.txt")}
                os.mkfifo(folder.inbox / "later-pipe")
                write(folder.inbox / "sentinel.txt")
                records = await collect_until(source, has_keys("sentinel.txt"))
                records += await quiet(source)
                assert summary(records) == {(CREATED, "sentinel.txt")}

    run(main)


def test_symlink_loop_is_reported_and_skipped(tmp_path: Path) -> None:
    """Two symlinks pointing at each other cannot be looked at: they are logged with the
    reason and skipped, and the folder goes on."""
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    os.symlink("loop-b", folder.inbox / "loop-a")
    os.symlink("loop-a", folder.inbox / "loop-b")
    write(folder.inbox / "sentinel.txt")

    async def main() -> None:
        with capture_logs() as logs:
            async with folder.source() as source:
                records = await collect_until(source, has_keys("sentinel.txt"))
                records += await quiet(source)
                assert summary(records) == {(CREATED, "sentinel.txt")}
        unreadable = {entry["key"] for entry in logs if entry["event"] == "files.unreadable"}
        assert unreadable == {"loop-a", "loop-b"}

    run(main)


def test_file_replaced_by_a_folder_of_the_same_name(tmp_path: Path) -> None:
    """A delivered file replaced by a folder of that name is reported removed, and the
    files in the folder created."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "thing", b"a file")
            created = await collect(source, 1)
            await settle(source, created)
            (folder.inbox / "thing").unlink()
            write(folder.inbox / "thing" / "inner.txt")
            records = await collect(source, 2)
            records += await quiet(source)
            assert summary(records) == {(REMOVED, "thing"), (CREATED, "thing/inner.txt")}

    run(main)


def test_folder_replaced_by_a_file_of_the_same_name(tmp_path: Path) -> None:
    """A folder of delivered files replaced by a file of that name: the files are
    reported removed and the new file created."""
    folder = Folder(tmp_path)

    async def main() -> None:
        async with folder.source() as source:
            write(folder.inbox / "thing" / "inner.txt")
            created = await collect(source, 1)
            await settle(source, created)
            (folder.inbox / "thing" / "inner.txt").unlink()
            (folder.inbox / "thing").rmdir()
            write(folder.inbox / "thing", b"now a file")
            records = await collect(source, 2)
            records += await quiet(source)
            assert summary(records) == {(REMOVED, "thing/inner.txt"), (CREATED, "thing")}

    run(main)


def deep_folder(root: Path, levels: int) -> None:
    """Nest `levels` folders of 250-byte names under `root` (relative to each other, so
    the path may outgrow PATH_MAX) with a file at the bottom."""
    descriptor = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d" * 250, dir_fd=descriptor)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        file = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
        os.close(file)
    finally:
        os.close(descriptor)


def test_path_longer_than_path_max_is_reported_and_skipped(tmp_path: Path) -> None:
    """A folder nested past PATH_MAX cannot be read by path: it is logged with the reason,
    the files reachable are delivered, and nothing is reported removed."""
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    deep_folder(folder.inbox, 18)
    write(folder.inbox / "sentinel.txt")

    async def main() -> None:
        with capture_logs() as logs:
            async with folder.source(rescan_interval_seconds=0.2) as source:
                records = await collect_until(source, has_keys("sentinel.txt"))
                records += await quiet(source, 1.0)
                assert summary(records) == {(CREATED, "sentinel.txt")}
        problems = [
            entry
            for entry in logs
            if entry["event"] in ("files.folder_unreadable", "files.unreadable")
        ]
        assert problems
        assert all(entry["error"] == "File name too long" for entry in problems)

    run(main)


def test_unreadable_file_is_skipped_until_it_can_be_read(tmp_path: Path) -> None:
    """A file without read permission is reported once and skipped; the others arrive;
    once it is readable it is delivered. (Run as `nobody` when the tests run as root.)"""
    as_unprivileged(tmp_path, unreadable_file)


def unreadable_file(tmp_path: Path) -> None:
    folder = Folder(tmp_path)
    folder.inbox.mkdir()
    write(folder.inbox / "locked.txt")
    os.chmod(folder.inbox / "locked.txt", 0)

    async def main() -> None:
        with capture_logs() as logs:
            async with folder.source() as source:
                write(folder.inbox / "sentinel.txt")
                records = await collect_until(source, has_keys("sentinel.txt"))
                assert summary(records) == {(CREATED, "sentinel.txt")}
                os.chmod(folder.inbox / "locked.txt", 0o644)
                records = await collect(source, 1)
                assert summary(records) == {(CREATED, "locked.txt")}
        [logged] = [entry for entry in logs if entry["event"] == "files.unreadable"]
        assert logged["key"] == "locked.txt"
        assert logged["error"] == "Permission denied"

    run(main)


def test_unreadable_sub_folder_is_skipped_and_its_files_are_not_removed(tmp_path: Path) -> None:
    """A sub-folder that cannot be read is reported and skipped: its delivered files are
    not reported removed, the rest of the folder goes on, and once it is readable its new
    files arrive. (Run as `nobody` when the tests run as root.)"""
    as_unprivileged(tmp_path, unreadable_sub_folder)


def unreadable_sub_folder(tmp_path: Path) -> None:
    folder = Folder(tmp_path)
    write(folder.inbox / "closed" / "known.txt")

    async def main() -> None:
        async with folder.source(rescan_interval_seconds=0.2) as source:
            created = await collect(source, 1)
            await settle(source, created)
            write(folder.inbox / "closed" / "new.txt")
            os.chmod(folder.inbox / "closed", 0)
            with capture_logs() as logs:
                write(folder.inbox / "sentinel.txt")
                records = await collect_until(source, has_keys("sentinel.txt"))
                records += await quiet(source, 1.0)
                assert summary(records) == {(CREATED, "sentinel.txt")}
            [logged] = [entry for entry in logs if entry["event"] == "files.folder_unreadable"]
            assert logged["folder"] == "closed"
            os.chmod(folder.inbox / "closed", 0o755)
            records = await collect(source, 1)
            assert summary(records) == {(CREATED, "closed/new.txt")}

    run(main)


def test_watched_folder_whose_real_name_is_not_utf8(tmp_path: Path) -> None:
    """A watched folder reached through a symlink to a folder named with bytes that are
    not UTF-8 works: files are delivered, FilesBatchInfo names the folder as text, and
    the checkpoints hold (a restart delivers nothing again)."""
    real = Path(os.fsdecode(os.fsencode(tmp_path) + b"/real-\xff"))
    real.mkdir()
    folder = Folder(tmp_path)
    folder.inbox.symlink_to(real)
    write(folder.inbox / "a.txt")

    async def main() -> None:
        async with folder.source() as source:
            records = await collect(source, 1)
            assert summary(records) == {(CREATED, "a.txt")}
            _, info = source.formatter.batch_info(records)
            assert info["path"].endswith("/real-\\xff")
            await settle(source, records)
        assert set(await folder.checkpoints()) == {"a.txt"}
        async with folder.source() as source:
            assert await quiet(source) == []

    run(main)

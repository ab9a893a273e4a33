"""Looking at the watched folder: which paths count, their size and mtime, their MD5.

Keys are paths relative to the folder with `/` separators. Symlinks are followed only
if they resolve to a regular file inside the folder; symlinked folders are not entered
(what they hold is reported under its real path, or is outside the folder). Every look
goes through `confined`: folders are opened one by one from the watched folder without
following a symlink, so nothing outside it is ever examined, whatever the watcher reports.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.files.confined import Refused, key_parts, lstat_inside, open_inside, opened_folder

CHUNK_BYTES = 1 << 20


_GONE = (FileNotFoundError, NotADirectoryError)


class FolderVanished(FileNotFoundError):
    """The watched folder itself is gone: its files are unknown, not removed."""


@dataclass(frozen=True, slots=True)
class FileSig:
    size: int
    mtime_ns: int
    ctime_ns: int = 0

    def same_content_stamp(self, size: int | None, mtime_ns: int | None) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns


def _md5_of_descriptor(descriptor: int) -> str | None:
    """The MD5 of an open regular file; None if what was opened is not a regular file
    (a fifo or device put in its place is opened without blocking and let go)."""
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        return None
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := os.read(descriptor, CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Scanned:
    """What a scan found: every file that counts, with its size and times, or None for a
    file that is there but could not be looked at (it is examined, and reported unreadable,
    rather than taken for removed); and the sub-folders that could not be read, with why."""

    files: dict[str, FileSig | None] = field(default_factory=dict)
    unreadable_folders: dict[str, str] = field(default_factory=dict)


class FolderView:
    def __init__(
        self,
        root: Path,
        *,
        recursive: bool = True,
        patterns: Iterable[str] = (),
        ignore_patterns: Iterable[str] = (),
        excluded: Iterable[Path] = (),
    ) -> None:
        self.root = root.resolve()
        self._root_text = str(self.root)
        self.recursive = recursive
        self._patterns = list(patterns)
        self._ignore = list(ignore_patterns)
        self._excluded = [str(path.resolve()) for path in excluded]

    def _inside(self, real: str, base: str) -> bool:
        return real == base or real.startswith(base + os.sep)

    def _excluded_path(self, real: str) -> bool:
        return any(self._inside(real, excluded) for excluded in self._excluded)

    def accepts(self, key: str) -> bool:
        if not self.recursive and "/" in key:
            return False
        if self._patterns and not any(
            fnmatch.fnmatchcase(key, pattern) for pattern in self._patterns
        ):
            return False
        return not any(fnmatch.fnmatchcase(key, pattern) for pattern in self._ignore)

    def counts(self, key: str) -> bool:
        """Whether a key (one checkpointed by an earlier run, say) falls under the current
        settings: recursion, patterns and excluded folders."""
        return self.accepts(key) and not self._excluded_path(str(self.root / key))

    def folder_key_of(self, path: str) -> str | None:
        """The key prefix of a sub-folder reported by the watcher, or None if it does not count."""
        absolute = os.path.abspath(path)
        if not self._inside(absolute, self._root_text) or self._excluded_path(absolute):
            return None
        if absolute == self._root_text:
            return ""
        return self._key_text(absolute)

    def key_of(self, path: str) -> str | None:
        """The key of an absolute path reported by the watcher, or None if it does not count."""
        absolute = os.path.abspath(path)
        if not self._inside(absolute, self._root_text) or absolute == self._root_text:
            return None
        if self._excluded_path(absolute):
            return None
        key = self._key_text(absolute)
        return key if self.accepts(key) else None

    def stat(self, key: str) -> FileSig | None:
        """Size and times of the regular file at `key`; None if it is gone or does not count.

        Errors other than "not found" (permissions, I/O) are raised: a file that cannot be
        looked at is not a deleted file.
        """
        info = self._lstat(key)
        if info is not None and stat.S_ISLNK(info.st_mode):
            target = self._link_target(key)
            info = None if target is None else self._lstat(target)
            if info is not None and stat.S_ISLNK(info.st_mode):
                return None
        if info is None or not stat.S_ISREG(info.st_mode):
            return None
        return FileSig(info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def md5(self, key: str) -> str | None:
        """The MD5 of the file at `key`; None if it is no longer a regular file that counts."""
        try:
            try:
                descriptor = open_inside(self._root_text, key)
            except Refused as refused:
                target = self._link_target(key) if refused.last_part else None
                if target is None:
                    return None
                descriptor = open_inside(self._root_text, target)
        except Refused:
            return None
        except _GONE:
            self._check_root()
            return None
        try:
            return _md5_of_descriptor(descriptor)
        finally:
            os.close(descriptor)

    def _lstat(self, key: str) -> os.stat_result | None:
        try:
            return lstat_inside(self._root_text, key)
        except Refused:
            return None
        except _GONE:
            self._check_root()
            return None

    def _check_root(self) -> None:
        if not os.path.isdir(self._root_text):
            raise FolderVanished(f"{self._root_text} is gone")

    def _link_target(self, key: str) -> str | None:
        """The key a symlink at `key` resolves to, if that lies inside the folder and counts.

        A symlink that cannot be resolved (a loop) raises: it is reported, not skipped.
        """
        try:
            real = os.path.realpath(os.path.join(self._root_text, key), strict=True)
        except _GONE:
            return None
        if not self._inside(real, self._root_text) or real == self._root_text:
            return None
        if self._excluded_path(real):
            return None
        return self._key_text(real)

    def scan(self, below: str | None = None) -> Scanned:
        """Every file that counts, now; only under the folder `below` (a key) if given.

        A sub-folder that vanished during the scan holds nothing; one that cannot be read
        (permissions, a path too long) is listed as unreadable; one that turned into a
        symlink is not entered. The watched folder missing or unreadable raises OSError
        rather than looking empty.
        """
        found = Scanned()
        pending = [below or ""]
        while pending:
            folder = pending.pop()
            try:
                parts = key_parts(folder)
                with (
                    opened_folder(self._root_text, parts) as descriptor,
                    os.scandir(descriptor) as listing,
                ):
                    for entry in listing:
                        self._take(folder, entry, found, pending)
            except Refused:
                continue
            except _GONE:
                if not folder:
                    raise FolderVanished(f"{self._root_text} is gone") from None
                continue
            except OSError as exc:
                if not folder:
                    raise
                found.unreadable_folders[folder] = exc.strerror or str(exc)
        return found

    def _take(
        self, folder: str, entry: os.DirEntry[str], found: Scanned, pending: list[str]
    ) -> None:
        key = f"{folder}/{entry.name}" if folder else entry.name
        if self._excluded and self._excluded_path(os.path.join(self._root_text, key)):
            return
        try:
            info = entry.stat(follow_symlinks=False)
        except _GONE:
            return
        except OSError:
            info = None  # examined, and reported, as a file that cannot be looked at
        if info is not None and stat.S_ISDIR(info.st_mode):
            if self.recursive:
                pending.append(key)
            return
        if not self.accepts(key):
            return
        if info is not None and stat.S_ISREG(info.st_mode):
            found.files[key] = FileSig(info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            return
        try:
            sig = self.stat(key)
        except FolderVanished:
            raise
        except OSError:
            found.files[key] = None
            return
        if sig is not None:
            found.files[key] = sig

    def _key_text(self, path: str) -> str:
        return os.path.relpath(path, self._root_text).replace(os.sep, "/")

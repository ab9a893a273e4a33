"""Looking at the watched folder: which paths count, their size and mtime, their MD5.

Keys are paths relative to the folder with `/` separators. Symlinks are followed only
if they resolve to a regular file inside the folder; symlinked folders are not entered
(what they hold is reported under its real path, or is outside the folder).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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


def md5_of(path: str) -> str | None:
    """The MD5 of a regular file's content; None if the path is no longer a regular file.

    Opened without blocking, so a fifo or device put in the file's place meanwhile is
    looked at and let go, never waited on.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := os.read(descriptor, CHUNK_BYTES):
            digest.update(chunk)
    finally:
        os.close(descriptor)
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

    def path_of(self, key: str) -> str:
        return os.path.join(self._root_text, key)

    def stat(self, key: str) -> FileSig | None:
        """Size and times of the regular file at `key`; None if it is gone or does not count.

        Errors other than "not found" (permissions, I/O) are raised: a file that cannot be
        looked at is not a deleted file.
        """
        path = os.path.join(self._root_text, key)
        try:
            info = os.stat(path, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(path)
                if not self._inside(real, self._root_text) or self._excluded_path(real):
                    return None
                info = os.stat(real)
        except _GONE:
            if not os.path.isdir(self._root_text):
                raise FolderVanished(f"{self._root_text} is gone") from None
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return FileSig(info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def scan(self, below: str | None = None) -> Scanned:
        """Every file that counts, now; only under the folder `below` (a key) if given.

        A sub-folder that vanished during the scan holds nothing; one that cannot be read
        (permissions, a path too long) is listed as unreadable. The watched folder
        missing or unreadable raises OSError rather than looking empty.
        """
        found = Scanned()
        pending = [os.path.join(self._root_text, below) if below else self._root_text]
        while pending:
            folder = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except _GONE:
                if folder == self._root_text:
                    raise FolderVanished(f"{self._root_text} is gone") from None
                continue
            except OSError as exc:
                if folder == self._root_text:
                    raise
                found.unreadable_folders[self._key_text(folder)] = exc.strerror or str(exc)
                continue
            for entry in entries:
                self._take(entry, found, pending)
        return found

    def _take(self, entry: os.DirEntry[str], found: Scanned, pending: list[str]) -> None:
        if self._excluded_path(entry.path):
            return
        try:
            if entry.is_dir(follow_symlinks=False):
                if self.recursive:
                    pending.append(entry.path)
                return
        except _GONE:
            return
        except OSError:
            pass  # examined, and reported, as a file that cannot be looked at
        key = self._key_text(entry.path)
        if not self.accepts(key):
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

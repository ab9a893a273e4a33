"""Opening paths below the watched folder without ever leaving it.

Every folder on the way to a file is opened relative to its parent's descriptor with
`O_NOFOLLOW`, starting from the folder itself, so a folder swapped for a symlink between
a scan and a look (or one the watcher walked into) is refused, not followed: nothing
outside the folder is examined, hashed or reported, whatever the watcher says.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC

# A path handlers could not open by name is not delivered, even though a descriptor
# walk could reach it: it is reported as the system would report it.
PATH_MAX = 4096

# What `O_NOFOLLOW` answers for a symlink: ELOOP for the last part, ENOTDIR for a folder.
NOT_FOLLOWED = frozenset({errno.ELOOP, errno.ENOTDIR})


class Refused(Exception):
    """A part of the path is a symlink, or the key names no place inside the folder.

    `last_part` tells a symlink in the file's own place (which may be followed, once
    resolved inside the folder) from a symlinked folder on the way (which never is).
    """

    def __init__(self, key: str, *, last_part: bool = False) -> None:
        super().__init__(key)
        self.last_part = last_part


def key_parts(key: str) -> list[str]:
    parts = key.split("/") if key else []
    if any(part in ("", ".", "..") for part in parts):
        raise Refused(key)
    return parts


def check_length(root: str, parts: Sequence[str]) -> None:
    length = len(os.fsencode(root)) + sum(len(os.fsencode(part)) + 1 for part in parts)
    if length >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


@contextmanager
def opened_folder(root: str, parts: Sequence[str]) -> Iterator[int]:
    """A descriptor of the folder `root/parts...`, reached without following a symlink.

    Raises Refused for a symlinked (or non-folder) part, FileNotFoundError for one gone,
    and ENAMETOOLONG for a path longer than PATH_MAX.
    """
    check_length(root, parts)
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                inner = os.open(part, FOLDER_FLAGS, dir_fd=descriptor)
            except OSError as exc:
                if exc.errno in NOT_FOLLOWED:
                    raise Refused(part) from None
                raise
            os.close(descriptor)
            descriptor = inner
        yield descriptor
    finally:
        os.close(descriptor)


def lstat_inside(root: str, key: str) -> os.stat_result:
    """`lstat` of the entry at `key`, every folder on the way reached without a symlink."""
    parts = key_parts(key)
    if not parts:
        raise Refused(key)
    check_length(root, parts)
    with opened_folder(root, parts[:-1]) as folder:
        return os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)


def open_inside(root: str, key: str) -> int:
    """A read descriptor of the file at `key` (never blocking on a fifo or device).

    Raises Refused if the file or a folder on its way is a symlink.
    """
    parts = key_parts(key)
    if not parts:
        raise Refused(key)
    check_length(root, parts)
    with opened_folder(root, parts[:-1]) as folder:
        try:
            return os.open(parts[-1], FILE_FLAGS, dir_fd=folder)
        except OSError as exc:
            if exc.errno in NOT_FOLLOWED:
                raise Refused(key, last_part=exc.errno == errno.ELOOP) from None
            raise

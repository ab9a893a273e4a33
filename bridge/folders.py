"""Offline checks of the folders a config names (state_dir, a file destination, a files
source): whether they are folders, or can be created, and can be used; and creating the
private ones."""

from __future__ import annotations

import os
from pathlib import Path


def folder_problem(path: Path, *, create: bool = True, write: bool = True) -> str | None:
    """Why `path` cannot serve as a folder the daemon reads (and with `write`, writes),
    creating it if `create`; None if it can. Only looks: nothing is created."""
    shown = repr(str(path))
    needed = os.R_OK | os.X_OK | (os.W_OK if write else 0)
    try:
        if path.exists():
            if not path.is_dir():
                return f"{shown} is not a folder"
            if not os.access(path, needed):
                return f"{shown} is not {'writable' if write else 'readable'}"
            return None
        if not create:
            return f"{shown} does not exist"
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{shown} cannot be created: {str(parent)!r} is a file"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{shown} cannot be created: {str(parent)!r} is not writable"
    except OSError as exc:
        return f"{shown} cannot be used: {exc.strerror or exc}"
    return None


def make_private_folder(path: Path) -> None:
    """Create `path` (and missing parents) readable by the daemon's user only: it will
    hold whole record payloads. An existing folder keeps the mode its owner gave it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def create_private_file(path: Path) -> None:
    """Create `path` as an empty file of mode 0600 unless it exists, before a library
    (SQLite) creates it with the umask's mode. Never follows a symlink in its place."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    os.close(os.open(path, flags, 0o600))

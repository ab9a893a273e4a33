"""Laying a deployment package or a layer out on disk, safely.

A source is a .zip or a folder. `scan_source` reads it without writing anything (a zip's
central directory, a folder's listing) and reports what is unsafe about it; `lay_into`
writes it into a tree, over what earlier layers put there (Lambda extracts layers in order
into /opt, so a later layer's file replaces an earlier one's). Nothing is ever written or
read outside the tree and the source: members with absolute paths or `..`, device files and
FIFOs are refused, symlinks are kept only when they resolve inside, a file is never written
through a symlink, and the bytes written are bounded by a budget (zip bombs included).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20
SYMLINK_TARGET_MAX = 4096  # PATH_MAX: a longer link target is not a link


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class UnsafeSource(Exception):
    """A member of a package or a layer that cannot be laid out safely."""


@dataclass
class Scan:
    """What an offline look at a source found."""

    kind: str  # "zip", "folder", or "missing" / "other" when it is neither
    size: int = 0  # bytes of the files once unpacked
    digest: str = ""  # content key: sha256 of the zip's bytes, or of the folder's listing
    modes: dict[str, int] = field(default_factory=dict)  # relative posix path -> st_mode
    problems: list[str] = field(default_factory=list)


def scan_source(path: Path, *, digest: bool = True) -> Scan:
    """Look at `path` without unpacking it (blocking: run it in a thread)."""
    if not path.exists():
        return Scan("missing", problems=[f"{str(path)!r} does not exist"])
    if path.is_dir():
        return _scan_folder(path)
    if not path.is_file():
        return Scan("other", problems=[f"{str(path)!r} is neither a .zip file nor a folder"])
    if not zipfile.is_zipfile(path):
        return Scan("other", problems=[f"{str(path)!r} is not a zip file (nor a folder)"])
    return _scan_zip(path, digest)


def lay_into(path: Path, scan: Scan, root: Path, budget: int) -> int:
    """Write the source scanned as `scan` into the folder `root`; return the bytes written.
    Raises UnsafeSource for anything unsafe and when more than `budget` bytes would be written."""
    root_real = os.path.realpath(root)
    if scan.kind == "zip":
        written = _extract_zip(path, root, root_real, budget)
    else:
        written = _copy_folder(path, root, root_real, budget)
    check_links(root)
    return written


def check_links(root: Path) -> None:
    """Raise UnsafeSource if any symlink under `root` resolves outside it."""
    root_real = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            if os.path.islink(entry) and not _inside(os.path.realpath(entry), root_real):
                relative = os.path.relpath(entry, root)
                raise UnsafeSource(f"symlink {relative!r} leads outside the package")


def member_problem(name: str, mode: int, flags: int = 0) -> str | None:
    """Why the zip member `name` (with unix `mode`) cannot be unpacked, or None."""
    if name.startswith("/") or name.startswith("\\"):
        return f"member {name!r} has an absolute path"
    if ".." in name.split("/"):
        return f"member {name!r} leads outside the package (`..`)"
    if flags & 0x1:
        return f"member {name!r} is encrypted"
    kind = stat.S_IFMT(mode)
    if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
        return f"member {name!r} is a device file, FIFO or socket"
    return None


def link_problem(name: str, target: str) -> str | None:
    """Why a symlink `name` -> `target` (both relative to the root) is unsafe, or None."""
    if not target or "\0" in target or len(target) > SYMLINK_TARGET_MAX:
        return f"symlink {name!r} has no valid target"
    if target.startswith("/"):
        return f"symlink {name!r} points to the absolute path {target!r}"
    resolved = os.path.normpath(os.path.join(os.path.dirname(name.rstrip("/")), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"symlink {name!r} leads outside the package ({target!r})"
    return None


def zip_mode(info: zipfile.ZipInfo) -> int:
    """The member's unix mode; zips made elsewhere carry none: a file 0644, a folder 0755."""
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) == 0:
        permissions = stat.S_IMODE(mode) or (0o755 if info.is_dir() else 0o644)
        mode = (stat.S_IFDIR if info.is_dir() else stat.S_IFREG) | permissions
    return mode


def _scan_zip(path: Path, digest: bool) -> Scan:
    scan = Scan("zip")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                mode = zip_mode(info)
                problem = member_problem(info.filename, mode, info.flag_bits)
                if problem is None and stat.S_ISLNK(mode):
                    problem = link_problem(info.filename, _read_link(archive, info))
                if problem is not None:
                    scan.problems.append(problem)
                    continue
                scan.modes[info.filename.rstrip("/")] = mode
                if not stat.S_ISDIR(mode):
                    scan.size += info.file_size
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        scan.problems.append(f"{str(path)!r} cannot be read as a zip file: {exc}")
    if digest and not scan.problems:
        hasher = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
        scan.digest = hasher.hexdigest()
    return scan


def _read_link(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if info.file_size > SYMLINK_TARGET_MAX:
        return ""
    with archive.open(info) as stream:
        return stream.read(SYMLINK_TARGET_MAX + 1).decode("utf-8")


def _scan_folder(path: Path) -> Scan:
    scan = Scan("folder")
    real = os.path.realpath(path)
    listing: list[str] = []
    for folder, dirs, files in os.walk(real, onerror=lambda exc: scan.problems.append(str(exc))):
        dirs.sort()
        for name in sorted(dirs + files):
            entry = os.path.join(folder, name)
            relative = os.path.relpath(entry, real).replace(os.sep, "/")
            try:
                info = os.lstat(entry)
            except OSError as exc:
                scan.problems.append(f"{relative!r} cannot be read: {exc}")
                continue
            target = ""
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(entry)
                if not _inside(os.path.realpath(entry), real):
                    scan.problems.append(f"symlink {relative!r} leads outside the folder")
                    continue
            elif stat.S_ISREG(info.st_mode):
                scan.size += info.st_size
            elif not stat.S_ISDIR(info.st_mode):
                scan.problems.append(f"{relative!r} is a device file, FIFO or socket")
                continue
            scan.modes[relative] = info.st_mode
            listing.append(
                f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode}\0{target}"
            )
    scan.digest = hashlib.sha256("\n".join(listing).encode("utf-8", "surrogateescape")).hexdigest()
    return scan


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _place(root: Path, root_real: str, relative: str) -> str:
    """The path to write `relative` at: its folder created, whatever was there removed;
    raises UnsafeSource when the folder would resolve outside the root."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts:
        return str(root)
    target = os.path.join(root, *parts)
    parent = os.path.dirname(target)
    if not _inside(os.path.realpath(parent), root_real):
        raise UnsafeSource(f"{relative!r} would be written outside the package")
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)
    return target


def _folder(root: Path, root_real: str, relative: str) -> None:
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    target = os.path.join(root, *parts)
    if not _inside(os.path.realpath(target), root_real):
        raise UnsafeSource(f"{relative!r} would be written outside the package")
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    os.makedirs(target, mode=0o755, exist_ok=True)


def _permissions(mode: int) -> int:
    # No setuid, setgid, sticky nor world-writable bits; the owner can always read.
    return (stat.S_IMODE(mode) & 0o755) | 0o400


def _write(target: str, source: _Readable, mode: int, budget: int, written: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(target, flags, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise UnsafeSource(f"unpacked, it is larger than the {budget} bytes allowed")
            out.write(chunk)
    os.chmod(target, _permissions(mode))
    return written


def _extract_zip(path: Path, root: Path, root_real: str, budget: int) -> int:
    written = 0
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:
            problem = member_problem(info.filename, zip_mode(info), info.flag_bits)
            if problem is not None:
                raise UnsafeSource(problem)
        if sum(info.file_size for info in infos) > budget:
            raise UnsafeSource(f"unpacked, it is larger than the {budget} bytes allowed")
        for info in infos:
            mode = zip_mode(info)
            if stat.S_ISDIR(mode):
                _folder(root, root_real, info.filename)
            elif stat.S_ISLNK(mode):
                link = _read_link(archive, info)
                problem = link_problem(info.filename, link)
                if problem is not None:
                    raise UnsafeSource(problem)
                os.symlink(link, _place(root, root_real, info.filename))
            else:
                with archive.open(info) as stream:
                    target = _place(root, root_real, info.filename)
                    written = _write(target, stream, mode, budget, written)
    return written


def _copy_folder(path: Path, root: Path, root_real: str, budget: int) -> int:
    written = 0
    real = os.path.realpath(path)
    for folder, dirs, files in os.walk(real):
        for name in sorted(dirs + files):
            entry = os.path.join(folder, name)
            relative = os.path.relpath(entry, real).replace(os.sep, "/")
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                resolved = os.path.realpath(entry)
                if not _inside(resolved, real):
                    raise UnsafeSource(f"symlink {relative!r} leads outside the folder")
                link = os.path.relpath(resolved, os.path.dirname(entry))
                os.symlink(link, _place(root, root_real, relative))
            elif stat.S_ISDIR(info.st_mode):
                _folder(root, root_real, relative)
            elif stat.S_ISREG(info.st_mode):
                with open(entry, "rb") as stream:
                    target = _place(root, root_real, relative)
                    written = _write(target, stream, info.st_mode, budget, written)
            else:
                raise UnsafeSource(f"{relative!r} is a device file, FIFO or socket")
    return written

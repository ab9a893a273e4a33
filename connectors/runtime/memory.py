"""An environment's `memory_size`, enforced, and its Max Memory Used, measured.

Two ways, the first that this host allows (`LAMBDA_BRIDGE_MEMORY_WATCH=cgroup|rss` forces
one; `cgroup` where none can be made falls back to `rss` with a warning):

- A memory cgroup per environment, made under the daemon's own memory cgroup: cgroup v1
  `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so it cannot swap past it),
  or v2 `memory.max` (and `memory.swap.max` 0) where the daemon's cgroup delegates the
  memory controller. Every process of the environment (its extensions and the bootstrap)
  joins it before it execs, so everything they start is inside. Over the limit, the
  kernel's OOM killer ends a process (as in Lambda's microVM); the watch sees the cgroup's
  `oom_kill` count go up and the environment ends. Max Memory Used is the cgroup's peak
  (`memory.max_usage_in_bytes`, `memory.peak`).
- Otherwise a resident-memory watch: every WATCH_INTERVAL the resident memory of every
  process of the environment's process group (extensions included) is summed from /proc;
  over the limit ends the environment. An allocation faster than the interval can
  overshoot between two samples, and memory that is not resident (swapped out) is not seen.

One task per event loop samples every watched environment at once (one /proc scan per
interval, however many environments), off the loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import structlog

WATCH_INTERVAL = 0.05
MODE_VARIABLE = "LAMBDA_BRIDGE_MEMORY_WATCH"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024

_log = structlog.get_logger("connectors.runtime")


@functools.cache
def cgroup_parent() -> tuple[Path, int] | None:
    """The daemon's own memory cgroup folder and its version, if children can be made
    in it with the memory controller; None otherwise."""
    try:
        membership = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in membership:
        _, controllers, path = line.split(":", 2)
        version = 1 if "memory" in controllers.split(",") else 2 if controllers == "" else 0
        if not version:
            continue
        for mount in mounts:
            left, _, right = mount.partition(" - ")
            fields, kind = left.split(), right.split()
            if len(fields) < 5 or len(kind) < 3:
                continue
            root, point, fstype, options = fields[3], fields[4], kind[0], kind[2].split(",")
            if version == 1 and (fstype != "cgroup" or "memory" not in options):
                continue
            if version == 2 and fstype != "cgroup2":
                continue
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            folder = Path(point + relative.rstrip("/"))
            if version == 2 and not _delegates_memory(folder):
                break
            if os.access(folder, os.W_OK):
                return folder, version
            break
    return None


def _delegates_memory(folder: Path) -> bool:
    try:
        if "memory" not in (folder / "cgroup.controllers").read_text().split():
            return False
        control = folder / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            control.write_text("+memory")  # refused while the cgroup itself has processes
        return True
    except OSError:
        return False


def _rss_by_group() -> dict[int, int]:
    totals: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return totals
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # After the command: state, ppid, pgrp, ...; rss (pages) is the 22nd of them.
        if len(fields) > 21:
            pgid = int(fields[2])
            totals[pgid] = totals.get(pgid, 0) + int(fields[21]) * _PAGE
    return totals


def _process_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[21]) * _PAGE if len(fields) > 21 else 0


def _read_int(path: Path, key: str | None = None) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    if key is None:
        return int(text.split()[0]) if text.strip() and text.split()[0].isdigit() else 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


class MemoryGuard:
    """The memory of one environment: `exceeded` is set once it went over `memory_mb`."""

    def __init__(self, name: str, memory_mb: int) -> None:
        self.name = name
        self.limit = memory_mb * _MB
        self.peak = 0
        self.exceeded = asyncio.Event()
        self.cgroup: Path | None = None
        self.version = 0
        self.pgid: int | None = None
        self._procs_fd: int | None = None

    @property
    def kind(self) -> str:
        return "cgroup" if self.cgroup is not None else "rss"

    async def open(self) -> None:
        """Make the environment's cgroup if this host allows one (in a thread)."""
        mode = os.environ.get(MODE_VARIABLE, "")
        if mode != "rss":
            await asyncio.to_thread(self._make_cgroup)
            if self.cgroup is None and mode == "cgroup":
                _log.warning("runtime.memory_cgroup_unavailable", function=self.name)

    def _make_cgroup(self) -> None:
        parent = cgroup_parent()
        if parent is None:
            return
        folder, version = parent
        cgroup = folder / f"lambda-bridge-{os.getpid()}-{id(self):x}"
        try:
            cgroup.mkdir()
        except OSError:
            return
        try:
            if version == 1:
                (cgroup / "memory.limit_in_bytes").write_text(str(self.limit))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    (cgroup / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
            else:
                (cgroup / "memory.max").write_text(str(self.limit))
                with contextlib.suppress(OSError):
                    (cgroup / "memory.swap.max").write_text("0")
            self._procs_fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
            return
        self.cgroup, self.version = cgroup, version

    def preexec(self) -> Callable[[], None] | None:
        """Run in the child before exec: join the cgroup (writing 0 moves the writer)."""
        fd = self._procs_fd
        if fd is None:
            return None

        def join() -> None:
            os.write(fd, b"0")

        return join

    def started(self, pgid: int) -> None:
        """The environment's process group is `pgid` (its leader: the first process)."""
        self.pgid = pgid

    def all_started(self) -> None:
        """No more processes will join the cgroup: close its procs file."""
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None

    def watch(self) -> None:
        """Sample (and enforce, for the resident-memory watch) until `unwatch`."""
        _watch().add(self)

    def unwatch(self) -> None:
        _watch().guards.discard(self)

    async def measure(self) -> bool:
        """Sample once now; True if the environment went over its memory."""
        [(used, oom_kills)] = await asyncio.to_thread(_sample, [self])
        self.observe(used, oom_kills)
        return self.exceeded.is_set()

    def settle_peak(self) -> None:
        """Bring `peak` up to date at the end of an invocation, on its path: a cgroup's
        own high-water mark is two small reads; without one, the watch's samples (every
        WATCH_INTERVAL) and the group leader's resident memory now, as a full /proc scan
        per invocation costs milliseconds."""
        if self.cgroup is not None:
            [(used, oom_kills)] = _sample([self])
            self.observe(used, oom_kills)
        elif self.pgid is not None:
            # The group's leader alone: one small read, so an invocation (or an INIT)
            # shorter than the watch's interval still reports what it used.
            self.peak = max(self.peak, _process_rss(self.pgid))

    def observe(self, used: int, oom_kills: int) -> None:
        self.peak = max(self.peak, used)
        if oom_kills if self.cgroup is not None else used > self.limit:
            self.exceeded.set()

    async def close(self) -> None:
        """Remove the cgroup once its processes are gone."""
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            await asyncio.to_thread(_remove_cgroup, cgroup)


def _sample(guards: list[MemoryGuard]) -> list[tuple[int, int]]:
    """(bytes used, OOM kills) of each guard; one /proc scan for all the rss ones."""
    rss = _rss_by_group() if any(g.cgroup is None for g in guards) else {}
    readings = []
    for guard in guards:
        cgroup = guard.cgroup
        if cgroup is None:
            readings.append((rss.get(guard.pgid or -1, 0), 0))
        elif guard.version == 1:
            readings.append(
                (
                    _read_int(cgroup / "memory.max_usage_in_bytes"),
                    _read_int(cgroup / "memory.oom_control", "oom_kill"),
                )
            )
        else:
            readings.append(
                (
                    _read_int(cgroup / "memory.peak") or _read_int(cgroup / "memory.current"),
                    _read_int(cgroup / "memory.events", "oom_kill"),
                )
            )
    return readings


def _remove_cgroup(cgroup: Path) -> None:
    for _ in range(200):  # the group's last processes may still be exiting
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    _log.warning("runtime.memory_cgroup_left", cgroup=str(cgroup))


class _Watch:
    def __init__(self) -> None:
        self.guards: set[MemoryGuard] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, guard: MemoryGuard) -> None:
        self.guards.add(guard)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        # The first sample waits an interval: an invocation shorter than that is not
        # worth a thread hop on its path (its end is measured by `settle_peak`).
        while self.guards:
            await asyncio.sleep(WATCH_INTERVAL)
            guards = list(self.guards)
            if not guards:
                break
            readings = await asyncio.to_thread(_sample, guards)
            for guard, (used, oom_kills) in zip(guards, readings, strict=True):
                guard.observe(used, oom_kills)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()


def _watch() -> _Watch:
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch()
    return watch

"""The processes of one execution environment: one process group, started and signalled
together, its output turned into log lines.

The first process started (the first extension, else the runtime) makes the group and
leads it; every later one joins it. Each starts as the function's `user` (if any), joins
the environment's memory cgroup before it execs (connectors.runtime.memory), and has its
stdout and stderr read line by line (at most MAX_LINE bytes a line).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from connectors.runtime.memory import MemoryGuard

MAX_LINE = 256 * 1024

LineSink = Callable[[str, str], None]  # (text, stream)


class ProcessGroup:
    """The environment's processes; `pgid` is its group (None until one started)."""

    def __init__(self, cwd: Path, user: str | None, memory: MemoryGuard, sink: LineSink) -> None:
        self.cwd = cwd
        self.user = user
        self.memory = memory
        self.variables: dict[str, str] = {}
        self.pgid: int | None = None
        self._sink = sink
        self._readers: list[asyncio.Task[None]] = []

    async def spawn(self, argv: list[str]) -> asyncio.subprocess.Process:
        """Start a process in the group (the first one makes it); OSError if it cannot be."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            env=self.variables,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=self.pgid or 0,
            user=self.user,
            preexec_fn=self.memory.preexec(),
        )
        if self.pgid is None:
            self.pgid = process.pid
            self.memory.started(process.pid)  # the watch sums the whole group's memory
        assert process.stdout is not None and process.stderr is not None
        self._readers += [
            asyncio.ensure_future(self._forward(process.stdout, "stdout")),
            asyncio.ensure_future(self._forward(process.stderr, "stderr")),
        ]
        return process

    def signal(self, signum: int) -> None:
        """Send `signum` to every process of the group (if there is one left)."""
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def close(self) -> None:
        """Read what the processes wrote last (at most a second more)."""
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 1.0)

    async def _forward(self, stream: asyncio.StreamReader, name: str) -> None:
        pending = b""
        while chunk := await stream.read(1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._sink(line.decode("utf-8", "replace").rstrip("\r"), name)
        if pending:
            self._sink(pending.decode("utf-8", "replace"), name)


def exit_reason(status: int) -> str:
    return f"signal {-status}" if status < 0 else f"exit status {status}"

"""External extensions of one environment: found, started, and taken through Lambda's phases.

Extensions are the executables in a layer's `extensions/` folder (Lambda's /opt/extensions)
and in the package's own `extensions/` folder (the package's replaces a layer's of the same
name). They start before the runtime, in the environment's process group with the same
variables, and the runtime starts once every one has registered (Extension init, then
Runtime init). INIT is over when every extension and the runtime have called `next`; an
invocation is over when the runtime and every extension subscribed to INVOKE have called
`next` again. At SHUTDOWN the runtime gets SIGTERM and each extension subscribed to SHUTDOWN
the event; the environment is killed once all have exited or called `next`, or after
SHUTDOWN_LIMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from connectors.runtime.extensions_api import ExtensionFailure, ExtensionsApi
from connectors.runtime.package import PreparedPackage
from connectors.runtime.runtime_api import Invocation, RuntimeApi

SHUTDOWN_LIMIT = 2.0  # Lambda's SHUTDOWN phase with external extensions

Spawn = Callable[[list[str]], Awaitable[asyncio.subprocess.Process]]


def find_extensions(package: PreparedPackage) -> list[Path]:
    """The external extensions of a package and its layers, by name."""
    found: dict[str, Path] = {}
    for root in (package.opt_root, package.task_root):
        folder = root / "extensions" if root is not None else None
        if folder is None or not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and os.access(path, os.X_OK):
                found[path.name] = path
    return [found[name] for name in sorted(found)]


def extension_host(
    package: PreparedPackage, function_name: str, handler: str, function_arn: str
) -> ExtensionHost | None:
    """The host of the package's extensions, or None when it has none (blocking)."""
    paths = find_extensions(package)
    if not paths:
        return None
    names = [path.name for path in paths]
    return ExtensionHost(ExtensionsApi(function_name, handler, function_arn, names), paths)


class ExtensionHost:
    """The extension processes of one environment and its Extensions API."""

    def __init__(self, api: ExtensionsApi, paths: list[Path]) -> None:
        self.api = api
        self.paths = paths
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, spawn: Spawn) -> None:
        """Start every extension (OSError if one cannot be)."""
        for path in self.paths:
            process = await spawn([str(path)])
            self.processes[path.name] = process
            self._watchers.append(asyncio.ensure_future(self._watch(path.name, process)))

    async def _watch(self, name: str, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        if not self._shutting_down:
            reason = f"signal {-status}" if status < 0 else f"exit status {status}"
            self.api.fail(ExtensionFailure(name, "Extension.Crash", f"{name} exited: {reason}"))

    _shutting_down = False

    async def registered(self, limit: float) -> ExtensionFailure | None:
        """Extension init: wait until every extension registered; what failed if not."""
        with contextlib.suppress(TimeoutError):
            wait = _first(self.api.registered.wait(), self.api.failed.wait())
            await asyncio.wait_for(wait, limit)
        if self.api.failure is not None or self.api.registered.is_set():
            return self.api.failure
        missing = sorted(set(self.api.files) - {e.name for e in self.api.extensions.values()})
        message = f"Init timed out after {limit:.2f} seconds: {', '.join(missing)} did not register"
        return ExtensionFailure(missing[0], "Extension.InitError", message)

    async def initialised(self, runtime: RuntimeApi) -> None:
        """INIT is over: the runtime and every extension called `next`."""
        await runtime.ready.wait()
        await self.until_ready(runtime.waiting)

    async def until_ready(self, runtime_waiting: asyncio.Event) -> None:
        """Until the runtime and every extension wait in `next` (or an extension failed)."""
        everyone = [runtime_waiting, *self.api.ready()]
        await _first(asyncio.gather(*(event.wait() for event in everyone)), self.api.failed.wait())

    async def invocation_done(self, invocation: Invocation, runtime_waiting: asyncio.Event) -> None:
        """Until the runtime answered and it and every extension called `next` again (or
        an extension failed)."""
        failed = asyncio.ensure_future(self.api.failed.wait())
        try:
            waits: set[asyncio.Future[Any]] = {invocation.answer, failed}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
        await self.until_ready(runtime_waiting)

    def invoke(self, invocation: Invocation) -> None:
        self.api.send(
            "INVOKE",
            {
                "deadlineMs": int(invocation.deadline * 1000),
                "requestId": invocation.request_id,
                "invokedFunctionArn": invocation.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
            },
        )

    async def shutdown(
        self,
        reason: str,
        terminate_runtime: Callable[[], None],
        runtime_exit: Awaitable[object] | None,
    ) -> None:
        """SIGTERM the runtime, SHUTDOWN to the extensions; return when the runtime exited
        and every extension exited or called `next`, or after SHUTDOWN_LIMIT (the caller
        kills what is left)."""
        self._shutting_down = True
        terminate_runtime()
        deadline = time.time() + SHUTDOWN_LIMIT
        told = self.api.send(
            "SHUTDOWN", {"shutdownReason": reason, "deadlineMs": int(deadline * 1000)}
        )
        told_names = {extension.name for extension in told}
        waits = [
            _first(process.wait(), *(e.waiting.wait() for e in told if e.name == name))
            for name, process in self.processes.items()
            if name in told_names
        ]
        if runtime_exit is not None:
            waits.append(_first(runtime_exit))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), SHUTDOWN_LIMIT)

    async def close(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait for the first of `awaitables` to finish; cancel the rest."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

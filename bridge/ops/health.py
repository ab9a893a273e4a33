"""What is failing in a mapping besides its source's connection, and the tasks it owns.

A mapping has background work besides reading: committing offsets, acknowledging entries,
writing checkpoints and failure records. None of it may fail unseen. A component that
fails and will try again reports `failed(component, reason)`, and `recovered(component)`
once it works again: while any problem is reported the mapping's state is `Degraded`
with the reasons as its `StateReason`, `/readyz` answers 503, and every failure is
counted in `lambda_bridge_failures_total{mapping, component}`.

`TaskOwner` runs a mapping's background tasks: one that raises (or ends while it should
run) ends the session it belongs to with that error, which the mapping reports and
retries with backoff like any other failure of its source.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Protocol

import structlog

from bridge.errors import BridgeError


class Reporter(Protocol):
    """Where a component reports that it failed (and will try again) or works again."""

    def failed(self, component: str, reason: str) -> None: ...

    def recovered(self, component: str) -> None: ...


class Health:
    """Current problems by component, and how many failures each component had."""

    __slots__ = ("_problems", "failures")

    def __init__(self) -> None:
        self._problems: dict[str, str] = {}
        self.failures: Counter[str] = Counter()

    def failed(self, component: str, reason: str) -> None:
        self._problems[component] = reason
        self.failures[component] += 1

    def recovered(self, component: str) -> None:
        self._problems.pop(component, None)

    @property
    def problem(self) -> str | None:
        """The current problems as one line, or None when all is well."""
        if not self._problems:
            return None
        return "; ".join(f"{component}: {reason}" for component, reason in self._problems.items())

    def problem_of(self, component: str) -> str | None:
        return self._problems.get(component)


class BackgroundTaskFailed(Exception):
    """A task a mapping owns failed or ended on its own; the session ends with it."""

    def __init__(self, name: str, cause: BaseException | None) -> None:
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else "it ended"
        super().__init__(f"background task {name} failed: {detail}")
        self.task_name = name
        self.__cause__ = cause


class TaskOwner:
    """Starts and owns background tasks; the first failure is handed to `on_failure`.

    A task ending by itself counts as a failure too: background loops run until they
    are cancelled. `close()` cancels what is left and waits for it.
    """

    def __init__(self, on_failure: Callable[[BackgroundTaskFailed], None]) -> None:
        self._on_failure = on_failure
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._closing = False
        self._log = structlog.get_logger("bridge.ops.health")

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks[task] = name
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        name = self._tasks.pop(task, "?")
        if self._closing or task.cancelled():
            return
        error = task.exception()
        self._log.error(
            "task.failed",
            task=name,
            error=str(error) if error is not None else "ended",
            # The bridge's own errors say what is wrong; anything else is a bug to trace.
            exc_info=None if isinstance(error, BridgeError) else error,
        )
        self._on_failure(BackgroundTaskFailed(name, error))

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(list(self._tasks))


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]], patience: float = 1.0) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again any that is still
    running after `patience` seconds: on Python 3.11 a cancellation that meets a timeout
    expiring at the same moment (asyncio.timeout, wait_for: a client's read timeout) can
    be lost, and the task would go on, leaving its closer waiting for ever."""
    running = [task for task in tasks if not task.done()]
    while running:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=patience)
        running = [task for task in running if not task.done()]
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: what it ended with was reported by its owner

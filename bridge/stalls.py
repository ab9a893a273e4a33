"""Where a task is waiting: the chain of awaits it is in, for log lines about work that
does not finish (a drain that runs long)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The innermost awaits of a chain say where it waits; the outer ones only how it got there.
SHOWN_FRAMES = 5


def waiting_at(task: asyncio.Task[Any]) -> str:
    """`name: function (file:line) > ...`, outermost first, following the awaits."""
    coroutine: Any = task.get_coro()
    frames = []
    while coroutine is not None:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            frames.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    chain = " > ".join(frames[-SHOWN_FRAMES:]) or "(not started or done)"
    return f"{task.get_name()}: {chain}"


def where_waiting(tasks: Iterable[asyncio.Task[Any]]) -> list[str]:
    return sorted(waiting_at(task) for task in tasks if not task.done())

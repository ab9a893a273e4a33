"""Where a task waits (bridge.stalls): the chain of awaits, outermost first, as the log
line of a drain that runs long names it."""

from __future__ import annotations

import asyncio

from bridge.stalls import where_waiting


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


def test_a_waiting_task_is_named_with_its_chain_of_awaits() -> None:
    async def scenario() -> list[str]:
        event = asyncio.Event()
        waiting = asyncio.create_task(_outer(event), name="mapping:orders")
        finished = asyncio.create_task(asyncio.sleep(0), name="done")
        await asyncio.sleep(0.01)
        found = where_waiting([waiting, finished])
        event.set()
        await waiting
        return found

    [line] = asyncio.run(scenario())
    assert line.startswith("mapping:orders: _outer (test_stalls.py:")
    assert " > _inner (test_stalls.py:" in line and line.endswith(")")
    assert "wait (locks.py:" in line

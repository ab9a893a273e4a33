"""Telling a cancellation of the running task from a stray CancelledError.

Client libraries sometimes let the CancelledError of a task of their own out of a call
(aiokafka's stop(), a read during an outage). Re-raised as if it were ours, it would end
a reader or a close that nobody asked to end; swallowed when it is ours, the daemon could
not stop.
"""

from __future__ import annotations

import asyncio


def cancelled_from_outside() -> bool:
    """True if the running task itself is being cancelled (so a CancelledError must go
    on); False if the one being handled came out of somebody else's task."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

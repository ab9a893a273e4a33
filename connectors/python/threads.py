"""Worker threads for synchronous handlers, lighter than a ThreadPoolExecutor.

Each call crosses to a worker through a SimpleQueue and back through one
`call_soon_threadsafe`, without the locks and callback chains of concurrent.futures,
which cost several times the call itself for a quick handler. Threads are started as
calls arrive, up to `limit`; a call that finds them all busy waits in the queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class Raised(Exception):
    """A BaseException that is no Exception (KeyboardInterrupt, GeneratorExit, a
    CancelledError of the function's own) raised on a worker, carried to the loop as an
    ordinary exception: set on the future as it is, it would be taken for the awaiting
    task's own interruption, and GeneratorExit would close the awaiting coroutines."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(raised)
        self.raised = raised


def _deliver(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.cancelled():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class HandlerThreads:
    def __init__(self, limit: int, name: str) -> None:
        self._limit = limit
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def call(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `function(*args)` on a worker; the future is resolved on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._limit:
                self._start()
        self._calls.put((function, args, future, loop))
        return future

    def _start(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        calls = self._calls
        while True:
            with self._lock:
                self._idle += 1
            item = calls.get()
            with self._lock:
                self._idle -= 1
            if item is _STOP:
                return
            function, args, future, loop = item
            try:
                outcome, failed = function(*args), False
            except Exception as exc:
                outcome, failed = exc, True
            except BaseException as exc:
                outcome, failed = Raised(exc), True
            try:
                loop.call_soon_threadsafe(_deliver, future, outcome, failed)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more

    def close(self) -> None:
        for _ in self._threads:
            self._calls.put(_STOP)

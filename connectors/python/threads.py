"""Worker threads for synchronous handlers, lighter than a ThreadPoolExecutor.

Each call crosses to a worker through a SimpleQueue and back through one
`call_soon_threadsafe`, without the locks and callback chains of concurrent.futures,
which cost several times the call itself for a quick handler. Threads are started as
calls arrive, up to `limit`; a call that finds them all busy waits in the queue.

A waiting call has not started: the invoker may give it up (`Call.abandon`), and then
no worker ever runs it. A worker takes a call (`Call.claim`) just before running it, so
a call is either abandoned or run, never both; `when_started` tells the loop it runs.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
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


class Call:
    """One call of a function on a worker: waiting, then started (or abandoned)."""

    __slots__ = (
        "_lock",
        "_state",
        "args",
        "done",
        "function",
        "loop",
        "on_start",
        "started_at",
        "when_started",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        on_start: Callable[[], None] | None,
        when_started: Callable[[], None] | None,
    ) -> None:
        self.function = function
        self.args = args
        self.loop = loop
        self.on_start = on_start
        self.when_started = when_started
        self.done: asyncio.Future[Any] = loop.create_future()
        # time.perf_counter() when a worker took the call.
        self.started_at: float | None = None
        self._lock = threading.Lock()
        self._state = "waiting"

    def claim(self) -> bool:
        """On the worker: take the call to run it, unless it was abandoned."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "running"
        self.started_at = time.perf_counter()
        return True

    def abandon(self) -> bool:
        """On the loop: give the call up if no worker has taken it; False if it runs."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "abandoned"
        return True


class HandlerThreads:
    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        # Calls queued and not yet taken by a worker.
        self._waiting = 0
        self._lock = threading.Lock()

    def call(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `function(*args)` on a worker; the future is resolved on the calling loop."""
        return self.submit(function, args).done

    def submit(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        on_start: Callable[[], None] | None = None,
        when_started: Callable[[], None] | None = None,
    ) -> Call:
        """Queue `function(*args)`. When a worker takes it, `on_start` runs on that worker
        right before the function, and `when_started` is scheduled on the loop."""
        with self._lock:
            if self._idle <= self._waiting and len(self._threads) < self.limit:
                self._start()
                self._idle += 1  # counted now, so the next call starts another
            # With a worker free for it, the call starts at once: the loop need not be
            # woken to hear so (a wake-up per call costs as much as a quick handler).
            if self._idle > self._waiting:
                when_started = None
            self._waiting += 1
        call = Call(function, args, asyncio.get_running_loop(), on_start, when_started)
        self._calls.put(call)
        return call

    def _start(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        calls = self._calls
        counted = True  # a new worker is counted idle by the call that started it
        while True:
            if not counted:
                with self._lock:
                    self._idle += 1
            counted = False
            item = calls.get()
            with self._lock:
                self._idle -= 1
                if item is not _STOP:
                    self._waiting -= 1
            if item is _STOP:
                return
            call: Call = item
            if not call.claim():
                continue  # given up while it waited: never run
            if call.on_start is not None:
                call.on_start()
            if call.when_started is not None:
                try:
                    call.loop.call_soon_threadsafe(call.when_started)
                except RuntimeError:
                    return  # the loop is closed: nobody is waiting any more
            try:
                outcome, failed = call.function(*call.args), False
            except Exception as exc:
                outcome, failed = exc, True
            except BaseException as exc:
                outcome, failed = Raised(exc), True
            try:
                call.loop.call_soon_threadsafe(_deliver, call.done, outcome, failed)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more

    def close(self) -> None:
        for _ in self._threads:
            self._calls.put(_STOP)

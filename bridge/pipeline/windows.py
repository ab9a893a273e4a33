"""Tumbling windows for Kinesis and DynamoDB Streams (esm-reference.md 1.9).

With `tumbling_window_in_seconds`, each shard's records are grouped into windows of that
length aligned on the epoch, by their arrival time. Every invocation of a window carries
`window`, the `state` the previous invocation of the window returned, `shardId`,
`eventSourceARN`, `isFinalInvokeForWindow` and `isWindowTerminatedEarly` next to
`Records`; the function must answer with an object holding `state` (and may add
`batchItemFailures`), else the invocation counts as failed. When the window is over (a
record of a later window arrived, or the window ended and no record came for up to two
minutes), a final invocation with no records and `isFinalInvokeForWindow: true` hands
over the aggregated state; only after it succeeds are the window's records checkpointed
and the state dropped. A failing final invocation blocks the shard until it succeeds.
State above 1 MB ends the window early (`isWindowTerminatedEarly: true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.errors import TransportError
from bridge.failures import iso_seconds
from bridge.invokers import function_error
from bridge.protocols import Invoker
from bridge.records import InvokeResult, Record, new_request_id
from bridge.retry import Backoff, sleep_unless

MAX_STATE_BYTES = 1024 * 1024
# AWS waits up to two minutes after a window's end for late records before the final call.
MAX_LINGER_SECONDS = 120.0


class _Window:
    __slots__ = ("end", "start", "state", "terminated_early")

    def __init__(self, start: float, length: int) -> None:
        self.start = start
        self.end = start + length
        self.state: dict[str, Any] = {}
        self.terminated_early = False

    def fields(self, final: bool) -> bytes:
        window = {"start": iso_seconds(self.start), "end": iso_seconds(self.end)}
        return (
            b',"window":'
            + dumps(window)
            + b',"state":'
            + dumps(self.state)
            + b',"isFinalInvokeForWindow":'
            + (b"true" if final else b"false")
            + b',"isWindowTerminatedEarly":'
            + (b"true" if self.terminated_early else b"false")
        )


class TumblingWindow:
    """The window of one shard's lane: delivers its batches and makes the final call."""

    def __init__(
        self,
        *,
        length: int,
        invoker: Invoker,
        source_arn: Callable[[], str],
        settle: Callable[[Sequence[Record]], Awaitable[None]],
        stopping: asyncio.Event,
        backoff: Backoff,
        mapping: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.length = length
        self.invoker = WindowInvoker(invoker, self)
        self._source_arn = source_arn
        self._settle = settle
        self._stopping = stopping
        self._backoff = backoff
        self._now = clock
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.current: _Window | None = None
        self.shard = ""
        # Records of the open window: settled (checkpointed) only after its final call.
        self._held: list[Record] = []
        self._log = structlog.get_logger("bridge.pipeline.windows").bind(mapping=mapping)

    def wake(self) -> None:
        """Let `watch` see a stop request."""
        self._changed.set()

    def window_start(self, arrival: float) -> float:
        return arrival - arrival % self.length

    def envelope(self, final: bool) -> bytes:
        """The fields an event carries after `Records`."""
        window = self.current
        assert window is not None
        arn = dumps(self._source_arn())
        shard = b',"shardId":' + dumps(self.shard) + b',"eventSourceARN":' + arn
        fields = window.fields(final)
        # Keep AWS's order: window, state, shardId, eventSourceARN, then the two flags.
        split = fields.index(b',"isFinalInvokeForWindow"')
        return fields[:split] + shard + fields[split:]

    async def hold(self, records: Sequence[Record]) -> None:
        """The dispatcher's `settle`: a window's records wait for its final call."""
        self._held.extend(records)

    def accept_state(self, state: dict[str, Any]) -> None:
        window = self.current
        assert window is not None
        window.state = state
        if len(dumps(state)) > MAX_STATE_BYTES:
            window.terminated_early = True

    async def deliver(
        self, records: list[Record], deliver: Callable[[list[Record]], Awaitable[None]]
    ) -> None:
        """Deliver records window by window, closing a window before a later one starts."""
        async with self._lock:
            start = 0
            while start < len(records):
                window_start = self.window_start(records[start].arrival)
                end = start
                while (
                    end < len(records) and self.window_start(records[end].arrival) == window_start
                ):
                    end += 1
                self.shard = records[start].partition
                if (
                    self.current is not None
                    and self.current.start != window_start
                    and not await self._finish()
                ):
                    return
                if self.current is None:
                    self.current = _Window(window_start, self.length)
                await deliver(records[start:end])
                if (
                    self.current is not None
                    and self.current.terminated_early
                    and not await self._finish()
                ):
                    return
                start = end
            self._changed.set()

    async def watch(self) -> None:
        """Make the final call of a window nothing more arrives for."""
        while not self._stopping.is_set():
            window = self.current
            if window is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            linger = min(MAX_LINGER_SECONDS, float(self.length))
            due = window.end + linger - self._now()
            if due > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), due)
                continue
            async with self._lock:
                if self.current is window:
                    await self._finish()

    async def _finish(self) -> bool:
        """The final call of the current window, retried until it succeeds (the shard is
        blocked meanwhile); then its records are settled. False if stopping first."""
        window = self.current
        assert window is not None
        failures = 0
        while True:
            if self._stopping.is_set():
                return False
            event = b'{"Records":[]' + self.envelope(final=True) + b"}"
            try:
                result = await self.invoker.inner.invoke(event, new_request_id())
            except TransportError as exc:
                reason = str(exc)
            else:
                if not result.function_error:
                    break
                reason = result.function_error
            failures += 1
            delay = self._backoff.delay(failures)
            self._log.warning(
                "window.final_failed",
                shard=self.shard,
                window_start=iso_seconds(window.start),
                attempt=failures,
                reason=reason,
                delay=round(delay, 3),
            )
            if not await sleep_unless(self._stopping, delay):
                return False
        held, self._held = self._held, []
        self.current = None
        self._log.info(
            "window.closed",
            shard=self.shard,
            window_start=iso_seconds(window.start),
            records=len(held),
            terminated_early=window.terminated_early,
        )
        await self._settle(held)
        return True


class WindowInvoker:
    """Adds the window's fields to each event and takes the `state` from each answer."""

    def __init__(self, inner: Invoker, window: TumblingWindow) -> None:
        self.inner = inner
        self._window = window

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        windowed = event[:-1] + self._window.envelope(final=False) + b"}"
        result = await self.inner.invoke(windowed, request_id)
        if result.function_error:
            return result
        state = _state_of(result.payload)
        if state is None:
            return function_error(
                "Runtime.InvalidTumblingWindowResponse",
                "a tumbling window invocation must return an object with a 'state' object",
                result.request_id,
                result.duration,
            )
        self._window.accept_state(state)
        return result


def _state_of(payload: bytes) -> dict[str, Any] | None:
    try:
        document = loads(payload) if payload.strip() else None
    except JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("state"), dict):
        state: dict[str, Any] = document["state"]
        return state
    return None

"""The worker of one function's asynchronous queue (esm-reference.md 12).

It invokes due events, up to the function's reserved concurrency at once (10 without
one), through the function's invoker, and decides each one as Lambda does:
- a function error is retried after 1 minute, then 2 (times `retry_delay_scale`), up to
  `maximum_retry_attempts`, then the event is given up as `RetriesExhausted`;
- a throttle or a service error (the invoker raised) puts the event back with
  exponential backoff from 1 s to 5 minutes (scaled), without counting an attempt;
- an event older than `maximum_event_age_in_seconds` (real time, never scaled) when its
  turn comes is given up as `EventAgeExceeded`;
- with reserved concurrency 0 an event is given up at once, without an invocation.
The decision is saved in the queue before the records are delivered; the event leaves
the queue only when every destination has its record (a failing destination is retried
with backoff, the worker reported Degraded meanwhile): nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from bridge.asyncinvoke.queue import EventQueue, QueuedEvent
from bridge.asyncinvoke.records import (
    Condition,
    dead_letter_attributes,
    decode_result,
    encode_result,
    invocation_record,
)
from bridge.asyncinvoke.settings import AsyncSettings
from bridge.config.versions import LATEST
from bridge.errors import BridgeError
from bridge.invokers import INVOKED_ARN
from bridge.ops.health import Health
from bridge.ops.metrics import MappingMetrics
from bridge.protocols import Invoker
from bridge.records import Delivery, InvokeResult
from bridge.retry import Backoff

# Waits before the second and third attempt after a function error (esm-reference.md 12).
RETRY_WAITS = (60.0, 120.0)
# Throttles and service errors: 1 s growing to 5 minutes (esm-reference.md 12).
SETBACK_BACKOFF = Backoff(initial=1.0, maximum=300.0)
DEFAULT_PARALLEL = 10


class WorkerHost(Protocol):
    """What a worker needs of the daemon, looked up afresh for every event (reloads)."""

    def settings(self, function: str, qualifier: str) -> AsyncSettings: ...

    def reserved_concurrency(self, function: str) -> int | None: ...

    def invoker(self, function: str, qualifier: str) -> tuple[Invoker, str] | None:
        """The started invoker `function:qualifier` runs on and the version it runs (an
        alias's weighted version picked per call); None if not configured now."""

    def function_arn(self, function: str, qualifier: str) -> str | None:
        """The qualified ARN; None if the function is no longer configured."""

    async def deliver(self, destination: str, delivery: Delivery) -> None:
        """Deliver to the named destination; raise BridgeError if it cannot be done now."""


class AsyncWorker:
    def __init__(
        self,
        function: str,
        queue: EventQueue,
        host: WorkerHost,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.function = function
        self.queue = queue
        self.health = Health()
        self.metrics = MappingMetrics()
        self.outcomes: Counter[str] = Counter()
        self.depth = 0
        self.oldest: float | None = None
        self.stopping = False
        self._host = host
        self._now = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._crash: BaseException | None = None
        self._log = structlog.get_logger("bridge.async").bind(function=function)

    def wake(self) -> None:
        self._wake.set()

    @property
    def parallel(self) -> int:
        reserved = self._host.reserved_concurrency(self.function)
        return reserved if reserved else DEFAULT_PARALLEL

    async def run(self) -> None:
        """Invoke events as they come due, until cancelled."""
        try:
            while True:
                self._wake.clear()
                if self._crash is not None:
                    raise self._crash
                room = 0 if self.stopping else self.parallel - len(self._busy)
                events = await self.queue.due(self._now(), room, self._busy)
                for event in events:
                    task = asyncio.create_task(self.handle(event), name=event.request_id)
                    self._busy[event.request_id] = task
                    task.add_done_callback(self._handled)
                self.depth, self.oldest = await self.queue.stats()
                if self.health.problem_of("worker") is not None:
                    self.health.recovered("worker")  # restarted after a failure, and works
                if events and len(self._busy) < self.parallel:
                    continue
                timeout = None
                if len(self._busy) < self.parallel and not self.stopping:
                    due = await self.queue.next_due(self._busy)
                    timeout = None if due is None else max(due - self._now(), 0.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for task in self._busy.values():
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._busy.pop(task.get_name(), None)
        if not task.cancelled() and task.exception() is not None:
            self._crash = task.exception()
        self._wake.set()

    async def drain(self, deadline_seconds: float) -> None:
        """Take no new events; wait up to `deadline_seconds` for those being invoked."""
        self.stopping = True
        if self._busy:
            await asyncio.wait(list(self._busy.values()), timeout=deadline_seconds)

    # -- one event --------------------------------------------------------------------

    async def handle(self, event: QueuedEvent) -> None:
        settings = self._host.settings(self.function, event.qualifier)
        if event.outcome is None:
            decided = await self._attempt(event, settings)
            if decided is None:
                return
            event = decided
            if _has_destinations(event, settings):
                # Kept, so that a restart delivers its records without invoking it again.
                await self.queue.update(event)
        await self._finish(event, settings)

    async def _attempt(self, event: QueuedEvent, settings: AsyncSettings) -> QueuedEvent | None:
        """Invoke the event once; the event with its outcome decided, or None when it
        went back to the queue for a later attempt."""
        now = self._now()
        expires = event.received + settings.maximum_event_age_in_seconds
        if now > expires:
            return dataclasses.replace(event, outcome=Condition.EVENT_AGE_EXCEEDED.value)
        if self._host.reserved_concurrency(self.function) == 0:
            # Reserved concurrency 0: given up without retries (esm-reference.md 12).
            return dataclasses.replace(event, outcome=Condition.RETRIES_EXHAUSTED.value)
        found = self._host.invoker(self.function, event.qualifier)
        try:
            if found is None:
                raise BridgeError(f"function {self.function!r} is not configured now")
            invoker, version = found
            self.metrics.invoking([], event.attempts + 1)
            started = time.monotonic()
            invoked_arn = INVOKED_ARN.set(self._host.function_arn(self.function, event.qualifier))
            try:
                result = await invoker.invoke(event.payload, event.request_id)
            finally:
                INVOKED_ARN.reset(invoked_arn)
                self.metrics.invoked_for(time.monotonic() - started)
            if version != LATEST:  # a configured version is the one that ran
                result = dataclasses.replace(result, executed_version=version)
        except BridgeError as exc:
            setbacks = event.setbacks + 1
            delay = SETBACK_BACKOFF.ceiling(setbacks) * settings.retry_delay_scale
            self._log.info(
                "async.invoke_deferred",
                request_id=event.request_id,
                error=str(exc),
                delay=round(delay, 3),
            )
            self.outcomes["retry"] += 1
            await self.queue.update(
                dataclasses.replace(
                    event, setbacks=setbacks, next_attempt=min(now + delay, expires + 0.001)
                )
            )
            return None
        attempts = event.attempts + 1
        kept = encode_result(result)
        if result.function_error is None:
            condition = Condition.SUCCESS
        elif attempts > settings.maximum_retry_attempts:
            self.metrics.failed_invoke += 1
            condition = Condition.RETRIES_EXHAUSTED
        else:
            self.metrics.failed_invoke += 1
            wait = RETRY_WAITS[min(attempts, len(RETRY_WAITS)) - 1] * settings.retry_delay_scale
            self._log.info(
                "async.function_error",
                request_id=event.request_id,
                attempt=attempts,
                retry_in=round(wait, 3),
            )
            self.outcomes["retry"] += 1
            await self.queue.update(
                dataclasses.replace(
                    event, attempts=attempts, setbacks=0, next_attempt=now + wait, last_result=kept
                )
            )
            return None
        return dataclasses.replace(
            event, attempts=attempts, setbacks=0, outcome=condition.value, last_result=kept
        )

    async def _finish(self, event: QueuedEvent, settings: AsyncSettings) -> None:
        condition = Condition(event.outcome)
        result = decode_result(event.last_result)
        arn = self._host.function_arn(self.function, event.qualifier)
        if arn is None:  # removed by a reload: its records wait until it is back
            await self.queue.update(dataclasses.replace(event, next_attempt=self._now() + 60))
            return
        record = invocation_record(
            request_id=event.request_id,
            function_arn=arn,
            condition=condition,
            attempts=event.attempts,
            request_payload=event.payload,
            result=result,
            timestamp=self._now(),
        )
        origin = f"{self.function}.async"
        targets: list[tuple[str, Delivery]] = []
        success = condition is Condition.SUCCESS
        chosen = settings.on_success if success else settings.on_failure
        if chosen is not None:
            targets.append((chosen, Delivery(record, origin, arn, success)))
        if not success and settings.dead_letter is not None:
            reason = _reason(condition, result)
            attributes = dead_letter_attributes(event.request_id, result, reason)
            targets.append(
                (settings.dead_letter, Delivery(event.payload, origin, arn, None, attributes))
            )
        for destination, delivery in targets:
            await self._deliver(destination, delivery, settings.retry_delay_scale)
        await self.queue.remove(event.request_id)
        self._count(event, condition, delivered=bool(targets), result=result)

    def _count(
        self,
        event: QueuedEvent,
        condition: Condition,
        *,
        delivered: bool,
        result: InvokeResult | None,
    ) -> None:
        log = self._log.bind(
            request_id=event.request_id,
            condition=condition.value,
            approximate_invoke_count=event.attempts,
        )
        if condition is Condition.SUCCESS:
            self.outcomes["success"] += 1
            self.metrics.succeeded += 1
            log.debug("async.succeeded")
        elif delivered:
            self.outcomes["failure"] += 1
            self.metrics.sent_to_destination += 1
            log.warning("async.event_failed")
        else:
            self.outcomes["dropped"] += 1
            self.metrics.dropped += 1
            log.warning(
                "async.event_discarded",
                reason="no on_failure destination or dead_letter is configured",
                error=_reason(condition, result),
            )

    async def _deliver(self, destination: str, delivery: Delivery, scale: float) -> None:
        """Deliver, retrying with backoff until it is done (or the worker is cancelled)."""
        failures = 0
        while True:
            try:
                await self._host.deliver(destination, delivery)
                break
            except BridgeError as exc:
                failures += 1
                delay = SETBACK_BACKOFF.ceiling(failures) * scale
                self.health.failed("destination", f"{destination}: {exc}")
                self._log.error(
                    "async.destination_failed",
                    destination=destination,
                    error=str(exc),
                    attempt=failures,
                    delay=round(delay, 3),
                )
                await self._sleep(delay)
        if failures:
            self.health.recovered("destination")


def _has_destinations(event: QueuedEvent, settings: AsyncSettings) -> bool:
    if event.outcome == Condition.SUCCESS.value:
        return settings.on_success is not None
    return settings.on_failure is not None or settings.dead_letter is not None


def _reason(condition: Condition, result: InvokeResult | None) -> str:
    if result is not None and result.function_error:
        return result.payload.decode("utf-8", "replace")
    if condition is Condition.EVENT_AGE_EXCEEDED:
        return "the event exceeded its maximum age before it could be processed"
    return "the function was throttled (reserved concurrency 0)"

"""The asynchronous queue on real SQLite files, and the worker's rules driven by an
injected clock: order, persistence across a reopen (and a crash without close), retries
after function errors, backoff after throttles, EventAgeExceeded, and a destination
that fails until it works (nothing lost)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from bridge.asyncinvoke.queue import EventQueue, QueuedEvent, queue_file
from bridge.asyncinvoke.settings import AsyncSettings
from bridge.asyncinvoke.worker import AsyncWorker
from bridge.errors import DestinationError, ThrottledError
from bridge.invokers import function_error
from bridge.protocols import Invoker
from bridge.records import Delivery, InvokeResult
from bridge.testing import ManualClock


def event(request_id: str, received: float = 0.0, next_attempt: float | None = None) -> QueuedEvent:
    due = received if next_attempt is None else next_attempt
    return QueuedEvent(request_id, "$LATEST", b'{"n": 1}', received, next_attempt=due)


def test_events_come_due_in_acceptance_order_and_survive_a_reopen(tmp_path: Path) -> None:
    """Due events are handed out oldest first, not yet due ones later; after a close and
    a reopen every row is still there, attempts and all."""

    async def scenario() -> None:
        path = queue_file(tmp_path / "async", "orders fn")
        assert path.name == "orders%20fn.sqlite"
        queue = EventQueue(path)
        await queue.open()
        for name in ("a", "b", "c"):
            await queue.put(event(name))
        await queue.put(event("later", next_attempt=50.0))
        assert [e.request_id for e in await queue.due(10.0, 10)] == ["a", "b", "c"]
        assert [e.request_id for e in await queue.due(10.0, 2, busy={"a"})] == ["b", "c"]
        assert await queue.next_due(busy={"a", "b", "c"}) == 50.0
        await queue.update(dataclasses.replace(event("b", next_attempt=20.0), attempts=2))
        await queue.remove("a")
        await queue.close()
        reopened = EventQueue(path)
        await reopened.open()
        rows = await reopened.due(100.0, 10)
        assert [(e.request_id, e.attempts) for e in rows] == [("b", 2), ("c", 0), ("later", 0)]
        assert await reopened.stats() == (3, 0.0)
        await reopened.close()

    asyncio.run(scenario())


def test_a_committed_event_is_there_after_a_crash_without_close(tmp_path: Path) -> None:
    """A put that returned is on disk: a second connection, as after kill -9, sees it."""

    async def scenario() -> None:
        path = tmp_path / "fn.sqlite"
        crashed = EventQueue(path)
        await crashed.open()
        await crashed.put(event("kept"))
        survivor = EventQueue(path)  # the first is never closed
        await survivor.open()
        assert [e.request_id for e in await survivor.due(1.0, 5)] == ["kept"]
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        await survivor.close()
        await crashed.close()

    asyncio.run(scenario())


def test_puts_at_once_commit_together_and_a_caller_that_gives_up_loses_nobody(
    tmp_path: Path,
) -> None:
    """Many puts at once are all on disk when each returns; a caller cancelled while its
    batch commits does not stop the others' commit; a put on a closed queue fails."""

    async def scenario() -> None:
        path = tmp_path / "fn.sqlite"
        queue = EventQueue(path)
        await queue.open()
        names = [f"e{n}" for n in range(50)]
        first = asyncio.create_task(queue.put(event("first")))
        await asyncio.sleep(0)  # the first caller now commits, the others wait behind it
        others = [asyncio.create_task(queue.put(event(name))) for name in names]
        first.cancel()
        await asyncio.gather(*others)
        survivor = EventQueue(path)
        await survivor.open()
        stored = {e.request_id for e in await survivor.due(1.0, 100)}
        assert set(names) <= stored <= {*names, "first"}
        await survivor.close()
        await queue.close()
        with pytest.raises(RuntimeError, match="closed"):
            await queue.put(event("late"))

    asyncio.run(scenario())


class Host:
    """The worker's view of the daemon, with a scripted invoker and recorded deliveries."""

    def __init__(self, invoker: Invoker, settings: AsyncSettings) -> None:
        self._invoker = invoker
        self._settings = settings
        self.delivered: list[tuple[str, Delivery]] = []
        self.refusals = 0

    def settings(self, function: str, qualifier: str) -> AsyncSettings:
        return self._settings

    def reserved_concurrency(self, function: str) -> int | None:
        return None

    def invoker(self, function: str, qualifier: str) -> tuple[Invoker, str] | None:
        return self._invoker, qualifier

    def function_arn(self, function: str, qualifier: str) -> str | None:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{function}:{qualifier}"

    async def deliver(self, destination: str, delivery: Delivery) -> None:
        if self.refusals:
            self.refusals -= 1
            raise DestinationError("queue unreachable (scripted)")
        self.delivered.append((destination, delivery))


class Scripted:
    """Answers each invocation with the next item: a result, or an error to raise."""

    def __init__(self, *answers: InvokeResult | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def start(self) -> None:
        return None

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        return None


async def run_until_empty(worker: AsyncWorker, clock: ManualClock, step: float) -> None:
    """Drive the worker with the clock: handle what is due, advance, until the queue is empty."""
    for _ in range(200):
        for queued in await worker.queue.due(clock(), 10):
            await worker.handle(queued)
        if (await worker.queue.stats())[0] == 0:
            return
        clock.advance(step)
    raise AssertionError("the queue never emptied")


def test_function_errors_are_retried_after_one_then_two_minutes(tmp_path: Path) -> None:
    """Two retries, 60 s and 120 s after the attempts before them, then RetriesExhausted
    with approximateInvokeCount 3 to on_failure and the original event to the DLQ."""

    async def scenario() -> None:
        clock = ManualClock(1000.0)
        failed = function_error("ValueError", "no", "r1", 0.0)
        invoker = Scripted(failed, failed, failed)
        host = Host(invoker, AsyncSettings(on_failure="f", dead_letter="dlq"))
        queue = EventQueue(tmp_path / "fn.sqlite")
        await queue.open()
        worker = AsyncWorker("fn", queue, host, clock)
        await queue.put(event("r1", 1000.0))
        await worker.handle((await queue.due(clock(), 1))[0])
        assert await queue.due(1059.0, 1) == []
        [retry] = await queue.due(1060.0, 1)
        assert retry.attempts == 1
        clock.advance(60)
        await worker.handle(retry)
        assert await queue.due(1179.0, 1) == []
        clock.advance(120)
        await worker.handle((await queue.due(clock(), 1))[0])
        assert invoker.calls == 3
        [(first, record), (second, dead)] = host.delivered
        document = json.loads(record.body)
        assert (first, document["requestContext"]["approximateInvokeCount"]) == ("f", 3)
        assert document["requestContext"]["condition"] == "RetriesExhausted"
        assert (second, dead.body, dead.attributes["ErrorCode"]) == (
            "dlq",
            b'{"n": 1}',
            ("Number", "200"),
        )
        assert await queue.stats() == (0, None)
        await queue.close()

    asyncio.run(scenario())


def test_throttles_back_off_until_the_event_is_too_old(tmp_path: Path) -> None:
    """Throttles never count an attempt; they put the event back with growing waits,
    and once it is older than maximum_event_age_in_seconds it is given up as
    EventAgeExceeded, without a responseContext since the function never answered."""

    async def scenario() -> None:
        clock = ManualClock(0.0)
        invoker = Scripted(*[ThrottledError("busy") for _ in range(100)])
        host = Host(invoker, AsyncSettings(maximum_event_age_in_seconds=60, on_failure="f"))
        queue = EventQueue(tmp_path / "fn.sqlite")
        await queue.open()
        worker = AsyncWorker("fn", queue, host, clock)
        await queue.put(event("old", 0.0))
        await worker.handle((await queue.due(0.0, 1))[0])
        [again] = await queue.due(1.0, 1)
        assert (again.setbacks, again.attempts, again.next_attempt) == (1, 0, 1.0)
        await run_until_empty(worker, clock, 1.0)
        [(_, record)] = host.delivered
        document = json.loads(record.body)
        assert document["requestContext"]["condition"] == "EventAgeExceeded"
        assert document["requestContext"]["approximateInvokeCount"] == 0
        assert "responseContext" not in document
        assert 5 <= invoker.calls <= 8  # 1, 2, 4, 8, 16, 32 s apart: about six tries a minute
        await queue.close()

    asyncio.run(scenario())


def test_a_failing_destination_keeps_the_event_until_its_record_is_delivered(
    tmp_path: Path,
) -> None:
    """The destination fails twice; the worker waits and sends again, and the event
    leaves the queue only after the delivery; the worker is Degraded meanwhile."""

    async def scenario() -> None:
        clock = ManualClock(0.0)
        sleeps: list[float] = []
        host = Host(Scripted(InvokeResult(b'{"ok": 1}', "r")), AsyncSettings(on_success="s"))
        host.refusals = 2
        queue = EventQueue(tmp_path / "fn.sqlite")
        await queue.open()

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            assert (await queue.stats())[0] == 1
            assert worker.health.problem is not None

        worker = AsyncWorker("fn", queue, host, clock, sleep)
        await queue.put(event("r"))
        await worker.handle((await queue.due(0.0, 1))[0])
        assert sleeps == [1.0, 2.0]
        assert [name for name, _ in host.delivered] == ["s"]
        assert worker.health.problem is None
        assert worker.health.failures["destination"] == 2
        assert await queue.stats() == (0, None)
        await queue.close()

    asyncio.run(scenario())

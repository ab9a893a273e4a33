"""Nothing hidden: failing background work shows in the mapping's state and metrics, is
retried (or fails the mapping visibly), and never settles a record early. Driven through
the real MappingRunner, session, lanes and dispatcher with the package's in-memory
source; the failures are real exceptions raised where a connector's would be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from bridge.errors import PermanentDestinationError, PermanentSourceError
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner, MappingState
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import Ownership
from bridge.records import InvokeResult
from bridge.retry import Backoff
from bridge.testing import MemoryDestination, MemorySource, ScriptedInvoker, memory_records

FAST = Backoff(initial=0.001, maximum=0.01)


def runner_for(
    factory: Callable[[], Any],
    *,
    invoker: Any = None,
    destination: Any = None,
    retry: RetryPolicy | None = None,
    store_problem: Callable[[], str | None] | None = None,
) -> MappingRunner:
    return MappingRunner(
        name="m",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        settings=MappingSettings(
            batch=BatchPolicy(max_records=5),
            retry=retry or RetryPolicy(backoff=FAST),
            parallelization_factor=1,
            maximum_concurrency=2,
        ),
        source_factory=factory,
        invoker=invoker or ScriptedInvoker(),
        destination=destination,
        reconnect_backoff=FAST,
        store_problem=store_problem,
    )


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def stopped(runner: MappingRunner, task: asyncio.Task[None]) -> None:
    runner.stop()
    await asyncio.wait_for(task, 5)


class BackgroundSource(MemorySource):
    """A source with a background task, as Kafka's committer or Redis's acknowledger:
    `work(source)` runs as that task in every session."""

    def __init__(self, work: Callable[[BackgroundSource], Any], **options: Any) -> None:
        super().__init__(memory_records(20), **options)
        self.work = work
        self.sessions = 0

    async def open(self, ownership: Ownership) -> None:
        await super().open(ownership)
        self.sessions += 1
        self.task = ownership.spawn(self.work(self), "committer")

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def test_a_failing_background_task_ends_the_session_and_is_counted() -> None:
    """A background task that raises ends its session like a failing read: the mapping
    reports the failure, counts it under the task's name and starts a new session."""
    opened: list[BackgroundSource] = []

    async def breaks_once(source: BackgroundSource) -> None:
        await asyncio.sleep(0.01)
        if len(opened) == 1:
            raise RuntimeError("commit machinery broke")
        await asyncio.Event().wait()

    def factory() -> BackgroundSource:
        source = BackgroundSource(breaks_once)
        opened.append(source)
        return source

    async def main() -> None:
        runner = runner_for(factory)
        task = asyncio.create_task(runner.run())
        await until(lambda: len(opened) == 2 and runner.state is MappingState.ENABLED)
        assert runner.health.failures["committer"] == 1
        assert runner.health.failures["source"] == 0
        await stopped(runner, task)

    asyncio.run(main())


def test_a_background_task_that_ends_by_itself_is_a_failure_too() -> None:
    """Background loops run until cancelled; one that returns has stopped doing its work,
    which must not go unnoticed."""
    opened: list[BackgroundSource] = []

    async def returns_early(source: BackgroundSource) -> None:
        if len(opened) == 1:
            return
        await asyncio.Event().wait()

    def factory() -> BackgroundSource:
        opened.append(BackgroundSource(returns_early))
        return opened[-1]

    async def main() -> None:
        runner = runner_for(factory)
        task = asyncio.create_task(runner.run())
        await until(lambda: len(opened) == 2)
        assert runner.health.failures["committer"] == 1
        await stopped(runner, task)

    asyncio.run(main())


def test_a_background_task_refused_for_good_fails_the_mapping_with_the_reason() -> None:
    """A permanent refusal inside a background task (no permission to acknowledge) marks
    the mapping Failed with that reason instead of restarting it for ever."""

    async def refused(source: BackgroundSource) -> None:
        raise PermanentSourceError("XACK: refused: NOPERM")

    async def main() -> None:
        runner = runner_for(lambda: BackgroundSource(refused))
        await asyncio.wait_for(runner.run(), 5)
        assert runner.state is MappingState.FAILED
        assert "NOPERM" in runner.state_reason

    asyncio.run(main())


def test_reported_problems_make_the_mapping_degraded_until_they_recover() -> None:
    """Work a source retries by itself (a commit the broker refuses for now) is reported:
    the mapping is Degraded with the reason meanwhile, Enabled again once it recovers,
    and every failure is counted."""

    async def idle(source: BackgroundSource) -> None:
        await asyncio.Event().wait()

    source = BackgroundSource(idle)

    async def main() -> None:
        runner = runner_for(lambda: source)
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state is MappingState.ENABLED)
        source.ownership.failed("commits", "committing offsets failed: rebalance in progress")
        source.ownership.failed("commits", "committing offsets failed: rebalance in progress")
        assert runner.state is MappingState.DEGRADED
        assert runner.state_reason == "commits: committing offsets failed: rebalance in progress"
        source.ownership.recovered("commits")
        assert runner.state is MappingState.ENABLED
        assert runner.health.failures["commits"] == 2
        await stopped(runner, task)

    asyncio.run(main())


def test_a_checkpoint_store_that_cannot_write_degrades_the_mappings_that_use_it() -> None:
    """The store's problem is shown on every mapping that keeps its positions there."""
    problem: list[str] = []

    async def main() -> None:
        runner = runner_for(
            lambda: MemorySource(memory_records(3)),
            store_problem=lambda: problem[0] if problem else None,
        )
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state is MappingState.ENABLED)
        problem.append("cannot write checkpoints to state.sqlite3: database is locked")
        assert runner.state is MappingState.DEGRADED
        assert runner.state_reason.startswith("checkpoint store: cannot write checkpoints")
        problem.clear()
        assert runner.state is MappingState.ENABLED
        await stopped(runner, task)

    asyncio.run(main())


def failing(event: dict[str, Any], request_id: str) -> InvokeResult:
    return InvokeResult(
        payload=b'{"errorMessage": "boom", "errorType": "Error"}',
        request_id=request_id,
        function_error="Unhandled",
    )


def test_a_destination_failing_for_now_degrades_the_mapping_until_it_is_written() -> None:
    """While the on-failure destination cannot be written the mapping is Degraded with
    the reason and the records stay unsettled; once it is written they are settled."""
    source = MemorySource(memory_records(1))
    destination = MemoryDestination()
    destination.fail_next = 10**6
    retry = RetryPolicy(maximum_retry_attempts=0, backoff=Backoff(initial=0.02, maximum=0.02))

    async def main() -> None:
        runner = runner_for(
            lambda: source,
            invoker=ScriptedInvoker(failing),
            destination=destination,
            retry=retry,
        )
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state is MappingState.DEGRADED)
        assert runner.state_reason == "destination: destination unavailable (scripted)"
        assert source.settled == []
        destination.fail_next = 0
        await until(lambda: source.settled)
        assert runner.state is MappingState.ENABLED
        assert len(destination.failures) == 1
        assert runner.health.failures["destination"] >= 1
        await stopped(runner, task)

    asyncio.run(main())


class RefusingDestination(MemoryDestination):
    async def send(self, failure: Any, formatter: Any) -> None:
        raise PermanentDestinationError("sqs destination: SendMessage failed: QueueDoesNotExist")


def test_a_destination_refusing_for_good_fails_the_mapping_and_settles_nothing() -> None:
    """`DestinationError.retriable` is honoured: a missing queue fails the mapping with
    the reason instead of retrying in silence; the record stays unsettled."""
    source = MemorySource(memory_records(1))

    async def main() -> None:
        runner = runner_for(
            lambda: source,
            invoker=ScriptedInvoker(failing),
            destination=RefusingDestination(),
            retry=RetryPolicy(maximum_retry_attempts=0, backoff=FAST),
        )
        await asyncio.wait_for(runner.run(), 5)
        assert runner.state is MappingState.FAILED
        assert "QueueDoesNotExist" in runner.state_reason
        assert source.settled == []
        assert runner.health.failures["destination"] == 1

    asyncio.run(main())


def test_a_source_that_cannot_be_built_is_retried_with_its_reason_shown() -> None:
    """Building the source is part of connecting: a failure there shows as Connecting
    with the reason and is retried, never left Connecting for ever without one."""
    attempts: list[int] = []

    def factory() -> MemorySource:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("cannot resolve broker.example")
        return MemorySource(memory_records(2))

    async def main() -> None:
        runner = runner_for(factory)
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state is MappingState.ENABLED)
        assert len(attempts) == 3
        assert runner.health.failures["source"] == 2
        await stopped(runner, task)

    asyncio.run(main())


def test_a_source_whose_library_is_missing_fails_the_mapping() -> None:
    """A connector whose client library is not installed cannot come back by retrying:
    the mapping fails and says so."""

    def factory() -> MemorySource:
        raise ModuleNotFoundError("No module named 'aiokafka'")

    async def main() -> None:
        runner = runner_for(factory)
        await asyncio.wait_for(runner.run(), 5)
        assert runner.state is MappingState.FAILED
        assert "aiokafka" in runner.state_reason

    asyncio.run(main())


class CloseBroke(BaseException):
    """Not an Exception: nothing in the mapping catches it."""


class ClosesBadly(MemorySource):
    """A source whose close() raises something no handler expects (a bug)."""

    async def close(self) -> None:
        raise CloseBroke("close() broke")


def test_a_mapping_task_that_crashes_leaves_the_mapping_failed_with_the_reason() -> None:
    """The daemon watches each mapping's task: one that ends with an unhandled error
    marks the mapping Failed with the error, so /readyz names it."""
    from bridge.app import _report_crash

    async def main() -> None:
        runner = runner_for(lambda: ClosesBadly(memory_records(1)))
        task = asyncio.create_task(runner.run())
        task.add_done_callback(lambda ended: _report_crash(runner, ended))
        await until(lambda: runner.state is MappingState.ENABLED)
        runner.stop()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        assert runner.state is MappingState.FAILED
        assert runner.state_reason == "internal error: CloseBroke: close() broke"
        assert runner.health.failures["internal"] == 1

    asyncio.run(main())


def test_cancel_and_wait_outlasts_a_task_that_loses_its_first_cancellation() -> None:
    """A task that swallows a cancellation (as one lost to an expiring timeout on 3.11)
    and waits again is cancelled again: closing it ends."""
    from bridge.ops.health import cancel_and_wait

    async def swallows_one() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # lost, as 3.11's timeouts can
            await asyncio.sleep(60)
        await asyncio.Event().wait()

    async def scenario() -> bool:
        task = asyncio.create_task(swallows_one())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait([task], patience=0.05), timeout=5)
        return task.cancelled()

    assert asyncio.run(scenario())

"""The source contract: each case written once and run against every source of
tests/contract/source_feeds.KINDS on its real server (Redis, a Kafka-protocol broker,
moto's SQS, Kinesis and DynamoDB Streams, a folder).

Cases drive a source the way a session does (`open`, `read` in a loop, settling through
the method the source's mode calls for, `close`), or run it in a MappingRunner with a
scripted function and an in-memory on-failure destination. Where kinds differ, the
registry says how, as data; waits poll up to a bound and nothing depends on timings.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from itertools import chain
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bridge.codec import dumps
from bridge.errors import SourceError
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.dispatch import RetryPolicy
from bridge.protocols import Source
from bridge.records import FailureCondition, InvokeResult, Record
from bridge.testing import MemoryDestination, ScriptedInvoker, StandaloneOwnership
from tests.contract.cases import for_every_kind
from tests.contract.source_feeds import KINDS
from tests.contract.source_harness import (
    CASES,
    FAST,
    TIMEOUT,
    Bench,
    Kind,
    build,
    items_of,
    once_each,
    settle_all,
    until,
)

# Longer than any case takes when the source behaves.
HANG_GUARD = 60.0
# Larger than a batch may be in the oversized case, and smaller than the padding of the
# record that is too large for it.
SMALL_BATCH_BYTES = 2500
OVERSIZED_PAD = 3000


def contract(case: str) -> Callable[[Callable[..., None]], Any]:
    return for_every_kind(case, CASES, KINDS)


Body = Callable[[Bench], Awaitable[None]]


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., None]:
    """run(kind, body, proxied=False): a fresh feed of the kind and a checkpoint store,
    `body` run with them, all within HANG_GUARD."""

    def runner(kind: Kind, body: Body, proxied: bool = False) -> None:
        fixtures = {name: request.getfixturevalue(name) for name in kind.fixtures}

        async def main() -> None:
            # Flushed only on close: the sources of one test share the store, as the
            # sessions of one daemon do.
            store = SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3", flush_interval=3600)
            await store.open()
            try:
                async with kind.feed(tmp_path, fixtures, proxied) as feed:
                    await body(Bench(kind, feed, store, tmp_path))
            finally:
                await store.close()

        asyncio.run(asyncio.wait_for(main(), HANG_GUARD))

    return runner


def assert_delivered(bench: Bench, records: list[Record], expected: list[str]) -> None:
    """Exactly the expected records: an ordered kind each once and, per partition, in the
    expected order; another at least once."""
    delivered = bench.ids(records)
    if not bench.kind.ordered:
        assert set(delivered) == set(expected), delivered
        return
    assert Counter(delivered) == Counter(expected), delivered
    partitions: dict[str, list[str]] = {}
    for record, record_id in zip(records, delivered, strict=True):
        partitions.setdefault(record.partition, []).append(record_id)
    for partition, in_partition in partitions.items():
        assert in_partition == [i for i in expected if i in in_partition], partition


async def nothing_more(bench: Bench) -> None:
    """A new source finds nothing left to deliver: everything was settled."""
    async with bench.opened() as source:
        assert bench.ids(await bench.quiet(source)) == []


@contract("reads_in_order")
def test_reads_in_order(kind: Kind, run: Callable[..., None]) -> None:
    """Records produced into one partition come once each; an ordered kind's in the
    order they were produced."""

    async def body(bench: Bench) -> None:
        ids = await bench.produce(6)
        async with bench.opened() as source:
            records = await bench.read(source, ids)
        assert once_each(bench.ids(records))
        assert_delivered(bench, records, ids)

    run(kind, body)


@contract("settling")
def test_settled_records_do_not_come_again(kind: Kind, run: Callable[..., None]) -> None:
    """Settled through the method the mode calls for, then closed: a new source delivers
    none of them again."""

    async def body(bench: Bench) -> None:
        ids = await bench.produce(5)
        async with bench.opened() as source:
            records = await bench.read(source, ids)
            assert sorted(bench.ids(records)) == sorted(ids)
            await settle_all(source, records)
        await nothing_more(bench)

    run(kind, body)


async def redelivery(bench: Bench, crash: bool) -> None:
    """Read six, settle the first three as read, end the source (closed, or dropped as a
    crashed process leaves it: its background work gone, nothing closed); a new source
    delivers the three unsettled ones again (a queue once their visibility timeout has
    passed) and none of the settled ones, unless the kind says a crash may repeat them."""
    ids = await bench.produce(6)
    ownership = StandaloneOwnership()
    first = bench.source()
    await first.open(ownership)
    try:
        records = await bench.read(first, ids)
        assert sorted(bench.ids(records)) == sorted(ids)
        await settle_all(first, records[:3])
        settled, unsettled = bench.ids(records[:3]), bench.ids(records[3:])
        if crash:
            await ownership.tasks.close()
        else:
            await first.close()
        async with bench.opened() as again:
            came = await bench.read(again, unsettled)
    finally:
        await first.close()
    if crash and bench.kind.crash_repeats_settled:
        assert set(unsettled) <= set(bench.ids(came)) <= set(settled + unsettled)
    else:
        assert_delivered(bench, came, unsettled)


@contract("redelivery_after_close")
def test_unsettled_records_come_again_after_close(kind: Kind, run: Callable[..., None]) -> None:
    async def body(bench: Bench) -> None:
        await redelivery(bench, crash=False)

    run(kind, body)


@contract("redelivery_after_crash")
def test_unsettled_records_come_again_after_a_crash(kind: Kind, run: Callable[..., None]) -> None:
    async def body(bench: Bench) -> None:
        await redelivery(bench, crash=True)

    run(kind, body)


@contract("pause_resume")
def test_paused_partition_waits_while_others_flow(kind: Kind, run: Callable[..., None]) -> None:
    """A paused partition yields nothing until it is resumed, and then all it held, in
    order; the other partition keeps flowing meanwhile."""
    assert kind.partitions >= 2

    async def body(bench: Bench) -> None:
        early = await bench.produce(1, partition=0) + await bench.produce(1, partition=1)
        async with bench.opened() as source:
            assert source.can_pause
            records = await bench.read(source, early)
            paused = {bench.kind.payload_id(r.payload): r.partition for r in records}[early[0]]
            source.pause([paused])
            held = await bench.produce(3, partition=0)
            flowing = await bench.produce(3, partition=1)
            assert bench.ids(await bench.read(source, flowing)) == flowing
            source.resume([paused])
            assert bench.ids(await bench.read(source, held)) == held

    run(kind, body)


class PartialFunction:
    """Reports one record (`target`) failed the first time it sees it; records what each
    invocation delivered and which of it the kind's rule counts as done."""

    def __init__(self, kind: Kind, target: str) -> None:
        self.kind = kind
        self.target = target
        self.delivered: list[list[str]] = []
        self.done: list[list[str]] = []

    def __call__(self, event: dict[str, Any], request_id: str) -> InvokeResult:
        items = items_of(event)
        ids = [self.kind.payload_id(item) for item in items]
        failures = []
        done = ids
        if self.target in ids and not any(self.target in call for call in self.delivered):
            at = ids.index(self.target)
            failures = [{"itemIdentifier": self.kind.item_identifier(items[at])}]
            rest = self.kind.partial_retry == "rest_of_partition"
            done = ids[:at] if rest else ids[:at] + ids[at + 1 :]
        self.delivered.append(ids)
        self.done.append(done)
        return InvokeResult(dumps({"batchItemFailures": failures}), request_id)


@contract("partial_batch")
def test_partial_batch_response(kind: Kind, run: Callable[..., None]) -> None:
    """With ReportBatchItemFailures, a record the function reports failed comes again (a
    stream retries from it, a queue hands out only it again); every record is done
    exactly once, none is delivered again once done, and all end up settled."""

    async def body(bench: Bench) -> None:
        ids = await bench.produce(4)
        function = PartialFunction(bench.kind, target=ids[1])
        retry = RetryPolicy(report_batch_item_failures=True, backoff=FAST)
        batch = BatchPolicy(max_records=10)
        async with bench.mapping(ScriptedInvoker(function), None, batch=batch, retry=retry):
            await until(lambda: set(ids) <= set(chain(*function.done)), "every record done")
        done = list(chain(*function.done))
        assert sorted(done) == sorted(ids)
        assert list(chain(*function.delivered)).count(ids[1]) == 2
        for index, call in enumerate(function.delivered):
            assert not set(call) & set(chain(*function.done[:index])), "done, then again"
        if bench.kind.partial_retry == "rest_of_partition":
            assert done == ids
        await nothing_more(bench)

    run(kind, body)


@contract("oversized")
def test_oversized_record_goes_to_the_destination(kind: Kind, run: Callable[..., None]) -> None:
    """A record too large for a batch of its own is never invoked: it goes to the
    on-failure destination as MaximumPayloadSizeExceeded and is settled; the records
    around it are delivered."""

    async def body(bench: Bench) -> None:
        small = await bench.produce(1)
        large = await bench.produce(1, pad=OVERSIZED_PAD)
        small += await bench.produce(1)
        invoker = ScriptedInvoker()
        destination = MemoryDestination()
        batch = BatchPolicy(max_records=10, max_bytes=SMALL_BATCH_BYTES)
        async with bench.mapping(invoker, destination, batch=batch, retry=RetryPolicy()):
            await until(
                lambda: set(small) <= delivered(bench, invoker) and bool(destination.failures),
                "the small records delivered and the large one given up",
            )
        assert delivered(bench, invoker) == set(small)
        [failure] = destination.failures
        assert failure.condition is FailureCondition.PAYLOAD_SIZE_EXCEEDED
        assert bench.ids(failure.records) == large
        await nothing_more(bench)

    run(kind, body)


def event_ids(bench: Bench, event: dict[str, Any]) -> list[str]:
    return [bench.kind.payload_id(item) for item in items_of(event)]


def delivered(bench: Bench, invoker: ScriptedInvoker) -> set[str]:
    return set(chain.from_iterable(event_ids(bench, event) for event in invoker.events))


def refuse(event: dict[str, Any], request_id: str) -> InvokeResult:
    error = {"errorMessage": "refused", "errorType": "ValueError"}
    return InvokeResult(dumps(error), request_id, function_error="Unhandled")


ALWAYS_FAILING = RetryPolicy(maximum_retry_attempts=0, backoff=FAST)


async def given_up_to_the_destination(bench: Bench, ids: list[str]) -> None:
    """A stream gives the records up in failure records with the kind's batch info, to
    the on-failure destination, and commits them after."""
    invoker, destination = ScriptedInvoker(refuse), MemoryDestination()

    def given_up() -> list[str]:
        return [i for failure in destination.failures for i in bench.ids(failure.records)]

    batch = BatchPolicy(max_records=10)
    async with bench.mapping(invoker, destination, batch=batch, retry=ALWAYS_FAILING):
        await until(lambda: set(ids) <= set(given_up()), "failure records of every record")
    assert sorted(given_up()) == sorted(ids)
    for document in destination.documents:
        assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert bench.kind.batch_info in document
    await nothing_more(bench)


async def left_to_the_queue(bench: Bench, ids: list[str]) -> None:
    """A queue writes no failure record: the messages are left to the queue (its redrive
    policy deals with them), which hands them out again."""
    invoker, destination = ScriptedInvoker(refuse), MemoryDestination()

    def handed_out_again() -> bool:
        calls = Counter(chain.from_iterable(event_ids(bench, e) for e in invoker.events))
        return bool(calls) and max(calls.values()) >= 2

    batch = BatchPolicy(max_records=10)
    async with bench.mapping(invoker, destination, batch=batch, retry=ALWAYS_FAILING):
        await until(handed_out_again, "a failed message handed out again")
    assert destination.failures == []
    async with bench.opened() as source:
        assert set(ids) <= set(bench.ids(await bench.read(source, ids)))


FAILURE_RULES = {"destination": given_up_to_the_destination, "queue": left_to_the_queue}


@contract("on_failure")
def test_records_the_function_keeps_failing(kind: Kind, run: Callable[..., None]) -> None:
    """The function always fails and no retries are allowed: the records end up where
    the kind's rule says (`Kind.failures_to`)."""

    async def body(bench: Bench) -> None:
        await FAILURE_RULES[bench.kind.failures_to](bench, await bench.produce(3))

    run(kind, body)


@contract("close_twice")
def test_closing_twice_or_unopened_is_harmless(kind: Kind, run: Callable[..., None]) -> None:
    """close() on a source never opened, and a second close(), raise nothing and leave
    nothing behind that keeps a later source from reading."""

    async def body(bench: Bench) -> None:
        await bench.source().close()
        source = bench.source()
        await source.open(StandaloneOwnership())
        await source.close()
        await source.close()
        ids = await bench.produce(1)
        async with bench.opened() as again:
            assert bench.ids(await bench.read(again, ids)) == ids

    run(kind, body)


async def first_failure(source: Source) -> NoReturn:
    """Open and read until the source raises (or hang, for the caller's timeout)."""
    await source.open(StandaloneOwnership())
    while True:
        await source.read()


@contract("unreachable")
def test_nothing_listening_is_a_retriable_error(
    kind: Kind, tmp_path: Path, run: Callable[..., None]
) -> None:
    """A source pointed where nothing listens raises a retriable SourceError from open()
    or read() within a bounded time, and never shows a password of its settings."""
    target = kind.unreachable(tmp_path)

    async def body(bench: Bench) -> None:
        source = build(kind, target.settings, bench.store, tmp_path)
        try:
            with pytest.raises(SourceError) as caught:
                await asyncio.wait_for(first_failure(source), TIMEOUT)
        finally:
            await source.close()
        assert caught.value.retriable
        if target.secret is not None:
            assert target.secret not in f"{caught.value} {caught.value!r}"

    run(kind, body)


async def broken(source: Source) -> str:
    """Read until the source raises a retriable SourceError or reports a problem."""
    while source.problem is None:
        try:
            await source.read()
        except SourceError as exc:
            assert exc.retriable, exc
            return str(exc)
    return source.problem


@contract("server_lost")
def test_a_server_lost_while_reading(kind: Kind, run: Callable[..., None]) -> None:
    """The server goes away under a reading source: read() raises a retriable SourceError
    or the source reports a problem. Once the server is back, a new source delivers what
    was read but not settled, and what came meanwhile: nothing is lost."""

    async def body(bench: Bench) -> None:
        feed = bench.feed
        assert feed.cut is not None and feed.restore is not None
        ids = await bench.produce(3)
        source = bench.source()
        await source.open(StandaloneOwnership())
        try:
            assert sorted(bench.ids(await bench.read(source, ids))) == sorted(ids)
            feed.cut()
            assert await asyncio.wait_for(broken(source), TIMEOUT)
        finally:
            feed.restore()
            await source.close()
        later = await bench.produce(2)
        async with bench.opened() as again:
            assert set(ids + later) <= set(bench.ids(await bench.read(again, ids + later)))

    run(kind, body, proxied=True)

"""The source contract's registry and the means its cases share (tests/contract/test_sources.py
runs the cases; tests/contract/source_feeds.py has the real places records are produced into).

A `Kind` is one source connector: its `sources:` type name, a feed that makes a fresh place
on the kind's real server and produces records into it, how to read a produced record's id
back from its payload, and, as data, the kind's rules where the contract lets kinds differ
and the cases that do not apply to it. A new connector gets every case by adding a `Kind`
to KINDS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bridge.config.plugins import Identity, SourceContext
from bridge.config.registry import registered
from bridge.pipeline.batching import BatchPolicy
from bridge.pipeline.checkpoints import SqliteCheckpointStore
from bridge.pipeline.dispatch import RetryPolicy
from bridge.pipeline.mapping import MappingRunner
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import Destination, Invoker, Source
from bridge.records import Record
from bridge.retry import Backoff
from bridge.testing import StandaloneOwnership
from tests.contract.cases import check_declared

CASES = frozenset(
    {
        "reads_in_order",
        "settling",
        "redelivery_after_close",
        "redelivery_after_crash",
        "pause_resume",
        "partial_batch",
        "oversized",
        "on_failure",
        "close_twice",
        "unreachable",
        "server_lost",
    }
)

# How long a case waits for records it expects before it fails.
TIMEOUT = 15.0
FAST = Backoff(initial=0.01, maximum=0.05)
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:contract"

# produce(ids, partition, pad): each id becomes one record whose payload carries it and
# at least `pad` more bytes; in the given order, into the kind's `partition`-th partition.
Produce = Callable[[Sequence[str], int, int], Awaitable[None]]


@dataclass
class Feed:
    """A fresh place on the kind's server for one test: the settings of a source that reads
    it (`type:` left out) and a way to produce records into it. A feed made `proxied`
    reaches its server through a proxy the test can `cut` and `restore`."""

    settings: dict[str, Any]
    produce: Produce
    cut: Callable[[], None] | None = None
    restore: Callable[[], None] | None = None


@dataclass(frozen=True)
class Unreachable:
    """Source settings that point where nothing answers, and the secret they hold (which
    no error message may show)."""

    settings: dict[str, Any]
    secret: str | None = None


FeedFactory = Callable[[Path, Mapping[str, Any], bool], AbstractAsyncContextManager[Feed]]


@dataclass(frozen=True)
class Kind:
    """One source connector in the contract."""

    name: str  # the pytest id
    type: str  # its `sources:` type name
    feed: FeedFactory
    # The produced id, from a record's payload (which is also the record's item in an event).
    payload_id: Callable[[dict[str, Any]], str]
    # The `itemIdentifier` a partial batch response names the item by.
    item_identifier: Callable[[dict[str, Any]], object]
    unreachable: Callable[[Path], Unreachable]
    # The key of the batch info in its failure records (`formatter.batch_info`).
    batch_info: str
    # Distinct partitions a feed can produce into.
    partitions: int = 1
    # Records come again exactly once and in order after a restart (streams); otherwise
    # at least once, in any order (queues: after their visibility timeout).
    ordered: bool = True
    # After a partial batch response, what comes again: the failed record and every later
    # one of its partition in the batch (streams), or only the failed record.
    partial_retry: Literal["rest_of_partition", "failed_only"] = "rest_of_partition"
    # Where records the function keeps failing end up: a failure record to the on-failure
    # destination (streams), or back in the queue, whose redrive policy deals with them.
    failures_to: Literal["destination", "queue"] = "destination"
    # Why settled records may come again after a crash (settling still in the background);
    # None: never.
    crash_repeats_settled: str | None = None
    # How long to read to be sure nothing more comes.
    quiet: float = 0.8
    fixtures: tuple[str, ...] = ()
    # Case -> why it does not apply (the test is skipped with that reason).
    does_not_apply: Mapping[str, str] = field(default_factory=dict)
    # Case -> a known difference from the contract (a strict xfail: fixing it fails it).
    known_differences: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_declared(self, CASES)


def new_ids(count: int, label: str = "r") -> list[str]:
    """`count` ids unique to this test, in order."""
    token = uuid.uuid4().hex[:8]
    return [f"{label}{index:02d}-{token}" for index in range(count)]


def body(record_id: str, pad: int) -> dict[str, Any]:
    return {"id": record_id, "pad": "x" * pad}


class Bench:
    """One test's kind, feed and checkpoint store, and sources built for them the way the
    daemon builds them: the registered config model, then `build()`."""

    def __init__(self, kind: Kind, feed: Feed, store: SqliteCheckpointStore, tmp_path: Path):
        self.kind = kind
        self.feed = feed
        self.store = store
        self.tmp_path = tmp_path

    def source(self, **overrides: Any) -> Source:
        return build(self.kind, {**self.feed.settings, **overrides}, self.store, self.tmp_path)

    @asynccontextmanager
    async def opened(self, **overrides: Any) -> AsyncIterator[Source]:
        source = self.source(**overrides)
        await source.open(StandaloneOwnership())
        try:
            yield source
        finally:
            await source.close()

    async def produce(self, count: int, *, partition: int = 0, pad: int = 0) -> list[str]:
        ids = new_ids(count)
        await self.feed.produce(ids, partition, pad)
        return ids

    def ids(self, records: Sequence[Record]) -> list[str]:
        return [self.kind.payload_id(record.payload) for record in records]

    async def read(self, source: Source, wanted: Collection[str]) -> list[Record]:
        """Read until every wanted id came (or TIMEOUT passed), then for `quiet` more."""
        records: list[Record] = []
        deadline = time.monotonic() + TIMEOUT
        while not set(wanted) <= set(self.ids(records)) and time.monotonic() < deadline:
            records.extend(await source.read())
        return records + await self.quiet(source)

    async def quiet(self, source: Source) -> list[Record]:
        records: list[Record] = []
        deadline = time.monotonic() + self.kind.quiet
        while time.monotonic() < deadline:
            records.extend(await source.read())
        return records

    @asynccontextmanager
    async def mapping(
        self,
        invoker: Invoker,
        destination: Destination | None,
        *,
        batch: BatchPolicy,
        retry: RetryPolicy,
    ) -> AsyncIterator[MappingRunner]:
        """A MappingRunner on a source of this feed, as the daemon runs one (the family's
        keyed lanes included), stopped on exit."""
        family = registered("sources")[self.kind.type].family
        runner = MappingRunner(
            name="contract",
            function_arn=FUNCTION_ARN,
            settings=MappingSettings(
                batch=batch,
                retry=retry,
                parallelization_factor=1,
                maximum_concurrency=2,
                keyed=family.keyed,
            ),
            source_factory=self.source,
            invoker=invoker,
            destination=destination,
            reconnect_backoff=FAST,
        )
        task = asyncio.create_task(runner.run())
        try:
            yield runner
        finally:
            runner.stop()
            await asyncio.wait_for(task, 30)


def build(
    kind: Kind, settings: Mapping[str, Any], store: SqliteCheckpointStore, tmp_path: Path
) -> Source:
    model = registered("sources")[kind.type]
    config = model.model_validate({"type": kind.type, **settings})
    context = SourceContext(
        mapping="contract",
        identity=Identity(),
        checkpoints=store,
        state_dir=tmp_path / "state",
        function_timeout=1.0,
        maximum_concurrency=2,
    )
    source: Source = config.build(context)
    return source


async def settle_all(source: Source, records: Sequence[Record]) -> None:
    """Settle records (in the order they were read) the way the source's mode calls for:
    a queue acknowledges them, a stream commits each partition's newest one."""
    if source.mode.acknowledged:
        await source.acknowledge(records)
    else:
        await source.commit({record.partition: record for record in records})


async def until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def items_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of an event: `Records`, Amazon MQ's `messages` (ActiveMQ) or
    `rmqMessagesByQueue` by queue (RabbitMQ), or Kafka's `records` by topic-partition."""
    if "Records" in event:
        items: list[dict[str, Any]] = event["Records"]
        return items
    if "messages" in event:
        messages: list[dict[str, Any]] = event["messages"]
        return messages
    if "rmqMessagesByQueue" in event:
        return [item for batch in event["rmqMessagesByQueue"].values() for item in batch]
    return [item for batch in event["records"].values() for item in batch]


def once_each(ids: Sequence[str]) -> bool:
    return all(count == 1 for count in Counter(ids).values())

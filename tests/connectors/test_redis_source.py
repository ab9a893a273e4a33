"""The `redis-streams` source and `redis-stream` destination against a real Redis server.

Each test drives the source the way a mapping does: `open()`, `read()` in a loop (in a
task where two consumers run side by side, since reading also keeps leases up),
`settle()`, `close()`. Streams, groups and consumers are unique per test. Leases last
1 s and pending entries are claimable after 0.5 s idle, so hand-overs take about a
second; waits poll for up to `TIMEOUT` and no assertion depends on exact timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.config.plugins import BuildContext, Identity, SourceContext
from bridge.errors import PermanentSourceError
from bridge.records import FailureCondition, FailureRecord, InvokeResult, Record
from bridge.testing import StandaloneOwnership
from connectors.redis.config import RedisStreamDestinationConfig, RedisStreamsSourceConfig
from connectors.redis.events import EntryRecords
from connectors.redis.leases import lease_key, members_key, owner_of
from connectors.redis.source import Phase, RedisStreamsSource, default_consumer
from tests.connectors.reading import QUIET, TIMEOUT, collect, quiet, run, settle

FORMATTER = EntryRecords(server_arn="redis://cache:6379/0", region="us-east-1").formatter("g")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class UnusedCheckpoints:
    """The source keeps its position in Redis; it must not touch the checkpoint store."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the redis source used the checkpoint store ({name})")


class Revocations(StandaloneOwnership):
    """An Ownership that records each revocation and, at that moment, who holds the
    lease of each revoked stream."""

    def __init__(self, admin: redis.Redis, group: str) -> None:
        super().__init__()
        self.admin = admin
        self.group = group
        self.revoked_streams: list[str] = []
        self.holders_at_revocation: dict[str, bytes | None] = {}

    def revoked(self, partitions: Collection[str]) -> None:
        super().revoked(partitions)
        for stream in partitions:
            self.revoked_streams.append(stream)
            self.holders_at_revocation[stream] = self.admin.get(lease_key(self.group, stream))


class Harness:
    """A group on the test server, an admin client, and sources that read it."""

    def __init__(self, redis_url: str, tmp_path: Path, streams: Sequence[str]) -> None:
        self.url = redis_url
        self.tmp_path = tmp_path
        self.streams = list(streams)
        self.group = unique("group")
        self.admin = redis.Redis.from_url(redis_url)

    def config(self, **settings: Any) -> RedisStreamsSourceConfig:
        settings.setdefault("starting_position", "TRIM_HORIZON")
        settings.setdefault("group", self.group)
        settings.setdefault("lease_ttl_seconds", 1)
        settings.setdefault("claim_idle_after_seconds", 0.5)
        settings.setdefault("block_seconds", 0.1)
        settings.setdefault("streams", self.streams)
        return RedisStreamsSourceConfig(type="redis-streams", url=self.url, **settings)

    def source(self, consumer: str = "consumer-a", **settings: Any) -> RedisStreamsSource:
        context = SourceContext(
            mapping="orders-mapping",
            identity=Identity(),
            checkpoints=UnusedCheckpoints(),  # type: ignore[arg-type]
            state_dir=self.tmp_path / consumer,
        )
        source = self.config(consumer=consumer, **settings).build(context)
        assert isinstance(source, RedisStreamsSource)
        return source

    @contextlib.asynccontextmanager
    async def opened(
        self, consumer: str = "consumer-a", **settings: Any
    ) -> AsyncIterator[tuple[RedisStreamsSource, Revocations]]:
        source = self.source(consumer, **settings)
        ownership = Revocations(self.admin, self.group)
        await source.open(ownership)
        try:
            yield source, ownership
        finally:
            await source.close()

    def add(self, stream: str, count: int) -> list[str]:
        """Append `count` entries; their ids in order."""
        return [
            self.admin.xadd(stream, {"n": str(index), "stream": stream}).decode()
            for index in range(count)
        ]

    def pending(self, stream: str) -> dict[str, Any]:
        summary: dict[str, Any] = self.admin.xpending(stream, self.group)
        return summary


async def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def ids_of(records: Sequence[Record], stream: str | None = None) -> list[str]:
    return [str(record.item_id) for record in records if stream in (None, record.partition)]


class Reader:
    """Calls `read()` in a loop as the mapping's reader task does, keeping the records;
    settles them at once if asked."""

    def __init__(self, source: RedisStreamsSource, *, settle_at_once: bool = False) -> None:
        self.source = source
        self.settle_at_once = settle_at_once
        self.records: list[Record] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            records = await self.source.read()
            self.records.extend(records)
            if records and self.settle_at_once:
                await settle(self.source, records)

    async def stop(self) -> None:
        """Stop reading; re-raise what made the loop fail, if anything did."""
        assert self._task is not None
        if self._task.done():
            self._task.result()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def streams(self) -> set[str]:
        return {record.partition for record in self.records}


def split_streams(count: int, members: Sequence[str]) -> list[str]:
    """`count` new stream names that rendezvous hashing spreads over all `members`."""
    while True:
        streams = [unique("stream") for _ in range(count)]
        if {owner_of(stream, members) for stream in streams} == set(members):
            return streams


# -- groups, order, settling --------------------------------------------------------------


def test_trim_horizon_group_starts_at_the_first_entry(redis_url: str, tmp_path: Path) -> None:
    """TRIM_HORIZON creates the group (and the stream) at id 0: entries added before the
    source opened are delivered, in order, with their fields."""
    stream = unique("stream")
    harness = Harness(redis_url, tmp_path, [stream])
    before = harness.add(stream, 3)

    async def main() -> None:
        async with harness.opened(starting_position="TRIM_HORIZON") as (source, _):
            records = await collect(source, 3)
            records += await quiet(source)
            assert ids_of(records) == before
            assert [record.payload["redis"]["fields"]["n"] for record in records] == [
                "0",
                "1",
                "2",
            ]

    run(main)


def test_latest_group_starts_after_existing_entries(redis_url: str, tmp_path: Path) -> None:
    """LATEST creates the group at `$`: only entries added after the group was created
    are delivered. A missing stream is created (MKSTREAM)."""
    old, missing = unique("stream"), unique("stream")
    harness = Harness(redis_url, tmp_path, [old, missing])
    harness.add(old, 2)

    async def main() -> None:
        async with harness.opened(starting_position="LATEST") as (source, _):
            assert await quiet(source) == []
            assert harness.admin.exists(missing)
            new = harness.add(old, 1) + harness.add(missing, 1)
            records = await collect(source, 2)
            records += await quiet(source)
            assert sorted(ids_of(records)) == sorted(new)

    run(main)


def test_existing_group_keeps_its_position(redis_url: str, tmp_path: Path) -> None:
    """starting_position applies only when the group is created: a group created at
    `$` by one source is not moved back to 0 by a later TRIM_HORIZON source."""
    stream = unique("stream")
    harness = Harness(redis_url, tmp_path, [stream])
    harness.add(stream, 2)

    async def main() -> None:
        async with harness.opened(starting_position="LATEST") as (source, _):
            assert await quiet(source, 0.3) == []
        new = harness.add(stream, 1)
        async with harness.opened(starting_position="TRIM_HORIZON") as (source, _):
            records = await collect(source, 1)
            records += await quiet(source)
            assert ids_of(records) == new

    run(main)


def test_entries_arrive_in_order_per_stream_with_their_fields(
    redis_url: str, tmp_path: Path
) -> None:
    """Interleaved writes to two streams come back in each stream's order, as records
    with partition = lane = stream, (ms, seq) positions, the id as item_id, and text
    and binary fields split."""
    first, second = unique("stream"), unique("stream")
    harness = Harness(redis_url, tmp_path, [first, second])
    written: dict[str, list[str]] = {first: [], second: []}
    for index in range(30):
        stream = (first, second)[index % 3 == 0]
        fields = {"n": str(index), "blob": b"\xff\x00" + bytes([index])}
        written[stream].append(harness.admin.xadd(stream, fields).decode())

    async def main() -> None:
        async with harness.opened(read_count=4) as (source, _):
            records = await collect(source, 30)
            records += await quiet(source)
            for stream, ids in written.items():
                assert ids_of(records, stream) == ids
            record = next(record for record in records if record.partition == second)
            assert record.lane == second
            assert record.item_id == record.handle == written[second][0]
            milliseconds, sequence = record.position
            assert f"{milliseconds}-{sequence}" == record.item_id
            assert record.arrival == milliseconds / 1000
            redis_part = record.payload["redis"]
            assert redis_part["stream"] == second
            assert redis_part["fields"] == {"n": "0"}
            assert redis_part["binaryFields"] == {"blob": "/wAA"}
            host_port = redis_url.split("://", 1)[1]
            assert record.payload["eventSourceARN"] == f"redis://{host_port}/{second}"
            assert record.payload["eventID"] == f"{second}:{record.item_id}"

    run(main)


def test_trimmed_pending_entries_are_acknowledged_and_skipped(
    redis_url: str, tmp_path: Path
) -> None:
    """A pending entry whose data was deleted comes back from the pending list without
    fields: it is acknowledged (with a warning) instead of delivered."""
    stream = unique("stream")
    harness = Harness(redis_url, tmp_path, [stream])
    ids = harness.add(stream, 3)

    async def main() -> None:
        async with harness.opened() as (source, _):
            assert ids_of(await collect(source, 3)) == ids
        harness.admin.xdel(stream, ids[1])
        async with harness.opened() as (source, _):
            records = await collect(source, 2)
            records += await quiet(source)
            assert ids_of(records) == [ids[0], ids[2]]
            assert harness.pending(stream)["pending"] == 2
            await settle(source, records)
            await eventually(lambda: harness.pending(stream)["pending"] == 0, "acknowledged")

    run(main)


# -- sharing a group ----------------------------------------------------------------------


def test_two_consumers_split_the_streams(redis_url: str, tmp_path: Path) -> None:
    """Two sources in one group read disjoint sets of streams, each stream wholly and in
    order by the consumer rendezvous hashing assigns it to."""
    members = ["consumer-a", "consumer-b"]
    streams = split_streams(6, members)
    harness = Harness(redis_url, tmp_path, streams)
    expected = {stream: owner_of(stream, members) for stream in streams}

    async def main() -> None:
        async with harness.opened("consumer-a") as (a, _), harness.opened("consumer-b") as (b, _):
            readers = {"consumer-a": Reader(a).start(), "consumer-b": Reader(b).start()}
            await eventually(
                lambda: (
                    {s: "consumer-a" for s in a.owned} | {s: "consumer-b" for s in b.owned}
                    == expected
                    and not a.owned & b.owned
                ),
                "the streams to be split",
            )
            written = {stream: harness.add(stream, 5) for stream in streams}
            await eventually(
                lambda: sum(len(reader.records) for reader in readers.values()) >= 30,
                "all entries",
            )
            await asyncio.sleep(QUIET)
            for reader in readers.values():
                await reader.stop()
            for stream, ids in written.items():
                owner = readers[expected[stream]]
                assert ids_of(owner.records, stream) == ids
            assert readers["consumer-a"].streams().isdisjoint(readers["consumer-b"].streams())
            assert sum(len(reader.records) for reader in readers.values()) == 30
            members_now = {
                member.decode()
                for member in harness.admin.zrange(members_key(harness.group), 0, -1)
            }
            assert members_now == set(members)

    run(main)


def test_survivor_claims_what_a_closed_consumer_left_pending_before_new_entries(
    redis_url: str, tmp_path: Path
) -> None:
    """When a consumer closes with entries unsettled, the other takes over its streams,
    claims those entries once idle (XAUTOCLAIM) and delivers them before newer ones, in
    order; nothing is lost or delivered twice by the survivor."""
    members = ["consumer-a", "consumer-b"]
    streams = split_streams(4, members)
    harness = Harness(redis_url, tmp_path, streams)
    a_streams = [stream for stream in streams if owner_of(stream, members) == "consumer-a"]

    async def main() -> None:
        async with harness.opened("consumer-b") as (b, _):
            b_reader = Reader(b, settle_at_once=True).start()
            async with harness.opened("consumer-a") as (a, _):
                a_reader = Reader(a).start()
                await eventually(
                    lambda: a.owned == set(a_streams) and b.owned.isdisjoint(a_streams),
                    "a to hold its streams alone",
                )
                left = {stream: harness.add(stream, 3) for stream in a_streams}
                await eventually(
                    lambda: len(a_reader.records) == 3 * len(a_streams), "a to read them"
                )
                await a_reader.stop()
                assert b_reader.streams().isdisjoint(a_streams)
            newer = {stream: harness.add(stream, 2) for stream in a_streams}
            await eventually(
                lambda: all(len(ids_of(b_reader.records, s)) >= 5 for s in a_streams),
                "b to deliver a's streams",
            )
            await asyncio.sleep(QUIET)
            await b_reader.stop()
            for stream in a_streams:
                assert ids_of(b_reader.records, stream) == left[stream] + newer[stream]
                assert harness.pending(stream)["pending"] == 0
                assert b.phase_of(stream) is Phase.LIVE

    run(main)


def test_lost_stream_is_revoked_before_its_lease_is_released(
    redis_url: str, tmp_path: Path
) -> None:
    """When a second consumer joins, the first gives up the streams the newcomer wins:
    `revoked` is called while the lease is still its own, the lease is released after,
    the newcomer takes it, and the first no longer reads those streams."""
    members = ["consumer-a", "consumer-b"]
    streams = split_streams(4, members)
    harness = Harness(redis_url, tmp_path, streams)
    b_streams = {stream for stream in streams if owner_of(stream, members) == "consumer-b"}

    async def main() -> None:
        async with harness.opened("consumer-a") as (a, revocations):
            assert a.owned == set(streams)
            a_reader = Reader(a).start()
            async with harness.opened("consumer-b") as (b, _):
                b_reader = Reader(b).start()
                await eventually(lambda: b.owned == b_streams, "b to take its streams")
                assert set(revocations.revoked_streams) == b_streams
                assert set(revocations.holders_at_revocation.values()) == {b"consumer-a"}
                for stream in b_streams:
                    assert harness.admin.get(lease_key(harness.group, stream)) == b"consumer-b"
                assert a.owned == set(streams) - b_streams
                for stream in streams:
                    harness.add(stream, 1)
                await eventually(lambda: len(a_reader.records) + len(b_reader.records) >= 4, "4")
                await asyncio.sleep(QUIET)
                await b_reader.stop()
                assert b_reader.streams() == b_streams
            await a_reader.stop()
            assert a_reader.streams() == set(streams) - b_streams

    run(main)


def test_stream_whose_lease_was_taken_is_revoked_and_no_longer_read(
    redis_url: str, tmp_path: Path
) -> None:
    """If renewing finds another holder, the stream is revoked and reading it stops; the
    other holder's lease is left alone."""
    stolen, kept = unique("stream"), unique("stream")
    harness = Harness(redis_url, tmp_path, [stolen, kept])

    async def main() -> None:
        async with harness.opened() as (source, revocations):
            assert source.owned == {stolen, kept}
            harness.admin.set(lease_key(harness.group, stolen), "intruder", px=30_000)
            await quiet(source, 0.6)
            assert revocations.revoked_streams == [stolen]
            assert source.owned == {kept}
            harness.add(stolen, 1)
            flowing = harness.add(kept, 1)
            records = await collect(source, 1)
            records += await quiet(source)
            assert ids_of(records) == flowing
            assert harness.admin.get(lease_key(harness.group, stolen)) == b"intruder"

    run(main)


def test_close_hands_back_leases_and_membership(redis_url: str, tmp_path: Path) -> None:
    """close() deletes its leases and its member entry, so others need not wait for
    them to lapse."""
    stream = unique("stream")
    harness = Harness(redis_url, tmp_path, [stream])

    async def main() -> None:
        async with harness.opened("consumer-a") as (source, _):
            assert source.owned == {stream}
            assert harness.admin.get(lease_key(harness.group, stream)) == b"consumer-a"
        assert harness.admin.get(lease_key(harness.group, stream)) is None
        assert harness.admin.zrange(members_key(harness.group), 0, -1) == []

    run(main)


# -- errors and names ---------------------------------------------------------------------


def test_refused_credentials_are_permanent_and_not_shown(redis_url: str, tmp_path: Path) -> None:
    """A wrong password fails the mapping (PermanentSourceError); the message shows the
    redacted URL, never the password."""
    host_port = redis_url.split("://", 1)[1]
    harness = Harness(f"redis://app:Hunter2-secret@{host_port}", tmp_path, ["s"])

    async def main() -> None:
        source = harness.source()
        try:
            with pytest.raises(PermanentSourceError) as caught:
                await source.open(Revocations(harness.admin, harness.group))
            assert "Hunter2-secret" not in str(caught.value)
            assert "app:***@" in str(caught.value)
        finally:
            await source.close()

    run(main)


def test_default_group_and_consumer_names(redis_url: str, tmp_path: Path) -> None:
    """The group defaults to lambda-bridge-<mapping>; the consumer to a host-derived
    name that is stable for one state folder and differs between state folders."""
    harness = Harness(redis_url, tmp_path, ["s"])
    config = harness.config(group=None)
    context = SourceContext(
        mapping="orders-mapping",
        identity=Identity(),
        checkpoints=UnusedCheckpoints(),  # type: ignore[arg-type]
        state_dir=tmp_path / "state",
    )
    source = config.build(context)
    assert isinstance(source, RedisStreamsSource)
    assert source.group == "lambda-bridge-orders-mapping"
    assert source.consumer == default_consumer(tmp_path / "state")
    assert default_consumer(tmp_path / "state") == default_consumer(tmp_path / "." / "state")
    assert default_consumer(tmp_path / "state") != default_consumer(tmp_path / "other")
    asyncio.run(source.close())


# -- destination --------------------------------------------------------------------------


def failure_for(records: list[Record]) -> FailureRecord:
    return FailureRecord(
        mapping="orders-mapping",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn=Identity().function_arn("handler"),
        timestamp=1_700_000_000.25,
        last_result=InvokeResult(b"{}", "req-1", function_error="Unhandled"),
    )


def destination_for(redis_url: str, stream: str, tmp_path: Path, **settings: Any) -> Any:
    config = RedisStreamDestinationConfig(
        type="redis-stream", url=redis_url, stream=stream, **settings
    )
    context = BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)
    return config.build("failed", context)


def test_destination_adds_the_failure_record_with_its_payload(
    redis_url: str, tmp_path: Path
) -> None:
    """send() XADDs the failure record (with RedisStreamsBatchInfo and the Redis event
    under `payload`) in `failure`, plus mapping, condition and timestamp fields. The
    record's common shape: tests/contract/test_destinations.py."""
    stream = unique("failed")
    source_stream = unique("stream")
    harness = Harness(redis_url, tmp_path, [source_stream])
    harness.add(source_stream, 2)

    async def main() -> None:
        async with harness.opened() as (source, _):
            records = await collect(source, 2)
            failure = failure_for(records)
            destination = destination_for(redis_url, stream, tmp_path)
            await destination.start()
            try:
                await destination.send(failure, source.formatter)
            finally:
                await destination.close()
        [(_, fields)] = harness.admin.xrange(stream)
        assert fields[b"mapping"] == b"orders-mapping"
        assert fields[b"condition"] == b"RetryAttemptsExhausted"
        assert fields[b"timestamp"] == b"2023-11-14T22:13:20.250Z"
        document = json.loads(fields[b"failure"])
        info = document["RedisStreamsBatchInfo"]
        assert (info["stream"], info["group"], info["batchSize"]) == (
            source_stream,
            harness.group,
            2,
        )
        assert [item["redis"]["id"] for item in document["payload"]["Records"]] == ids_of(records)

    run(main)


def test_destination_trims_to_about_maxlen(redis_url: str, tmp_path: Path) -> None:
    """With maxlen, XADD trims approximately (MAXLEN ~): the stream stays far below the
    number of records sent, and never below maxlen."""
    stream = unique("failed")
    records = [
        Record("s", (1, 0), "1-0", {"redis": {"id": "1-0"}}, 1.0, "s", "1-0"),
    ]

    async def main() -> None:
        destination = destination_for(redis_url, stream, tmp_path, maxlen=10)
        await destination.start()
        try:
            for _ in range(250):
                await destination.send(failure_for(records), FORMATTER)
        finally:
            await destination.close()

    run(main)
    length = redis.Redis.from_url(redis_url).xlen(stream)
    assert 10 <= length < 250

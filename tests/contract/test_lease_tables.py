"""The lease tables of the checkpoint stores (bridge.protocols.LeaseTable): each case runs
against every registered store on its real backing (tests/contract/checkpoint_harness.py),
with two stores on one backing standing for two daemons. Creating leases, taking a free
one (exactly one of two racers wins), renewing, a lease left unrenewed for the ttl taken
by another owner, a steal, releasing, and fencing: a checkpoint written by an owner that
lost its lease is refused and leaves the new owner's position standing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.pipeline.checkpoints import StagedPositions
from bridge.protocols import CheckpointStore, Lease, LeaseTable
from tests.contract.checkpoint_harness import REGISTRY, StoreRig, eventually, run

TTL_SECONDS = 1.0
NAMESPACE = "orders|kinesis:stream"


@pytest.fixture(params=sorted(REGISTRY))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRig:
    return REGISTRY[request.param](request, tmp_path)


@asynccontextmanager
async def daemons(rig: StoreRig, count: int) -> AsyncIterator[list[CheckpointStore]]:
    """`count` open stores on one backing with a short lease ttl, as many daemons have."""
    stores = [
        rig.build(config={**rig.config(60.0), "lease_ttl_seconds": TTL_SECONDS})
        for _ in range(count)
    ]
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


def table_of(store: CheckpointStore) -> LeaseTable:
    table = store.lease_table(NAMESPACE)
    assert table is not None
    return table


def fenced_out(store: CheckpointStore) -> int:
    assert isinstance(store, StagedPositions)
    return store.fenced_out


async def lease(table: LeaseTable, partition: str) -> Lease:
    return (await table.list_leases())[partition]


def test_leases_are_created_free_and_existing_ones_are_kept(rig: StoreRig) -> None:
    """create() adds unowned leases with their initial checkpoints; a partition that
    already has a lease, or a position saved before leasing (a daemon that did not lease),
    keeps what it has. Another daemon sees the leases at once (no flush involved)."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            await first.save(NAMESPACE, {"s-old": "7"})
            await first.flush()
            table = table_of(first)
            assert table.owner != table_of(second).owner
            assert table.ttl_seconds == TTL_SECONDS
            await table.create({"s0": None, "s1": "5", "s-old": None})
            await table_of(second).create({"s1": "9", "s2": "3"})
            expected = {
                "s0": Lease("s0", None, 0, None),
                "s1": Lease("s1", None, 0, "5"),
                "s2": Lease("s2", None, 0, "3"),
                "s-old": Lease("s-old", None, 0, "7"),
            }
            assert await table.list_leases() == expected
            assert await table_of(second).list_leases() == expected
            assert await second.load(NAMESPACE) == {"s1": "5", "s2": "3", "s-old": "7"}

    run(main())


def test_of_two_owners_racing_for_a_free_lease_exactly_one_wins(rig: StoreRig) -> None:
    """take() is conditional on the lease as read: of two takes of the same read lease
    one succeeds (and gets the lease's checkpoint), the other gets None; a take with a
    counter read before the winner's take fails too."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            tables = [table_of(first), table_of(second)]
            await tables[0].create({"s0": "11"})
            read = await lease(tables[0], "s0")
            results = await asyncio.gather(*(table.take(read) for table in tables))
            [winner] = [table for table, taken in zip(tables, results, strict=True) if taken]
            [taken] = [taken for taken in results if taken]
            assert (taken.owner, taken.checkpoint) == (winner.owner, "11")
            assert taken.counter > read.counter
            assert await lease(tables[1], "s0") == taken
            assert await tables[0].take(read) is None
            assert await tables[1].take(read) is None
            assert (await lease(tables[0], "s0")).owner == winner.owner

    run(main())


def test_renewing_moves_the_counter_of_the_holders_leases_only(rig: StoreRig) -> None:
    """renew() returns the leases still held and raises their counters, which is how
    others see the holder is alive; it neither renews nor changes a lease held by
    another owner, nor a free one."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            holder, other = table_of(first), table_of(second)
            await holder.create({"s0": None, "s1": None, "s2": None})
            for partition in ("s0", "s1"):
                assert await holder.take(await lease(holder, partition)) is not None
            before = await other.list_leases()
            assert await holder.renew({"s0", "s1", "s2"}) == {"s0", "s1"}
            after = await other.list_leases()
            assert after["s0"].counter > before["s0"].counter
            assert after["s1"].counter > before["s1"].counter
            assert after["s2"] == before["s2"]
            assert await other.renew({"s0", "s1", "s2"}) == set()
            assert await other.list_leases() == after
            assert await holder.renew(set()) == set()

    run(main())


class Watcher:
    """How another daemon decides a lease has lapsed (connectors.shardstreams.leasing):
    its counter has not moved for the table's ttl, by the watcher's own clock."""

    def __init__(self, table: LeaseTable, partition: str) -> None:
        self.table = table
        self.partition = partition
        self.seen: tuple[int, float] | None = None
        self.lease: Lease | None = None

    async def lapsed(self) -> bool:
        self.lease = await lease(self.table, self.partition)
        now = time.monotonic()
        if self.seen is None or self.seen[0] != self.lease.counter:
            self.seen = (self.lease.counter, now)
        return now - self.seen[1] >= self.table.ttl_seconds


def test_a_lease_not_renewed_for_the_ttl_is_taken_by_another_owner(rig: StoreRig) -> None:
    """While its holder renews, a take with a counter read before a renewal fails; once
    the holder stops renewing, the lease lapses after the ttl and another owner takes it
    with the checkpoint the holder wrote; the holder's renewal then fails."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            holder, other = table_of(first), table_of(second)
            await holder.create({"s0": None})
            assert await holder.take(await lease(holder, "s0")) is not None
            await holder.checkpoint({"s0": "40"})
            await first.flush()
            read = await lease(other, "s0")
            assert await holder.renew({"s0"}) == {"s0"}
            assert await other.take(read) is None, "a renewed lease was taken"

            watcher = Watcher(other, "s0")
            await eventually(watcher.lapsed, "the lease to lapse")
            assert watcher.lease is not None and watcher.lease.owner == holder.owner
            taken = await other.take(watcher.lease)
            assert taken is not None
            assert (taken.owner, taken.checkpoint) == (other.owner, "40")
            assert await holder.renew({"s0"}) == set()
            assert await other.renew({"s0"}) == {"s0"}

    run(main())


def test_a_steal_takes_a_live_lease_and_fences_its_former_holder(rig: StoreRig) -> None:
    """A take conditional on the counter just read succeeds even while the holder renews
    (a steal, to balance the shards); from then on the former holder cannot renew, and
    the position it had staged is refused at its flush: the `checkpoints.fenced` path,
    counted and logged, the new owner's position standing."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            victim, thief = table_of(first), table_of(second)
            await victim.create({"s0": None, "s1": None})
            for partition in ("s0", "s1"):
                assert await victim.take(await lease(victim, partition)) is not None
            await victim.checkpoint({"s0": "10", "s1": "10"})
            await first.flush()
            assert await victim.renew({"s0", "s1"}) == {"s0", "s1"}
            stolen = await thief.take(await lease(thief, "s1"))
            assert stolen is not None and stolen.checkpoint == "10"
            await thief.checkpoint({"s1": "20"})
            await second.flush()

            # The victim's batch in flight during the steal settles after it.
            await victim.checkpoint({"s0": "12", "s1": "15"})
            assert await victim.renew({"s0", "s1"}) == {"s0"}
            with capture_logs() as logs:
                await first.flush()
            assert fenced_out(first) == 1
            [fenced] = [entry for entry in logs if entry["event"] == "checkpoints.fenced"]
            assert fenced["partitions"] == [f"{NAMESPACE}/s1"]
            assert first.problem is None
            leases = await thief.list_leases()
            assert leases["s0"] == Lease("s0", victim.owner, leases["s0"].counter, "12")
            assert leases["s1"] == Lease("s1", thief.owner, leases["s1"].counter, "20")
            assert await first.load(NAMESPACE) == {"s0": "12", "s1": "20"}

    run(main())


def test_a_position_staged_before_the_lease_was_lost_is_refused(rig: StoreRig) -> None:
    """The race fencing exists for: the holder stages a position, another owner takes
    the lease and writes its own before the holder's flush; the late flush is refused
    and the new owner's position stands. A position `forget` dropped is not written."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            old, new = table_of(first), table_of(second)
            await old.create({"s0": "1", "s1": "1"})
            for partition in ("s0", "s1"):
                assert await old.take(await lease(old, partition)) is not None
            await old.checkpoint({"s0": "30", "s1": "30"})
            assert (await lease(old, "s0")).checkpoint == "30", "its own staged position"
            assert (await lease(new, "s0")).checkpoint == "1"
            for partition in ("s0", "s1"):
                assert await new.take(await lease(new, partition)) is not None
            await new.checkpoint({"s0": "25"})
            await second.flush()
            old.forget(["s1"])
            await first.flush()
            assert fenced_out(first) == 1
            leases = await new.list_leases()
            assert (leases["s0"].owner, leases["s0"].checkpoint) == (new.owner, "25")
            assert (leases["s1"].owner, leases["s1"].checkpoint) == (new.owner, "1")

    run(main())


def test_a_released_lease_is_free_with_its_checkpoint(rig: StoreRig) -> None:
    """release() frees the holder's leases (others take them at once, with the position
    written before), leaves alone a lease it does not hold, and fences the holder's
    later positions."""

    async def main() -> None:
        async with daemons(rig, 2) as (first, second):
            holder, other = table_of(first), table_of(second)
            await holder.create({"s0": None, "s1": None})
            assert await holder.take(await lease(holder, "s0")) is not None
            assert await other.take(await lease(other, "s1")) is not None
            await holder.checkpoint({"s0": "50"})
            await first.flush()
            before = await lease(other, "s0")
            await holder.release(["s0", "s1"])
            released = await lease(other, "s0")
            assert (released.owner, released.checkpoint) == (None, "50")
            assert released.counter > before.counter
            assert (await lease(other, "s1")).owner == other.owner
            assert await holder.renew({"s0"}) == set()
            await holder.checkpoint({"s0": "51"})
            await first.flush()
            assert fenced_out(first) == 1
            taken = await other.take(released)
            assert taken is not None
            assert (taken.owner, taken.checkpoint) == (other.owner, "50")

    run(main())

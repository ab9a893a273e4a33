"""The checkpoint store contract (bridge.protocols.CheckpointStore): each case runs against
every registered store on its real backing. How a store takes part:
tests/contract/checkpoint_harness.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.registry import registered
from tests.contract.checkpoint_harness import REGISTRY, StoreRig, eventually, run

STORES = sorted(REGISTRY)


@pytest.fixture(params=STORES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRig:
    return REGISTRY[request.param](request, tmp_path)


def test_every_registered_store_type_has_a_rig() -> None:
    assert sorted(registered("checkpoint_stores")) == STORES


def test_staged_saves_are_visible_before_the_flush(rig: StoreRig) -> None:
    """load() sees saves not yet written (staged deletes included), so a reconnecting
    source resumes from them; another instance sees them only once they are flushed."""

    async def main() -> None:
        writer, reader = rig.build(), rig.build()
        await writer.open()
        await reader.open()
        try:
            await writer.save("m|a", {"p0": "10", "p1": "20"})
            await writer.flush()
            await writer.save("m|a", {"p0": None, "p2": "30"})
            assert await writer.load("m|a") == {"p1": "20", "p2": "30"}
            assert await reader.load("m|a") == {"p0": "10", "p1": "20"}
            await writer.flush()
            assert await reader.load("m|a") == {"p1": "20", "p2": "30"}
        finally:
            await writer.close()
            await reader.close()

    run(main())


def test_flushed_positions_survive_a_restart(rig: StoreRig) -> None:
    """What was saved and flushed (close flushes) is loaded by a new instance; a None
    deletes the partition for good; namespaces do not see each other."""

    async def first() -> None:
        store = rig.build()
        await store.open()
        await store.save("m|a", {"p0": "10", "p1": "20"})
        await store.save("m|b", {"p0": "99", "#stream": "arn@1"})
        await store.flush()
        await store.save("m|a", {"p1": None, "p2": "30"})
        await store.close()

    async def second() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        store = rig.build()
        await store.open()
        try:
            return await store.load("m|a"), await store.load("m|b"), await store.load("m|c")
        finally:
            await store.close()

    run(first())
    assert run(second()) == ({"p0": "10", "p2": "30"}, {"p0": "99", "#stream": "arn@1"}, {})


def test_the_flusher_writes_without_a_flush_call(rig: StoreRig) -> None:
    """Staged saves are written within the flush interval, so a crash loses at most that
    much progress."""

    async def main() -> None:
        store, reader = rig.build(flush_interval=0.05), rig.build()
        await store.open()
        await reader.open()
        try:
            await store.save("n", {"a": "1"})
            await eventually(lambda: reader.load("n"), "the flusher's write")
            assert await reader.load("n") == {"a": "1"}
        finally:
            await store.close()
            await reader.close()

    run(main())


def test_two_instances_share_what_each_flushed(rig: StoreRig) -> None:
    """Two stores on one backing (two daemons, or one restarted beside the old one): each
    sees what the other flushed; the last write of a partition wins."""

    async def main() -> None:
        first, second = rig.build(), rig.build()
        await first.open()
        await second.open()
        try:
            await first.save("orders|s", {f"shard-{n}": str(n) for n in range(30)})
            await first.flush()
            await second.save("orders|s", {"shard-0": "99"})
            await second.flush()
            loaded = await first.load("orders|s")
            assert len(loaded) == 30
            assert loaded["shard-0"] == "99"
        finally:
            await first.close()
            await second.close()

    run(main())


def test_clear_removes_the_prefixs_namespaces_and_counts_them(rig: StoreRig) -> None:
    """clear(prefix) deletes every position of the namespaces starting with it, staged
    ones included, and returns how many it removed; other namespaces stay."""

    async def main() -> None:
        store = rig.build()
        await store.open()
        try:
            await store.save("orders|kinesis:s", {"shard-0": "1", "shard-1": "2"})
            await store.save("other|kinesis:s", {"shard-0": "5"})
            await store.flush()
            await store.save("orders|dynamodb-streams:t", {"shard-x": "1"})
            assert await store.clear("orders|") == 3
            assert await store.load("orders|kinesis:s") == {}
            assert await store.load("orders|dynamodb-streams:t") == {}
            assert await store.load("other|kinesis:s") == {"shard-0": "5"}
            assert await store.clear("nothing|") == 0
        finally:
            await store.close()
        restarted = rig.build()
        await restarted.open()
        try:
            assert await restarted.load("orders|kinesis:s") == {}
            assert await restarted.load("other|kinesis:s") == {"shard-0": "5"}
        finally:
            await restarted.close()

    run(main())


def test_a_failing_write_is_reported_and_retried(rig: StoreRig) -> None:
    """While the backing cannot be written, the store says why (`problem`, which makes its
    mappings Degraded) and counts the failures; the positions stay staged and are written
    once it can, and the problem clears."""

    async def main() -> None:
        outage = rig.outage
        store = rig.build(config=await outage.store_config(0.05))
        await store.open()
        try:
            await store.save("m|s", {"shard-0": "41"})
            await store.flush()
            await outage.begin()
            await store.save("m|s", {"shard-0": "42"})
            await eventually(lambda: store.problem is not None, "the failure reported")
            assert store.write_failures >= 1
            await outage.end()
            await eventually(lambda: store.problem is None, "the problem cleared")
        finally:
            await store.close()
            await outage.close()
        reader = rig.build()
        await reader.open()
        try:
            assert await reader.load("m|s") == {"shard-0": "42"}
        finally:
            await reader.close()

    run(main())


def test_closing_twice_is_harmless(rig: StoreRig) -> None:
    async def main() -> None:
        store = rig.build()
        await store.open()
        await store.save("n", {"a": "1"})
        await store.close()
        await store.close()
        reader = rig.build()
        await reader.open()
        try:
            assert await reader.load("n") == {"a": "1"}
        finally:
            await reader.close()

    run(main())

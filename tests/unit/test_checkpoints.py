"""The embedded SQLite checkpoint store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.pipeline.checkpoints import SqliteCheckpointStore


def test_saved_positions_survive_a_restart(tmp_path: Path) -> None:
    """What was saved and flushed is loaded by a new store on the same file; deletes stick;
    namespaces do not see each other."""
    path = tmp_path / "state" / "checkpoints.sqlite3"

    async def first() -> None:
        store = SqliteCheckpointStore(path)
        await store.open()
        await store.save("m|a", {"p0": "10", "p1": "20"})
        await store.save("m|b", {"p0": "99"})
        await store.save("m|a", {"p1": None, "p2": "30"})
        await store.close()

    async def second() -> tuple[dict[str, str], dict[str, str]]:
        store = SqliteCheckpointStore(path)
        await store.open()
        try:
            return await store.load("m|a"), await store.load("m|b")
        finally:
            await store.close()

    asyncio.run(first())
    assert asyncio.run(second()) == ({"p0": "10", "p2": "30"}, {"p0": "99"})


def test_staged_saves_are_visible_before_the_flush(tmp_path: Path) -> None:
    """load() sees saves that are not yet written, so a reconnecting source resumes from them."""

    async def scenario() -> dict[str, str]:
        store = SqliteCheckpointStore(tmp_path / "c.sqlite3", flush_interval=3600)
        await store.open()
        await store.save("n", {"a": "1"})
        await store.flush()
        await store.save("n", {"a": None, "b": "2"})
        try:
            return await store.load("n")
        finally:
            await store.close()

    assert asyncio.run(scenario()) == {"b": "2"}


def test_periodic_flush_writes_without_close(tmp_path: Path) -> None:
    """Saves reach the file within the flush interval, so a crash loses at most that much."""
    path = tmp_path / "c.sqlite3"

    async def scenario() -> None:
        store = SqliteCheckpointStore(path, flush_interval=0.05)
        await store.open()
        await store.save("n", {"a": "1"})
        await asyncio.sleep(0.3)
        reader = SqliteCheckpointStore(path)
        await reader.open()
        assert await reader.load("n") == {"a": "1"}
        await reader.close()
        await store.close()

    asyncio.run(scenario())


def test_a_load_during_a_flush_sees_the_values_being_written(tmp_path: Path) -> None:
    """A source reopening while the flusher writes must not find its positions gone (it
    would start over from its starting position)."""

    async def scenario() -> list[dict[str, str]]:
        store = SqliteCheckpointStore(tmp_path / "c.sqlite3", flush_interval=3600)
        await store.open()
        try:
            found = []
            for position in range(50):
                await store.save("m|s", {"shard-1": str(position)})
                # The load's read goes first; the flush takes the staged value meanwhile.
                flushing = asyncio.create_task(store.flush())
                found.append(await store.load("m|s"))
                await flushing
            return found
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [{"shard-1": str(position)} for position in range(50)]

"""The embedded SQLite checkpoint store: a load racing the flusher. What every store does:
tests/contract/test_checkpoint_stores.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.pipeline.checkpoints import SqliteCheckpointStore


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

"""What the checkpoint store contract (tests/contract/test_checkpoint_stores.py) runs
against: each store type registered in `bridge.config.plugins` (`checkpoint_stores`), on
its real backing (a SQLite file, DynamoDB in moto).

A store takes part by registering a rig factory here:

    @register("my-store")
    def my_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRig:
        server = request.getfixturevalue("my_server")
        table = new_table(server)

        def config(flush_interval: float) -> dict[str, Any]:
            return {"type": "my-store", "url": server, "table": table,
                    "flush_interval_seconds": flush_interval}

        return StoreRig(config=config, outage=MyOutage(server, table), state_dir=tmp_path)

`config(flush_interval)` is the store's config as written under `checkpoints:`; every store
built from it shares one backing (a new one is what a restarted daemon, or a second
daemon, opens). The suite builds it as the daemon does (the registered config model's
`build`). `outage` makes the backing fail writes between `begin()` and `end()` (a stopped
server, a locked file); `store_config` is the config of a store its failures reach.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest

from bridge.config.plugins import BuildContext, Identity
from bridge.config.registry import registered
from bridge.protocols import CheckpointStore
from tests.contract.relay import Relay

BOUND_SECONDS = 90.0


class Outage(Protocol):
    async def store_config(self, flush_interval: float) -> dict[str, Any]:
        """The config of a store whose writes the outage reaches."""

    async def begin(self) -> None:
        """Writes fail from now on."""

    async def end(self) -> None:
        """Writes work again."""

    async def close(self) -> None: ...


@dataclass
class StoreRig:
    config: Callable[[float], dict[str, Any]]
    outage: Outage
    state_dir: Path

    def build(
        self, flush_interval: float = 60.0, config: dict[str, Any] | None = None
    ) -> CheckpointStore:
        settings = self.config(flush_interval) if config is None else config
        model = registered("checkpoint_stores")[settings["type"]]
        context = BuildContext(Identity(), self.state_dir, self.state_dir)
        store: CheckpointStore = model.model_validate(settings).build(context)
        return store


RigFactory = Callable[[pytest.FixtureRequest, Path], StoreRig]
REGISTRY: dict[str, RigFactory] = {}


def register(name: str) -> Callable[[RigFactory], RigFactory]:
    def add(factory: RigFactory) -> RigFactory:
        REGISTRY[name] = factory
        return factory

    return add


def run(main: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(BOUND_SECONDS):
            return await main

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Poll `condition` (on the running loop) until it holds, or fail after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        value = condition()
        if await value if isinstance(value, Awaitable) else value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- the stores ----------------------------------------------------------------------------


class LockedFile:
    """Another connection holds the SQLite file's write lock: the store's writes wait out
    sqlite3's busy timeout and fail with `database is locked`."""

    def __init__(self, rig_config: Callable[[float], dict[str, Any]], path: Path) -> None:
        self._config = rig_config
        self._path = path
        self._holder: sqlite3.Connection | None = None

    async def store_config(self, flush_interval: float) -> dict[str, Any]:
        return self._config(flush_interval)

    async def begin(self) -> None:
        self._holder = sqlite3.connect(self._path, isolation_level=None)
        self._holder.execute("BEGIN EXCLUSIVE")

    async def end(self) -> None:
        assert self._holder is not None
        self._holder.execute("ROLLBACK")
        self._holder.close()
        self._holder = None

    async def close(self) -> None:
        if self._holder is not None:
            await self.end()


@register("sqlite")
def sqlite_rig(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRig:
    def config(flush_interval: float) -> dict[str, Any]:
        return {"type": "sqlite", "flush_interval_seconds": flush_interval}

    path = tmp_path / "checkpoints.sqlite3"
    return StoreRig(config=config, outage=LockedFile(config, path), state_dir=tmp_path)


class StoppedServer:
    """The store talks to moto through a relay, which stops and comes back."""

    def __init__(self, endpoint: str, rig_config: Callable[[float], dict[str, Any]]) -> None:
        parts = urlsplit(endpoint)
        assert parts.hostname is not None and parts.port is not None
        self._relay = Relay(parts.hostname, parts.port)
        self._config = rig_config

    async def store_config(self, flush_interval: float) -> dict[str, Any]:
        if not self._relay.running:
            await self._relay.start()
        return {**self._config(flush_interval), "endpoint_url": self._relay.url}

    async def begin(self) -> None:
        await self._relay.stop()

    async def end(self) -> None:
        await self._relay.start()

    async def close(self) -> None:
        if self._relay.running:
            await self._relay.stop()


@register("dynamodb")
def dynamodb_rig(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRig:
    endpoint = request.getfixturevalue("aws_endpoint")
    table = f"checkpoints-{uuid.uuid4().hex}"

    def config(flush_interval: float) -> dict[str, Any]:
        return {
            "type": "dynamodb",
            "table": table,
            "endpoint_url": endpoint,
            "create_table": True,
            "flush_interval_seconds": flush_interval,
        }

    return StoreRig(config=config, outage=StoppedServer(endpoint, config), state_dir=tmp_path)

"""The daemon's started invokers and on-failure destinations, by name.

A function's configured versions get invokers of their own, kept as `name:1`
(invoker_key); they are built, started, replaced and closed with the function's.

They are started before any mapping reads (a function that cannot be prepared stops the
start) and replaced one by one on reload; closing one that fails is logged, never fatal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

import structlog

from bridge.config.model import BridgeConfig, LoadedConfig, MappingConfig
from bridge.config.versions import LATEST, pick_version, version_config
from bridge.invokers import LimitedInvoker
from bridge.protocols import Destination, Invoker

_log = structlog.get_logger("bridge.daemon")

# An invoker, and the version (`$LATEST`, "1", ...) it runs.
Target = tuple[Invoker, str]


class Clients:
    def __init__(self) -> None:
        self.invokers: dict[str, Invoker] = {}
        self.destinations: dict[str, Destination] = {}

    @staticmethod
    async def build(
        loaded: LoadedConfig, functions: set[str], destinations: set[str]
    ) -> tuple[dict[str, Invoker], dict[str, Destination]]:
        """Started invokers and destinations of `loaded`; if one fails, those already
        started are closed and the BridgeError raised."""
        context = loaded.build_context
        invokers: dict[str, Invoker] = {}
        built: dict[str, Destination] = {}
        try:
            for name in sorted(functions):
                function = loaded.config.functions[name]
                reserved = function.reserved_concurrency
                slots = asyncio.Semaphore(reserved if reserved is not None else 1)
                for version in [LATEST, *function.versions]:
                    settings = version_config(function, version)
                    invoker = settings.build(name, replace(context, function_version=version))
                    # Reserved concurrency 0 stops every invoker alike: callers wait for ever.
                    if reserved == 0 or (reserved and not function.limits_its_concurrency):
                        invoker = LimitedInvoker(invoker, reserved, slots)
                    await invoker.start()
                    invokers[invoker_key(name, version)] = invoker
            for name in sorted(destinations):
                destination = loaded.config.destinations[name].build(name, context)
                await destination.start()
                built[name] = destination
        except BaseException:
            for invoker in invokers.values():
                await quietly(invoker.close(), "invoker.close_failed")
            for destination in built.values():
                await quietly(destination.close(), "destination.close_failed")
            raise
        return invokers, built

    def target(self, config: BridgeConfig, function: str, qualifier: str) -> Target | None:
        """The started invoker an invocation of `function` with `qualifier` ($LATEST, a
        version or an alias) runs on, and the version it executes: an alias with routing
        picks one per call (bridge.config.versions.pick_version). None if the function or the
        qualifier is unknown, or its invoker is being replaced by a reload."""
        settings = config.functions.get(function)
        version = pick_version(settings, qualifier) if settings is not None else None
        if version is None:
            return None
        invoker = self.invokers.get(invoker_key(function, version))
        return (invoker, version) if invoker is not None else None

    def adopt(self, invokers: dict[str, Invoker], destinations: dict[str, Destination]) -> None:
        self.invokers.update(invokers)
        self.destinations.update(destinations)

    async def prepare_provided(self, mapping: MappingConfig, loaded: LoadedConfig) -> None:
        """A destination the source names by URI, e.g. Kafka's kafka://topic."""
        reference = mapping.on_failure
        if reference is None or reference in loaded.config.destinations:
            return
        provided = mapping.source.destination_for(reference)
        assert provided is not None, "checked when the config was loaded"
        name = f"{mapping.name}:{reference}"
        destination = provided.build(name, loaded.build_context)
        await destination.start()
        self.destinations[name] = destination

    def destination_of(self, mapping: MappingConfig) -> Destination | None:
        reference = mapping.on_failure
        if reference is None:
            return None
        return self.destinations.get(reference) or self.destinations[f"{mapping.name}:{reference}"]

    async def close_provided(self, mapping: str) -> None:
        for name in [name for name in self.destinations if name.startswith(f"{mapping}:")]:
            await quietly(self.destinations.pop(name).close(), "destination.close_failed")

    async def close_named(self, functions: set[str], destinations: set[str]) -> None:
        """Close these functions (all their versions) and destinations."""
        for key in [key for key in self.invokers if key.partition(":")[0] in functions]:
            await quietly(self.invokers.pop(key).close(), "invoker.close_failed")
        for name in destinations & set(self.destinations):
            await quietly(self.destinations.pop(name).close(), "destination.close_failed")

    async def close(self) -> None:
        await self.close_named(set(self.invokers), set(self.destinations))


def invoker_key(function: str, version: str) -> str:
    """Where a version's invoker is kept: `orders` for $LATEST, `orders:1` for version 1
    (a function's name has no colon)."""
    return function if version == LATEST else f"{function}:{version}"


async def quietly(closing: Awaitable[None], event: str) -> None:
    """Await a close; log its failure instead of letting it stop the rest of the shutdown."""
    try:
        await closing
    except Exception as exc:
        _log.error(event, error=str(exc))

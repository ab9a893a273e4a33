"""The daemon: builds every mapping from the config, supervises them, stops in two phases.

SIGTERM or SIGINT: stop reading, let in-flight batches finish within
`drain_timeout_seconds`, cancel what is left (unsettled records are not acknowledged
and come back after a restart), save checkpoints, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import structlog

from bridge.config import LoadedConfig, MappingConfig
from bridge.errors import BridgeError
from bridge.filtering import build_filter_set
from bridge.invokers import LimitedInvoker
from bridge.mapping import MappingRunner, MappingState
from bridge.plugins import SourceContext
from bridge.protocols import Destination, Invoker, Source
from bridge.settings import resolve


class Daemon:
    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.store = self.config.checkpoint_store.build(loaded.build_context)
        self.invokers: dict[str, Invoker] = {}
        self.destinations: dict[str, Destination] = {}
        self.runners: list[MappingRunner] = []
        self._stop_requested = asyncio.Event()
        self._signals = 0
        self._log = structlog.get_logger("bridge.daemon")

    async def start(self) -> None:
        """Open the checkpoint store and prepare functions and destinations.

        Raises BridgeError if a function cannot be prepared (e.g. its handler does not
        import), before any record is read.
        """
        context = self.loaded.build_context
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        for name, function in self.config.functions.items():
            invoker = function.build(name, context)
            if function.reserved_concurrency:
                invoker = LimitedInvoker(invoker, function.reserved_concurrency)
            await invoker.start()
            self.invokers[name] = invoker
        for name, destination_config in self.config.destinations.items():
            destination = destination_config.build(name, context)
            await destination.start()
            self.destinations[name] = destination
        for mapping in self.config.mappings:
            reference = mapping.on_failure
            if reference is None or reference in self.destinations:
                continue
            # A destination the source names by URI, e.g. Kafka's kafka://topic.
            provided = mapping.source.destination_for(reference)
            assert provided is not None, "checked when the config was loaded"
            name = f"{mapping.name}:{reference}"
            destination = provided.build(name, context)
            await destination.start()
            self.destinations[name] = destination
        self.runners = [self._runner(mapping) for mapping in self.config.mappings]

    def _runner(self, mapping: MappingConfig) -> MappingRunner:
        function = self.config.functions[mapping.function]
        identity = self.config.identity
        patterns = mapping.filter_patterns
        filters = build_filter_set(patterns, mapping.source.filter_data_key) if patterns else None
        runner = MappingRunner(
            name=mapping.name,
            function_arn=function.arn or identity.function_arn(mapping.function),
            settings=resolve(mapping),
            source_factory=self._source_factory(mapping),
            invoker=self.invokers[mapping.function],
            destination=self._destination_of(mapping),
            filters=filters,
        )
        if not mapping.enabled:
            runner.disable()
        return runner

    def _destination_of(self, mapping: MappingConfig) -> Destination | None:
        reference = mapping.on_failure
        if reference is None:
            return None
        return self.destinations.get(reference) or self.destinations[f"{mapping.name}:{reference}"]

    def _source_factory(self, mapping: MappingConfig) -> Callable[[], Source]:
        context = SourceContext(
            mapping=mapping.name,
            identity=self.config.identity,
            checkpoints=self.store,
            state_dir=self.config.state_dir,
            parallelization_factor=mapping.parallelization_factor or 1,
            batch_size=resolve(mapping).batch.max_records,
            maximum_concurrency=resolve(mapping).maximum_concurrency,
            function_timeout=self.config.functions[mapping.function].timeout,
            extras={
                "excluded_paths": [
                    path
                    for destination in self.config.destinations.values()
                    for path in destination.local_paths()
                ]
            },
        )
        return lambda: mapping.source.build(context)

    def request_stop(self, signum: int | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            self._log.warning("daemon.exit_now", signal=signum)
            os._exit(128 + (signum or signal.SIGTERM))
        self._log.info(
            "daemon.stopping", signal=signum, drain_timeout=self.config.drain_timeout_seconds
        )
        self._stop_requested.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        try:
            await self.start()
        except BridgeError as exc:
            self._log.error("daemon.start_failed", error=str(exc))
            await self.close()
            return 2
        tasks: list[asyncio.Task[None]] = []
        for runner in self.runners:
            if runner.state is MappingState.DISABLED:
                self._log.info("mapping.disabled", mapping=runner.name)
                continue
            tasks.append(asyncio.create_task(runner.run(), name=f"mapping:{runner.name}"))
        self._log.info(
            "daemon.ready", mappings=[runner.name for runner in self.runners], pid=os.getpid()
        )
        await self._stop_requested.wait()
        for runner in self.runners:
            runner.stop()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.drain_timeout_seconds)
            if pending:
                self._log.warning("daemon.drain_timeout", unfinished_mappings=len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self.close()
        self._log.info("daemon.stopped")
        return 0

    async def close(self) -> None:
        for destination in self.destinations.values():
            await _quietly(destination.close(), self._log, "destination.close_failed")
        for invoker in self.invokers.values():
            await _quietly(invoker.close(), self._log, "invoker.close_failed")
        await _quietly(self.store.close(), self._log, "checkpoints.close_failed")


async def _quietly(
    closing: Awaitable[None], log: structlog.typing.FilteringBoundLogger, event: str
) -> None:
    """Await a close; log its failure instead of letting it stop the rest of the shutdown."""
    try:
        await closing
    except Exception as exc:
        log.error(event, error=str(exc))

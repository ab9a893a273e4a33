"""The daemon: builds every mapping from the config, supervises them, reloads and stops.

SIGTERM or SIGINT: stop reading, let in-flight batches finish within `drain_timeout_seconds`,
cancel what is left (unsettled records are not acknowledged and come back after a restart),
save checkpoints, exit 0. A second signal exits at once. SIGHUP (or POST /reload) re-reads
the config file (bridge.ops.reload), with the API's mappings over it (bridge.frontdoor.overlay).
Under systemd the daemon reports READY, RELOADING, STOPPING and watchdog pings itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.core import Metric

from bridge.asyncinvoke.service import AsyncInvocations
from bridge.config.model import LoadedConfig, MappingConfig
from bridge.config.plugins import SourceContext
from bridge.errors import BridgeError, ConfigError
from bridge.filtering.criteria import build_filter_set
from bridge.folders import make_private_folder
from bridge.frontdoor.overlay import MappingOverlay
from bridge.ops.admin import AdminServer, ReloadRejected
from bridge.ops.metrics import MappingView, contributed
from bridge.ops.reload import plan_reload, restart_only_changes
from bridge.ops.systemd import Notifier
from bridge.pipeline.clients import Clients, Target, quietly
from bridge.pipeline.journal import InFlight, InvocationJournal, MappingJournal, open_journal
from bridge.pipeline.mapping import MappingRunner, MappingState
from bridge.pipeline.settings import resolve
from bridge.protocols import Source
from bridge.retry import sleep_unless
from bridge.stalls import where_waiting

if TYPE_CHECKING:
    from bridge.frontdoor.server import ApiServer

# A drain still running after this long logs where its tasks wait.
SLOW_DRAIN_SECONDS = 5.0
# How long /metrics waits for a source to report its lag.
LAG_TIMEOUT_SECONDS = 2.0
# How often systemd's status line is brought up to date.
STATUS_INTERVAL_SECONDS = 5.0


class Daemon:
    def __init__(
        self, loaded: LoadedConfig, read_config: Callable[[], LoadedConfig] | None = None
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        # What a reload reads: the config file again, or an imported template
        # (bridge.cli.importing); None for the bundled example, which cannot be reloaded.
        self.read_config = read_config
        self.store = self.config.checkpoint_store.build(loaded.build_context)
        self.clients = Clients()
        self.journal: InvocationJournal | None = None
        self._crashed: dict[str, list[InFlight]] = {}
        self.runners: dict[str, MappingRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_requested = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._signals = 0
        self._notifier = Notifier.from_environment()
        self._admin: AdminServer | None = None
        self._api: ApiServer | None = None
        self.asynchronous = AsyncInvocations(self)
        self._started = False
        self._log = structlog.get_logger("bridge.daemon")
        self.overlay = MappingOverlay(loaded, self._apply, self._reload_lock, self._stop_requested)

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def checkpoint_write_failures(self) -> int:
        return self.store.write_failures

    # -- building ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the checkpoint store, prepare functions and destinations, and open the
        asynchronous queues. Raises BridgeError if a function cannot be prepared (e.g. its
        handler does not import), before any record is read."""
        state_dir = self.config.state_dir
        try:
            await asyncio.to_thread(make_private_folder, state_dir)
        except OSError as exc:
            raise BridgeError(f"state_dir {str(state_dir)!r}: {exc.strerror or exc}") from None
        await self.store.open()
        await self._open_journal()
        self.loaded = await self.overlay.open()
        self.config = self.loaded.config
        invokers, destinations = await self.clients.build(
            self.loaded, set(self.config.functions), set(self.config.destinations)
        )
        self.clients.adopt(invokers, destinations)
        await self.asynchronous.open()
        for mapping in self.config.mappings:
            await self.clients.prepare_provided(mapping, self.loaded)
            self.runners[mapping.name] = self._runner(mapping)
        self._started = True

    async def _open_journal(self) -> None:
        """Find the in-process invocations the previous run died in (bridge.pipeline.journal)."""
        self.journal, self._crashed = await open_journal(self.config.state_dir, self._log)

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
            invoker=self.clients.invokers[mapping.function],
            destination=self.clients.destination_of(mapping),
            filters=filters,
            store_problem=self._store_problem if mapping.source.checkpoints_in_store else None,
            journal=(
                MappingJournal(
                    self.journal, mapping.name, self._crashed.setdefault(mapping.name, [])
                )
                if self.journal is not None and function.in_process
                else None
            ),
        )
        if not mapping.enabled:
            runner.disable()
        return runner

    def _store_problem(self) -> str | None:
        return self.store.problem

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

    # -- running ----------------------------------------------------------------------

    def _launch(self, runner: MappingRunner) -> None:
        if runner.state is MappingState.DISABLED:
            self._log.info("mapping.disabled", mapping=runner.name)
            return
        task = asyncio.create_task(runner.run(), name=f"mapping:{runner.name}")
        task.add_done_callback(lambda ended: _report_crash(runner, ended))
        self._tasks[runner.name] = task

    async def _drain(self, names: list[str]) -> None:
        """Stop these mappings and wait for their batches in flight, up to the deadline."""
        for name in names:
            self.runners[name].stop()
        tasks = [self._tasks.pop(name) for name in names if name in self._tasks]
        if not tasks:
            return
        deadline = self.config.drain_timeout_seconds
        _, pending = await asyncio.wait(tasks, timeout=min(SLOW_DRAIN_SECONDS, deadline))
        if pending and deadline > SLOW_DRAIN_SECONDS:
            # Say where it waits, while it waits: the answer to a stop that takes long.
            everything = [
                task for task in asyncio.all_tasks() if task is not asyncio.current_task()
            ]
            self._log.warning("daemon.drain_slow", waiting=where_waiting(everything))
            _, pending = await asyncio.wait(pending, timeout=deadline - SLOW_DRAIN_SECONDS)
        if pending:
            self._log.warning("daemon.drain_timeout", unfinished_mappings=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def request_stop(self, signum: int | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            self._log.warning("daemon.exit_now", signal=signum)
            os._exit(128 + (signum or signal.SIGTERM))
        self._log.info(
            "daemon.stopping", signal=signum, drain_timeout=self.config.drain_timeout_seconds
        )
        self._notifier.stopping()
        self._stop_requested.set()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload_quietly()))
        try:
            await self.start()
            if self.config.api is not None:
                # Lambda's API (and the HTTP triggers it serves) is loaded only when
                # configured: a daemon without it starts faster and smaller.
                from bridge.frontdoor.server import start_api

                self._api = await start_api(self, self.config, self.loaded.handler_root)
        except BridgeError as exc:
            self._log.error("daemon.start_failed", error=str(exc))
            await self.close()
            return 2
        await self._start_admin()
        # What was imported and built to start lives as long as the daemon: keep it out
        # of the garbage collector's full passes, which otherwise walk it all (tens of
        # milliseconds each, on the event loop) while records come and go.
        gc.freeze()
        for runner in self.runners.values():
            self._launch(runner)
        self._log.info("daemon.ready", mappings=list(self.runners), pid=os.getpid())
        self._notifier.ready(self._status_line())
        self._spawn(self._notifier.watchdog_loop(self._stop_requested))
        if self._notifier.enabled:
            self._spawn(self._report_status())
        await self._stop_requested.wait()
        async with self._reload_lock:
            await self._drain(list(self.runners))
        await self.close()
        self._log.info("daemon.stopped")
        return 0

    async def _start_admin(self) -> None:
        http = self.config.http
        if not http.enabled:
            return
        admin = AdminServer(self, http.address, http.bearer_token, self.config.state_dir)
        try:
            await admin.start()
        except OSError as exc:
            # The mappings matter more than their dashboard: run on without it.
            self._log.error("admin.unavailable", listen=http.address, error=str(exc))
            return
        self._admin = admin

    def invocation_target(self, function: str, qualifier: str = "$LATEST") -> Target | None:
        """What an invocation of `function:qualifier` runs on: (invoker, executed version),
        an alias's weighted version picked per call; None: unknown (Clients.target)."""
        return self.clients.target(self.config, function, qualifier)

    async def _report_status(self) -> None:
        """Keep systemd's STATUS= (`systemctl status`) in step with the mappings' states."""
        shown = self._status_line()
        while await sleep_unless(self._stop_requested, STATUS_INTERVAL_SECONDS):
            line = self._status_line()
            if line != shown:
                self._notifier.status(line)
                shown = line

    def _status_line(self) -> str:
        states = [runner.state.value for runner in self.runners.values()]
        counts = {state: states.count(state) for state in dict.fromkeys(states)}
        listed = ", ".join(f"{count} {state}" for state, count in counts.items())
        return f"{len(states)} mappings: {listed}" if states else "no mappings"

    # -- observing --------------------------------------------------------------------

    async def views(self) -> list[MappingView]:
        runners = list(self.runners.values())
        lags = await asyncio.gather(*(_offset_lag(runner.source) for runner in runners))
        return [
            MappingView(
                name=runner.name,
                state=runner.state.value,
                reason=runner.state_reason,
                metrics=runner.metrics,
                failures=dict(runner.health.failures),
                filtered_out=runner.filtered_out,
                offset_lag=lag,
                progress=None if runner.source is None else runner.source.progress,
            )
            for runner, lag in zip(runners, lags, strict=True)
        ] + self.asynchronous.views()

    def invoker_metrics(self) -> list[Metric]:
        """What the invokers contribute to /metrics (e.g. the runtime invoker's)."""
        return contributed(self.clients.invokers.values()) + self.asynchronous.metrics()

    # -- reloading --------------------------------------------------------------------

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ReloadRejected):  # reload() logged why
            await self.reload()

    async def reload(self) -> dict[str, Any]:
        """Apply the config file as it is now; raises ReloadRejected if it is invalid."""
        async with self._reload_lock:
            if self.stopping:
                raise ReloadRejected(["the daemon is stopping"])
            if self.read_config is None:
                raise ReloadRejected(["running the bundled example: there is no file to reload"])
            if not self._started:
                raise ReloadRejected(["the daemon is still starting"])
            self._notifier.reloading()
            try:
                return await self._apply(await self._read_new_config())
            finally:
                self._notifier.ready(self._status_line())

    async def _read_new_config(self) -> LoadedConfig:
        assert self.read_config is not None
        try:
            # Reading, parsing and checking a file (it may be large) stays off the loop.
            loaded = await asyncio.to_thread(self.read_config)
        except ConfigError as error:
            self._log.error("reload.rejected", problems=error.problems)
            raise ReloadRejected(error.problems) from None
        problems = restart_only_changes(self.config, loaded.config)
        if problems:
            self._log.error("reload.rejected", problems=problems)
            raise ReloadRejected(problems)
        for warning in loaded.warnings:
            self._log.warning("config.warning", warning=warning)
        return await self.overlay.reloaded(loaded)

    async def _apply(self, loaded: LoadedConfig) -> dict[str, Any]:
        new = loaded.config
        plan = plan_reload(self.config, new)
        try:
            invokers, destinations = await self.clients.build(
                loaded,
                {
                    name
                    for name in new.functions
                    if name not in self.clients.invokers or name in plan.functions
                },
                {
                    name
                    for name in new.destinations
                    if name not in self.clients.destinations or name in plan.destinations
                },
            )
        except BridgeError as exc:
            self._log.error("reload.rejected", problems=[str(exc)])
            raise ReloadRejected([str(exc)]) from None
        going = plan.removed + plan.changed
        await self._drain(going)
        for name in going:
            del self.runners[name]
            await self.clients.close_provided(name)
        await self.clients.close_named(plan.functions, plan.destinations)
        self.clients.adopt(invokers, destinations)
        self.loaded, self.config = loaded, new
        order = {mapping.name: index for index, mapping in enumerate(new.mappings)}
        failed = []
        for mapping in new.mappings:
            if mapping.name in plan.added or mapping.name in plan.changed:
                try:
                    await self.clients.prepare_provided(mapping, loaded)
                except BridgeError as exc:
                    self._log.error("reload.mapping_failed", mapping=mapping.name, error=str(exc))
                    failed.append(mapping.name)
                    continue
                runner = self._runner(mapping)
                self.runners[mapping.name] = runner
                self._launch(runner)
        self.runners = dict(sorted(self.runners.items(), key=lambda item: order[item[0]]))
        summary = {**plan.summary(), "failed": failed}
        self._log.info("reload.applied", **summary)
        return summary

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
        await self.asynchronous.close(self.config.drain_timeout_seconds)
        if self._admin is not None:
            await self._admin.close()
        await self.clients.close()
        await quietly(self.store.close(), "checkpoints.close_failed")
        if self.journal is not None:
            self.journal.close()


def _report_crash(runner: MappingRunner, task: asyncio.Task[None]) -> None:
    """A mapping task that ended with an error nothing handled leaves the mapping Failed
    with the reason, never `Connecting` for ever."""
    if not task.cancelled() and task.exception() is not None:
        runner.crashed(task.exception())  # type: ignore[arg-type]


async def _offset_lag(source: Source | None) -> dict[str, int]:
    if source is None:
        return {}
    try:
        return dict(await asyncio.wait_for(source.offset_lag(), LAG_TIMEOUT_SECONDS))
    except Exception:
        return {}

"""The mapping worker: one session at a time (bridge.pipeline.session), restarted with backoff.

If the source cannot connect or fails while running (a background task of the session
included), the session ends without acknowledging anything unsettled and a new one
starts after a capped, jittered backoff; other mappings are not affected. A permanent
error (access denied, not found, a destination that refuses for good) marks the mapping
Failed with the reason.

States: `Connecting` (opening, or the source's broker is unreachable), `Enabled`,
`Degraded` (reading, but background work is failing and being retried: a checkpoint
store that cannot write, a destination that cannot be reached, commits that fail),
`Disabled`, `Failed`, `Stopped`. The reason is `StateReason` in `/readyz`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

import structlog

from bridge.cancellation import cancelled_from_outside
from bridge.errors import BridgeError, DestinationError
from bridge.filtering.criteria import FilterSet
from bridge.ops.health import BackgroundTaskFailed, Health
from bridge.ops.metrics import MappingMetrics
from bridge.pipeline.journal import MappingJournal
from bridge.pipeline.lanes import Matcher
from bridge.pipeline.session import Session
from bridge.pipeline.settings import MappingSettings
from bridge.protocols import Destination, Invoker, Source
from bridge.retry import Backoff, sleep_unless

# A session that ran this long resets the reconnect backoff.
HEALTHY_SESSION_SECONDS = 30.0
RECONNECT_BACKOFF = Backoff(initial=0.5, maximum=10.0)


class MappingState(enum.Enum):
    CONNECTING = "Connecting"
    ENABLED = "Enabled"
    DEGRADED = "Degraded"
    DISABLED = "Disabled"
    FAILED = "Failed"
    STOPPED = "Stopped"


class MappingRunner:
    def __init__(
        self,
        *,
        name: str,
        function_arn: str,
        settings: MappingSettings,
        source_factory: Callable[[], Source],
        invoker: Invoker,
        destination: Destination | None,
        filters: FilterSet | None = None,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        store_problem: Callable[[], str | None] | None = None,
        journal: MappingJournal | None = None,
    ) -> None:
        self.name = name
        self.function_arn = function_arn
        self.settings = settings
        self._source_factory = source_factory
        self._invoker = invoker
        self._destination = destination
        self.filters = filters
        self._matches: Matcher | None = filters.matches if filters else None
        self._reconnect_backoff = reconnect_backoff
        self._stopping = asyncio.Event()
        self._session: Session | None = None
        self._state = MappingState.CONNECTING
        self._reason = ""
        self.metrics = MappingMetrics()
        self.health = Health()
        self._store_problem = store_problem
        self._journal = journal
        # Set while the mapping runs: the task `run()` is awaited in.
        self.task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("bridge.pipeline.mapping").bind(mapping=name)

    def stop(self) -> None:
        """Stop reading; lanes finish the batch they are delivering and take no new one."""
        self._stopping.set()
        if self._session is not None:
            self._session.stop()

    def _set_state(self, state: MappingState, reason: str = "") -> None:
        self._state, self._reason = state, reason

    def disable(self) -> None:
        self._set_state(MappingState.DISABLED, "enabled: false")

    @property
    def state(self) -> MappingState:
        """Enabled only while the source can read and nothing fails in the background: a
        connected mapping whose broker is unreachable reports Connecting until its client
        is back, one whose background work fails reports Degraded."""
        if self._state is MappingState.ENABLED:
            if self._source_problem():
                return MappingState.CONNECTING
            if self._background_problem():
                return MappingState.DEGRADED
        return self._state

    @property
    def state_reason(self) -> str:
        if self._state is MappingState.ENABLED:
            return self._source_problem() or self._background_problem() or self._reason
        return self._reason

    def _source_problem(self) -> str | None:
        return self._session.source.problem if self._session is not None else None

    def _background_problem(self) -> str | None:
        problems = [self.health.problem]
        if self._store_problem is not None:
            store = self._store_problem()
            problems.append(f"checkpoint store: {store}" if store else None)
        return "; ".join(problem for problem in problems if problem) or None

    def crashed(self, error: BaseException) -> None:
        """The mapping's task ended with an error nothing handled (a bug): say so."""
        self.health.failures["internal"] += 1
        self._set_state(MappingState.FAILED, f"internal error: {type(error).__name__}: {error}")
        self._log.error("mapping.crashed", error=str(error), exc_info=error)

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            source: Source | None = None
            session: Session | None = None
            started = time.monotonic()
            try:
                self._set_state(MappingState.CONNECTING)
                source = self._source_factory()
                session = Session(
                    mapping=self.name,
                    function_arn=self.function_arn,
                    source=source,
                    settings=self.settings,
                    invoker=self._invoker,
                    destination=self._destination,
                    stopping=self._stopping,
                    matches=self._matches,
                    metrics=self.metrics,
                    health=self.health,
                    journal=self._journal,
                )
                await source.open(session)
                self._session = session
                self._set_state(MappingState.ENABLED)
                self._log.info("mapping.started", mode=source.mode.value)
                await session.run()
            except BridgeError as exc:
                if not exc.retriable:
                    component = "destination" if isinstance(exc, DestinationError) else "source"
                    self.health.failures[component] += 1
                    self._set_state(MappingState.FAILED, str(exc))
                    self._log.error("mapping.failed", error=str(exc), error_type=type(exc).__name__)
                    return
                failures = self._note_failure(exc, started, failures)
            except ImportError as exc:
                # A connector whose client library is not installed: retrying cannot help.
                reason = f"cannot load the {self.name!r} source: {exc} (is its extra installed?)"
                self.health.failures["source"] += 1
                self._set_state(MappingState.FAILED, reason)
                self._log.error("mapping.failed", error=reason, error_type=type(exc).__name__)
                return
            except Exception as exc:
                failures = self._note_failure(exc, started, failures)
            finally:
                self._session = None
                if source is not None:
                    await self._close(source)
                if session is not None:
                    await session.close()
            if not self._stopping.is_set():
                delay = self._reconnect_backoff.delay(failures)
                self._log.warning("mapping.reconnecting", attempt=failures, delay=round(delay, 3))
                await sleep_unless(self._stopping, delay)
        self._set_state(MappingState.STOPPED)
        if self.filters is not None:
            self._log.info("mapping.stopped", filtered_out=self.filters.filtered_out)
        else:
            self._log.info("mapping.stopped")

    def _note_failure(self, exc: Exception, started: float, failures: int) -> int:
        if time.monotonic() - started > HEALTHY_SESSION_SECONDS:
            failures = 0
        if not isinstance(exc, BackgroundTaskFailed):
            self.health.failures["source"] += 1
        self._set_state(MappingState.CONNECTING, str(exc) or type(exc).__name__)
        self._log.error(
            "mapping.source_failed",
            error=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            exc_info=not isinstance(exc, BridgeError),
        )
        return failures + 1

    async def _close(self, source: Source) -> None:
        try:
            await source.close()
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
            # A client library's own task cancelled inside its stop(): not ours to end.
            self._log.warning("mapping.close_failed", error="cancelled inside the client")
        except Exception as exc:
            self._log.warning("mapping.close_failed", error=str(exc))

    @property
    def source(self) -> Source | None:
        """The connected source, while a session runs."""
        return self._session.source if self._session is not None else None

    @property
    def filtered_out(self) -> int:
        return self.filters.filtered_out if self.filters is not None else 0

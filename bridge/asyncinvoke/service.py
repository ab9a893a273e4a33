"""The daemon's asynchronous invocations: a durable queue and a worker per function, as
Lambda's internal queue that `Event` invocations go to (esm-reference.md 12).

Queues are opened at start for every function that has a queue file under
`state_dir/async` (events accepted before a restart or a kill -9 run on) and on the
first event of any other function. Workers run as tasks this service owns
(bridge.ops.health.TaskOwner): one that fails is reported (its `async:<function>` entry of
/readyz is Failed, `lambda_bridge_failures_total{component="worker"}` counts it) and
started again with backoff; its events stay queued meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bridge.asyncinvoke.destinations import LambdaDestinationConfig
from bridge.asyncinvoke.overrides import EventInvokeConfigs
from bridge.asyncinvoke.queue import EventQueue, QueuedEvent, queue_file
from bridge.asyncinvoke.settings import AsyncSettings, effective
from bridge.asyncinvoke.worker import AsyncWorker
from bridge.config.model import BridgeConfig
from bridge.config.versions import LATEST
from bridge.errors import DestinationError, PermanentDestinationError
from bridge.folders import make_private_folder
from bridge.ops.health import BackgroundTaskFailed, TaskOwner
from bridge.ops.metrics import PREFIX, MappingView
from bridge.pipeline.clients import Clients
from bridge.protocols import Invoker
from bridge.records import Delivery
from bridge.retry import Backoff

FOLDER = "async"
RESTART_BACKOFF = Backoff(initial=1.0, maximum=60.0)
OUTCOMES = ("success", "retry", "failure", "dropped")


class AsyncHost(Protocol):
    """The daemon as the service sees it: its config as it is now (reloads replace it), its
    started invokers and destinations."""

    @property
    def config(self) -> BridgeConfig: ...

    @property
    def clients(self) -> Clients: ...

    def invocation_target(self, function: str, qualifier: str) -> tuple[Invoker, str] | None: ...


class AsyncInvocations:
    def __init__(self, host: AsyncHost, clock: Callable[[], float] = time.time) -> None:
        self.folder = host.config.state_dir / FOLDER
        self.overrides = EventInvokeConfigs(self.folder)
        self._host = host
        self._now = clock
        self._workers: dict[str, AsyncWorker] = {}
        self._restarts: dict[str, int] = {}
        self._opening = asyncio.Lock()
        self._owner = TaskOwner(self._worker_failed)
        self._started = False
        self._closing = False
        self._log = structlog.get_logger("bridge.async")

    async def open(self) -> None:
        """Load the API-made settings, open the queues left by earlier runs and start
        their workers (invokers and destinations are started by then)."""
        await asyncio.to_thread(make_private_folder, self.folder)
        await self.overrides.load()
        paths = await asyncio.to_thread(lambda: sorted(self.folder.glob("*.sqlite")))
        self._started = True
        for path in paths:
            await self._worker(unquote(path.stem))

    async def accept(self, function: str, qualifier: str, payload: bytes, request_id: str) -> None:
        """Commit an event to the function's queue; durable when this returns."""
        worker = await self._worker(function)
        now = self._now()
        await worker.queue.put(QueuedEvent(request_id, qualifier, payload, now, next_attempt=now))
        worker.depth += 1
        worker.wake()

    async def _worker(self, function: str) -> AsyncWorker:
        async with self._opening:
            worker = self._workers.get(function)
            if worker is None:
                queue = EventQueue(queue_file(self.folder, function))
                await queue.open()
                worker = AsyncWorker(function, queue, self, self._now)
                worker.depth, worker.oldest = await queue.stats()
                self._workers[function] = worker
                if self._started:
                    self._spawn(worker)
            return worker

    def _spawn(self, worker: AsyncWorker) -> None:
        if not self._closing:
            self._owner.spawn(worker.run(), name=f"async:{worker.function}")

    def _worker_failed(self, failure: BackgroundTaskFailed) -> None:
        function = failure.task_name.removeprefix("async:")
        worker = self._workers[function]
        worker.health.failed("worker", str(failure))
        self._restarts[function] = self._restarts.get(function, 0) + 1
        delay = RESTART_BACKOFF.ceiling(self._restarts[function])
        asyncio.get_running_loop().call_later(delay, self._spawn, worker)

    # -- what workers ask (bridge.asyncinvoke.worker.WorkerHost) -----------------------

    def settings(self, function: str, qualifier: str) -> AsyncSettings:
        config = self._host.config
        if function not in config.functions:
            return AsyncSettings()
        override = self.overrides.get(function, qualifier) or self.overrides.get(function, LATEST)
        return effective(config, function, override)

    def reserved_concurrency(self, function: str) -> int | None:
        found = self._host.config.functions.get(function)
        return found.reserved_concurrency if found is not None else None

    def invoker(self, function: str, qualifier: str) -> tuple[Invoker, str] | None:
        return self._host.invocation_target(function, qualifier)

    def function_arn(self, function: str, qualifier: str) -> str | None:
        config = self._host.config
        found = config.functions.get(function)
        if found is None:
            return None
        return f"{found.arn or config.identity.function_arn(function)}:{qualifier}"

    async def deliver(self, destination: str, delivery: Delivery) -> None:
        configured = self._host.config.destinations.get(destination)
        if isinstance(configured, LambdaDestinationConfig):
            if configured.function not in self._host.config.functions:
                raise DestinationError(
                    f"destination {destination!r}: function {configured.function!r} is not "
                    "configured now"
                )
            await self.accept(configured.function, LATEST, delivery.body, str(uuid.uuid4()))
            return
        built = self._host.clients.destinations.get(destination) if configured is not None else None
        if built is None:
            raise DestinationError(f"no destination {destination!r} is configured now")
        if not callable(getattr(built, "deliver", None)):
            raise PermanentDestinationError(
                f"destination {destination!r} ({configured.type if configured else '?'}) "
                "cannot take records of asynchronous invocations (it has no deliver method)"
            )
        await built.deliver(delivery)

    # -- observing and closing ----------------------------------------------------------

    def views(self) -> list[MappingView]:
        """Each queue as an `async:<function>` entry of /readyz and /metrics."""
        views = []
        now = self._now()
        for function, worker in self._workers.items():
            health = worker.health
            state = "Enabled"
            if health.problem_of("worker") is not None:
                state = "Failed"
            elif health.problem is not None:
                state = "Degraded"
            views.append(
                MappingView(
                    name=f"async:{function}",
                    state=state,
                    reason=health.problem or "",
                    metrics=worker.metrics,
                    filtered_out=0,
                    failures=dict(health.failures),
                    queue={
                        "depth": worker.depth,
                        "oldest_event_age_seconds": None
                        if worker.oldest is None
                        else round(max(now - worker.oldest, 0.0), 3),
                    },
                )
            )
        return views

    def metrics(self) -> list[Metric]:
        now = self._now()
        function = ["function"]
        depth = GaugeMetricFamily(
            f"{PREFIX}_async_queue_depth",
            "Asynchronous events queued for the function (being invoked included).",
            labels=function,
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_async_oldest_event_age_seconds",
            "Age of the oldest event in the function's asynchronous queue.",
            labels=function,
        )
        events = CounterMetricFamily(
            f"{PREFIX}_async_events_total",
            "Asynchronous events by outcome: success, retry (an attempt put off), "
            "failure (records sent to a destination), dropped (no destination).",
            labels=[*function, "outcome"],
        )
        for name, worker in self._workers.items():
            depth.add_metric([name], worker.depth)
            if worker.oldest is not None:
                oldest.add_metric([name], round(max(now - worker.oldest, 0.0), 3))
            for outcome in OUTCOMES:
                events.add_metric([name, outcome], worker.outcomes[outcome])
        return [depth, oldest, events]

    async def close(self, deadline_seconds: float) -> None:
        """Let invocations under way finish (up to the deadline), then stop; every event
        not done stays queued for the next start."""
        self._closing = True
        workers = list(self._workers.values())
        await asyncio.gather(*(worker.drain(deadline_seconds) for worker in workers))
        await self._owner.close()
        for worker in workers:
            await worker.queue.close()

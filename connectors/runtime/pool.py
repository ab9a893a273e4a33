"""The execution environments of one function (esm-reference.md 13 and 15: one
invocation per environment at a time; reserved concurrency bounds them).

Environments are created on demand, up to `reserved_concurrency` (without it,
DEFAULT_MAX_ENVIRONMENTS: two per CPU, at most 1000), and each runs one invocation at a
time. A free warm environment is reused (the one used last first, as Lambda tends to);
when every environment is busy and no more may be created, the caller waits, and that
is counted as a throttle. Environments unused for `idle_timeout` are shut down, except
the `provisioned_concurrency` ones, which are initialised by `start` (so before the
daemon is ready) and kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from bridge.ops.metrics import Histogram
from connectors.runtime.environment import Environment, Setup

INIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_log = structlog.get_logger("connectors.runtime")


class EnvironmentPool:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.limit = setup.config.max_environments
        self.idle: list[Environment] = []
        self.busy: set[Environment] = set()
        self._starting = 0
        self._changed = asyncio.Condition()
        self._reaper: asyncio.Task[None] | None = None
        self.cold_starts = 0
        self.throttles = 0
        # For /metrics (connectors.runtime.stats): environments that ended mid-invocation.
        self.ends = {"timeout": 0, "out_of_memory": 0, "exit": 0}
        self.init_duration = Histogram(INIT_BUCKETS)
        self.max_memory = 0  # bytes: the highest Max Memory Used of any environment

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + self._starting

    async def start(self) -> None:
        """Start the provisioned environments; InitFailed if one cannot initialise."""
        count = self.setup.config.provisioned_concurrency
        if count:
            environments = [
                Environment(self.setup, "provisioned-concurrency") for _ in range(count)
            ]
            results = await asyncio.gather(
                *(environment.start() for environment in environments), return_exceptions=True
            )
            failures = [result for result in results if isinstance(result, BaseException)]
            started = [env for env, result in zip(environments, results, strict=True) if not result]
            if failures:
                await asyncio.gather(*(environment.shutdown() for environment in started))
                raise failures[0]
            self.idle.extend(started)
            for environment in started:
                self._observe_init(environment)
        self._reaper = asyncio.ensure_future(self._reap())

    async def acquire(self) -> tuple[Environment, bool]:
        """A free environment, and whether it was made for this call (a cold start).
        Raises InitFailed if a new one cannot initialise."""
        waited = False
        while True:
            async with self._changed:
                while not self.idle and self.size >= self.limit:
                    if not waited:
                        self.throttles += 1
                        waited = True
                    await self._changed.wait()
                if not self.idle:
                    self._starting += 1
                    break
                environment = self.idle.pop()
                if not environment.exited:
                    self.busy.add(environment)
                    return environment, False
                self._changed.notify()
            # Its runtime ended between invocations (e.g. awslambdaric exits after the
            # Runtime API refused an oversized response): never hand it to a call.
            _log.info(
                "runtime.environment_exited",
                function=self.setup.name,
                environment=environment.id,
            )
            await environment.shutdown()
        environment = Environment(self.setup)
        try:
            await environment.start()
        except BaseException:
            async with self._changed:
                self._starting -= 1
                self._changed.notify()
            raise
        async with self._changed:
            self._starting -= 1
            self.busy.add(environment)
        self.cold_starts += 1
        self._observe_init(environment)
        return environment, True

    def _observe_init(self, environment: Environment) -> None:
        if environment.init_seconds is not None:
            self.init_duration.observe(environment.init_seconds)

    async def release(self, environment: Environment) -> None:
        """Give back an environment after its invocation; a dead one is shut down."""
        self.max_memory = max(self.max_memory, environment.max_rss)
        if environment.ended_by is not None:
            self.ends[environment.ended_by] += 1
        async with self._changed:
            self.busy.discard(environment)
            if environment.alive:
                self.idle.append(environment)
            self._changed.notify()
        if not environment.alive:
            await environment.shutdown()

    async def _reap(self) -> None:
        idle_timeout = self.setup.config.idle_timeout
        keep = self.setup.config.provisioned_concurrency
        while True:
            await asyncio.sleep(min(idle_timeout / 2, 5.0))
            now = time.monotonic()
            async with self._changed:
                expired = [
                    environment
                    for environment in self.idle
                    if now - environment.last_used >= idle_timeout
                ]
                expired = expired[: max(0, self.size - keep)]
                for environment in expired:
                    self.idle.remove(environment)
                self._changed.notify_all()
            for environment in expired:
                _log.info(
                    "runtime.environment_reaped",
                    function=self.setup.name,
                    environment=environment.id,
                )
                await environment.shutdown()

    async def close(self) -> None:
        """SHUTDOWN every environment, busy ones included."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        environments = [*self.idle, *self.busy]
        self.idle.clear()
        self.busy.clear()
        await asyncio.gather(*(environment.shutdown() for environment in environments))

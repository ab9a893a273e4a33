"""The `runtime` invoker: each invocation runs in an execution environment of the
function's pool (connectors.runtime.pool), through the Runtime API.

`start` prepares the package (in a thread), finds the runtime (a clear start error when
it is not installed) and initialises the provisioned environments. An environment that
fails INIT answers the invocation that started it with the runtime's init error (e.g.
`Runtime.ImportModuleError`), as Lambda does; the next call tries a fresh one.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from prometheus_client.core import Metric

from bridge.config.plugins import BuildContext
from bridge.errors import InvokerStartError
from bridge.invokers import UNHANDLED
from bridge.records import InvokeResult
from connectors.runtime.bootstraps import bootstrap_for
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.environment import InitFailed, Setup
from connectors.runtime.package import prepare_package
from connectors.runtime.pool import EnvironmentPool
from connectors.runtime.stats import families

_UNRESERVED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def unreserved_slots(limit: int) -> asyncio.Semaphore:
    """The daemon's slots for functions without reserved concurrency: one set per event
    loop (per daemon), sized by the first function built (a change takes a restart)."""
    loop = asyncio.get_running_loop()
    slots = _UNRESERVED.get(loop)
    if slots is None:
        slots = _UNRESERVED[loop] = asyncio.Semaphore(limit)
    return slots


class RuntimeInvoker:
    def __init__(self, name: str, config: RuntimeFunctionConfig, context: BuildContext) -> None:
        self.name = name
        self.config = config
        self._context = context
        self.pool: EnvironmentPool | None = None

    async def start(self) -> None:
        code, layers = self.config.resolved(self._context.handler_root)
        cache = (self._context.state_dir / "runtime").absolute()
        try:
            package = await asyncio.to_thread(prepare_package, code, layers, cache)
        except (OSError, ValueError) as exc:
            raise InvokerStartError(
                f"function {self.name!r}: cannot prepare its package: {exc}"
            ) from None
        bootstrap = await bootstrap_for(self.name, self.config, package)
        setup = Setup(
            name=self.name,
            config=self.config,
            package=package,
            bootstrap=bootstrap,
            arn=self._context.function_arn(self.name, self.config.arn),
            region=self._context.identity.region,
            tmp_root=cache / "tmp",
            version=self._context.function_version,
        )
        pool = EnvironmentPool(setup)
        try:
            await pool.start()
        except InitFailed as failure:
            raise InvokerStartError(
                f"function {self.name!r}: a provisioned environment failed INIT: "
                f"{failure.document.decode('utf-8', 'replace')}"
            ) from None
        self.pool = pool

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        assert self.pool is not None, "start() first"
        if self.config.reserved_concurrency:
            return await self._invoke(self.pool, event, request_id)
        # Without reserved concurrency, the function draws on the daemon-wide
        # limits.concurrent_executions, which all such functions share (as on AWS).
        shared = unreserved_slots(self._context.concurrent_executions)
        if shared.locked():
            self.pool.throttles += 1
        async with shared:
            return await self._invoke(self.pool, event, request_id)

    async def _invoke(self, pool: EnvironmentPool, event: bytes, request_id: str) -> InvokeResult:
        started = time.perf_counter()
        try:
            environment, _ = await pool.acquire()
        except InitFailed as failure:
            return InvokeResult(
                payload=failure.document,
                request_id=request_id,
                function_error=UNHANDLED,
                duration=time.perf_counter() - started,
            )
        try:
            return await environment.invoke(event, request_id)
        finally:
            await pool.release(environment)

    def metrics(self) -> list[Metric]:
        """Per-function (per-version: `name:1`) families for /metrics (connectors.runtime.stats)."""
        version = self._context.function_version
        label = self.name if version == "$LATEST" else f"{self.name}:{version}"
        return families(label, self.pool) if self.pool is not None else []

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

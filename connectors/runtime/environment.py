"""One execution environment: a process group (connectors.runtime.processes) running a
runtime and its extensions behind its own Runtime API server, through Lambda's phases.

- INIT: the extensions start first (connectors.runtime.extensions), the bootstrap once they
  registered, with Lambda's variables only, the task root as working folder and a TMPDIR
  of their own; INIT is over when the runtime (and every extension) asks for its first
  event, and fails if it reports /init/error, exits, or takes more than 10 s.
- INVOKE: one invocation at a time. A timeout (`Sandbox.Timedout`) or an exit
  (`Runtime.ExitError`) leaves the environment dead; the pool starts a fresh one.
- SHUTDOWN: SIGTERM to the group, 2 s, then SIGKILL (with extensions: SIGTERM to the
  runtime, the SHUTDOWN event to them).

Output becomes `function.log` events framed by Lambda's START, END and REPORT lines.
Memory (connectors.runtime.memory: a cgroup every process joins, or a resident-memory watch
of the whole group) is watched during INIT and each invocation; going over `memory_size`
ends the environment with `Runtime.OutOfMemory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import pwd
import shutil
import signal
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from bridge.invokers import CLIENT_CONTEXT, INVOKED_ARN, error_document, function_error, timed_out
from bridge.records import InvokeResult
from connectors.runtime.bootstraps import Bootstrap
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.extensions import ExtensionHost, extension_host
from connectors.runtime.extensions_api import ExtensionFailure
from connectors.runtime.logtail import LogTail
from connectors.runtime.memory import MemoryGuard
from connectors.runtime.package import PreparedPackage
from connectors.runtime.processes import ProcessGroup, exit_reason
from connectors.runtime.runtime_api import Invocation, RuntimeApi
from connectors.runtime.variables import lambda_environment

INIT_TIMEOUT = 10.0  # Lambda's INIT phase limit for on-demand environments
SHUTDOWN_GRACE = 2.0  # SIGTERM, then this long, then SIGKILL

_T = TypeVar("_T")
_log = structlog.get_logger("connectors.runtime")


@dataclass(frozen=True)
class Setup:
    """What every environment of one function is started with."""

    name: str
    config: RuntimeFunctionConfig
    package: PreparedPackage
    bootstrap: Bootstrap
    arn: str
    region: str
    tmp_root: Path
    version: str = "$LATEST"


class InitFailed(Exception):
    """INIT did not complete; `document` is the error the invocation answers with."""

    def __init__(self, error_type: str, document: bytes) -> None:
        super().__init__(error_type)
        self.error_type = error_type
        self.document = document


class Environment:
    def __init__(self, setup: Setup, initialization_type: str = "on-demand") -> None:
        self.setup = setup
        self.id = uuid.uuid4().hex[:12]
        self.api = RuntimeApi()
        self.process: asyncio.subprocess.Process | None = None  # the runtime's
        self.extensions: ExtensionHost | None = None
        self.shutdown_reason = "spindown"  # what SHUTDOWN tells extensions: or timeout, failure
        self.alive = False
        self.busy = False
        self.last_used = time.monotonic()
        self.memory = MemoryGuard(setup.name, setup.config.memory_size)
        config, root = setup.config, setup.package.task_root
        self.group = ProcessGroup(root, config.user, self.memory, self._line)  # all processes
        self.init_seconds: float | None = None
        # Why the environment ended mid-invocation: "timeout", "out_of_memory" or "exit".
        self.ended_by: str | None = None
        self._initialization_type = initialization_type
        self._init_duration: float | None = None
        self._request_id: str | None = None
        self._exit: asyncio.Task[int] | None = None
        self._tmp = setup.tmp_root / self.id
        self._log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{setup.version}]{self.id}"
        self.log_tail = LogTail()  # the current invocation's log, for Invoke's LogType: Tail

    @property
    def exited(self) -> bool:
        """The runtime's process has ended (whether or not an invocation saw it)."""
        return self._exit is not None and self._exit.done()

    @property
    def max_rss(self) -> int:
        return self.memory.peak

    @property
    def pgid(self) -> int | None:
        return self.group.pgid

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def _extension_failure(self) -> ExtensionFailure | None:
        return self.extensions.api.failure if self.extensions is not None else None

    async def start(self) -> None:
        """Run INIT; raise InitFailed (the environment is shut down) if it fails."""
        setup = self.setup
        started = time.perf_counter()
        self.extensions = await asyncio.to_thread(
            extension_host, setup.package, setup.name, setup.config.handler, setup.arn
        )
        address = await self.api.start(self.extensions.api.add_routes if self.extensions else None)
        await asyncio.to_thread(self._make_tmp)
        await self.memory.open()
        variables = lambda_environment(setup, address, self._tmp, self._log_stream)
        variables["AWS_LAMBDA_INITIALIZATION_TYPE"] = self._initialization_type
        self.group.variables = variables
        self.memory.watch()  # from the first extension's start to the end of INIT
        try:
            failure = await self._init()
        finally:
            self.memory.unwatch()
        if failure is not None:
            self.shutdown_reason = "failure"
            await self.shutdown()
            raise failure
        if self.extensions is not None:
            self.extensions.api.init_over = True
        self._init_duration = self.init_seconds = time.perf_counter() - started
        _log.info(
            "runtime.environment_started",
            function=setup.name,
            environment=self.id,
            pid=self.pid,
            memory_watch=self.memory.kind,
            init_duration_ms=round(self._init_duration * 1000, 2),
        )

    async def _spawn(self, argv: list[str]) -> asyncio.subprocess.Process:
        """Start a process of the environment: in its group, as its user, in its cgroup."""
        return await self.group.spawn(argv)

    async def _init(self) -> InitFailed | None:
        """Extensions, their registration, the runtime, INIT's end; what failed, if any."""
        argv = self.setup.bootstrap.argv
        self.alive = True
        try:
            if self.extensions is not None:
                await self.extensions.start(self._spawn)
                problem = await self._unless_over(self.extensions.registered(INIT_TIMEOUT))
                if await self._over_memory(problem is not None):
                    return _init_out_of_memory()
                if problem is not None:
                    return InitFailed(problem.error_type, problem.document())
            self.process = await self._spawn(argv)
        except OSError as exc:
            message = f"cannot start {exc.filename or argv[0]!r}: {exc.strerror or exc}"
            document = error_document("Runtime.InvalidEntrypoint", message, "")
            return InitFailed("Runtime.InvalidEntrypoint", document)
        finally:
            self.memory.all_started()
        self._exit = asyncio.ensure_future(self.process.wait())
        return await self._await_init()

    async def _await_init(self) -> InitFailed | None:
        assert self._exit is not None
        ext = self.extensions
        ready = asyncio.ensure_future(ext.initialised(self.api) if ext else self.api.ready.wait())
        failed = asyncio.ensure_future(self.api.init_failed.wait())
        exceeded = asyncio.ensure_future(self.memory.exceeded.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, failed, exceeded, self._exit},
                timeout=INIT_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            failed.cancel()
            exceeded.cancel()
        succeeded = ready.done() and not ready.cancelled() and self._extension_failure is None
        if await self._over_memory(not succeeded):
            return _init_out_of_memory()
        if (failure := self._extension_failure) is not None:
            return InitFailed(failure.error_type, failure.document())
        if self.api.init_error is not None:
            error = self.api.init_error
            return InitFailed(error.error_type, error.document)
        if succeeded:
            return None
        if self._exit in done:
            message = f"Runtime exited with error: {exit_reason(self._exit.result())}"
            return InitFailed("Runtime.ExitError", error_document("Runtime.ExitError", message, ""))
        message = f"Init timed out after {INIT_TIMEOUT:.2f} seconds"
        return InitFailed("Runtime.InitError", error_document("Runtime.InitError", message, ""))

    async def _unless_over(self, work: Coroutine[Any, Any, _T]) -> _T | None:
        """`work`'s result, or None (`work` cancelled) once the environment is over memory."""
        task = asyncio.ensure_future(work)
        exceeded = asyncio.ensure_future(self.memory.exceeded.wait())
        try:
            await asyncio.wait({task, exceeded}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exceeded.cancel()
            task.cancel()
        return task.result() if task.done() and not task.cancelled() else None

    async def _over_memory(self, failed: bool) -> bool:
        """Over memory: seen by the watch, or (when something `failed`) in a sample now
        (e.g. the cgroup's OOM kills, the killer having ended a process)."""
        return self.memory.exceeded.is_set() or (failed and await self.memory.measure())

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        """One invocation; afterwards `alive` says whether the environment can take more."""
        assert self._exit is not None and self.alive
        setup = self.setup
        timeout = setup.config.timeout
        self._request_id = request_id
        self.log_tail.clear()
        self._line(f"START RequestId: {request_id} Version: {setup.version}")
        started = time.perf_counter()
        deadline, context = time.time() + timeout, CLIENT_CONTEXT.get()
        arn = INVOKED_ARN.get() or setup.arn
        invocation = Invocation(request_id, event, deadline, arn, client_context=context)
        if self.extensions is not None:
            self.extensions.invoke(invocation)
        self.api.submit(invocation)
        self.memory.watch()
        exceeded = asyncio.ensure_future(self.memory.exceeded.wait())
        completed = asyncio.ensure_future(self._completed(invocation))
        result: InvokeResult
        try:
            waits: set[asyncio.Future[Any]] = {completed, self._exit, exceeded}
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            duration = time.perf_counter() - started
            exited = self._exit in done
            if await self._over_memory(exited or self._extension_failure is not None):
                # Over memory_size: the OOM killer (cgroup) or the watch ends it (with
                # extensions, they get SHUTDOWN first: the runtime is killed now).
                self.alive, self.ended_by, self.shutdown_reason = False, "out_of_memory", "failure"
                self._kill(runtime_only=self.extensions is not None)
                message = _out_of_memory(request_id)
                result = function_error("Runtime.OutOfMemory", message, request_id, duration)
            else:
                if not completed.done() or self._extension_failure is not None:
                    # Not over (timeout, exit or an extension's failure): not reusable.
                    self.alive = False
                    self.shutdown_reason = "timeout" if not done else "failure"
                    if not completed.done():
                        self.ended_by = "exit" if exited else "timeout"
                result = self._outcome(invocation, exited, duration)
                if invocation.response_refused:
                    # Its runtime is about to exit (the next call must not find it).
                    self.alive, self.shutdown_reason = False, "failure"
        except asyncio.CancelledError:
            self.alive = False
            self._kill()
            raise
        finally:
            self.memory.unwatch()
            exceeded.cancel()
            completed.cancel()
            invocation.answer.cancel()
            self.api.abandon()
        return self._finish(request_id, result)

    def _finish(self, request_id: str, result: InvokeResult) -> InvokeResult:
        """END and REPORT, and the invocation's log tail on its result."""
        self.memory.settle_peak()
        self._line(f"END RequestId: {request_id}")
        self._line(self._report(request_id, result.duration))
        self._request_id = None
        self._init_duration = None
        self.last_used = time.monotonic()
        return dataclasses.replace(result, log_tail=self.log_tail.bytes())

    def _outcome(self, invocation: Invocation, exited: bool, duration: float) -> InvokeResult:
        request_id = invocation.request_id
        if invocation.answer.done() and not invocation.answer.cancelled():
            answer = invocation.answer.result()
            return InvokeResult(
                payload=answer.payload,
                request_id=request_id,
                function_error=answer.function_error,
                duration=duration,
            )
        if (failure := self._extension_failure) is not None:
            message = f"RequestId: {request_id} Error: {failure.message}"
            return function_error(failure.error_type, message, request_id, duration)
        if exited:
            assert self._exit is not None
            reason = exit_reason(self._exit.result())
            message = f"RequestId: {request_id} Error: Runtime exited with error: {reason}"
            return function_error("Runtime.ExitError", message, request_id, duration)
        # Lambda ends the whole environment on a timeout (esm-reference.md 4); with
        # extensions, they get SHUTDOWN first.
        self._kill(runtime_only=self.extensions is not None)
        return timed_out(request_id, self.setup.config.timeout, duration)

    async def _completed(self, invocation: Invocation) -> None:
        """The runtime answered, and with extensions, it and every extension called
        `next` again (or an extension failed)."""
        if self.extensions is None:
            await invocation.answer
            return
        await self.extensions.invocation_done(invocation, self.api.waiting)

    def _report(self, request_id: str, duration: float) -> str:
        milliseconds = duration * 1000
        parts = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {milliseconds:.2f} ms",
            f"Billed Duration: {math.ceil(milliseconds)} ms",
            f"Memory Size: {self.setup.config.memory_size} MB",
            f"Max Memory Used: {math.ceil(self.max_rss / 1048576)} MB",
        ]
        if self._init_duration is not None:
            parts.append(f"Init Duration: {self._init_duration * 1000:.2f} ms")
        return "\t".join(parts)

    async def shutdown(self) -> None:
        """SHUTDOWN: SIGTERM to the group, SHUTDOWN_GRACE seconds, then SIGKILL (with
        extensions: SIGTERM to the runtime, the SHUTDOWN event to them)."""
        self.alive = False
        if self.extensions is not None:
            exit = asyncio.shield(self._exit) if self._exit is not None else None
            await self.extensions.shutdown(self.shutdown_reason, self._terminate_runtime, exit)
        elif self._exit is not None and not self._exit.done():
            self.group.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), SHUTDOWN_GRACE)
            except TimeoutError:
                self._kill()
                await self._exit
        self._kill()  # whatever the bootstrap or the extensions left behind in the group
        await self.group.close()
        self.memory.unwatch()
        if self.extensions is not None:
            await self.extensions.close()
        await self.api.close()
        await self.memory.close()
        await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    def _kill(self, *, runtime_only: bool = False) -> None:
        if not runtime_only or self.process is None:
            self.group.kill()
        elif self._exit is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def _terminate_runtime(self) -> None:
        if self.process is not None and self._exit is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def _make_tmp(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.setup.config.user is not None:
            entry = pwd.getpwnam(self.setup.config.user)
            os.chown(self._tmp, entry.pw_uid, entry.pw_gid)

    def _line(self, text: str, stream: str = "platform") -> None:
        fields: dict[str, Any] = {"function": self.setup.name, "environment": self.id}
        if self._request_id is not None:
            fields["request_id"] = self._request_id
            self.log_tail.add(text)
        _log.info("function.log", stream=stream, line=text, **fields)


def _init_out_of_memory() -> InitFailed:
    document = error_document("Runtime.OutOfMemory", _out_of_memory(""), "")
    return InitFailed("Runtime.OutOfMemory", document)


def _out_of_memory(request_id: str) -> str:
    """Lambda's words: the runtime was killed (`signal: killed`), typed Runtime.OutOfMemory."""
    prefix = f"RequestId: {request_id} " if request_id else ""
    return f"{prefix}Error: Runtime exited with error: signal: killed"

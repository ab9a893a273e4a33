"""One execution environment: a process group running a runtime behind its own Runtime
API server, through Lambda's phases.

- INIT: the bootstrap starts with Lambda's variables only, the task root as its working
  folder and a TMPDIR of its own; INIT is over when the runtime asks for its first event,
  and fails if it reports /init/error, exits, or takes more than 10 s.
- INVOKE: one invocation at a time. A timeout kills the whole process group
  (`Sandbox.Timedout`), an exit is `Runtime.ExitError`; either way the environment is
  dead and the pool starts a fresh one for the next call.
- SHUTDOWN: SIGTERM to the group, 2 s, then SIGKILL (connectors.runtime.extensions: with
  extensions, which start first in the same group, SIGTERM to the runtime, SHUTDOWN to them).

Its stdout and stderr become `function.log` events tagged with the function and the
request id, framed by Lambda's START, END and REPORT lines. Max Memory Used is the
highest resident memory of the process group seen (sampled while it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import pwd
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from bridge.invokers import error_document, function_error, timed_out
from bridge.records import InvokeResult
from connectors.runtime.bootstraps import Bootstrap
from connectors.runtime.config import RuntimeFunctionConfig
from connectors.runtime.extensions import ExtensionHost, extension_host
from connectors.runtime.extensions_api import ExtensionFailure
from connectors.runtime.package import PreparedPackage
from connectors.runtime.runtime_api import Invocation, RuntimeApi

INIT_TIMEOUT = 10.0  # Lambda's INIT phase limit for on-demand environments
SHUTDOWN_GRACE = 2.0  # SIGTERM, then this long, then SIGKILL
SAMPLE_INTERVAL = 0.25
MAX_LINE = 256 * 1024
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
_PAGE = os.sysconf("SC_PAGE_SIZE")

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


class InitFailed(Exception):
    """INIT did not complete; `document` is the error the invocation answers with."""

    def __init__(self, error_type: str, document: bytes) -> None:
        super().__init__(error_type)
        self.error_type = error_type
        self.document = document


def lambda_environment(setup: Setup, address: str, tmp: Path, log_stream: str) -> dict[str, str]:
    """Lambda's variables (and the function's own), nothing of the daemon's."""
    config = setup.config
    paths = setup.package.search_paths(config.runtime)
    # Lambda's order: the system's folders, then the layers' bin (/opt/bin).
    path = list(SYSTEM_PATH)
    path += [p for p in paths.get("PATH", "").split(os.pathsep) if p and p not in path]
    interpreter = Path(setup.bootstrap.argv[0])
    if interpreter.is_absolute() and str(interpreter.parent) not in path:
        path.insert(0, str(interpreter.parent))
    variables = {
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "TMPDIR": str(tmp),
        **{key: value for key, value in paths.items() if value},
        "PATH": os.pathsep.join(path),
        **config.environment,
        "AWS_LAMBDA_RUNTIME_API": address,
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(setup.package.task_root),
        "LAMBDA_RUNTIME_DIR": setup.bootstrap.runtime_dir or str(setup.package.task_root),
        "AWS_LAMBDA_FUNCTION_NAME": setup.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{setup.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_REGION": setup.region,
        "AWS_DEFAULT_REGION": setup.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
    }
    if setup.bootstrap.pythonpath_tail:
        head = [p for p in variables.get("PYTHONPATH", "").split(os.pathsep) if p]
        variables["PYTHONPATH"] = os.pathsep.join(head + setup.bootstrap.pythonpath_tail)
    return variables


class Environment:
    def __init__(self, setup: Setup, initialization_type: str = "on-demand") -> None:
        self.setup = setup
        self.id = uuid.uuid4().hex[:12]
        self.api = RuntimeApi()
        self.process: asyncio.subprocess.Process | None = None
        self.pgid: int | None = None  # the group of the runtime and the extensions
        self.extensions: ExtensionHost | None = None
        self.shutdown_reason = "spindown"  # what SHUTDOWN tells extensions: or timeout, failure
        self._variables: dict[str, str] = {}
        self.alive = False
        self.busy = False
        self.last_used = time.monotonic()
        self.max_rss = 0
        self._initialization_type = initialization_type
        self._init_duration: float | None = None
        self._request_id: str | None = None
        self._exit: asyncio.Task[int] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._tmp = setup.tmp_root / self.id
        self._log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[$LATEST]{self.id}"

    @property
    def _extension_failure(self) -> ExtensionFailure | None:
        return self.extensions.api.failure if self.extensions is not None else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Run INIT; raise InitFailed (the environment is shut down) if it fails."""
        setup = self.setup
        started = time.perf_counter()
        self.extensions = await asyncio.to_thread(
            extension_host, setup.package, setup.name, setup.config.handler, setup.arn
        )
        address = await self.api.start(self.extensions.api.add_routes if self.extensions else None)
        await asyncio.to_thread(self._make_tmp)
        self._variables = lambda_environment(setup, address, self._tmp, self._log_stream)
        self._variables["AWS_LAMBDA_INITIALIZATION_TYPE"] = self._initialization_type
        failure: InitFailed | None = None
        try:
            if self.extensions is not None:
                await self.extensions.start(self._spawn)
                if (problem := await self.extensions.registered(INIT_TIMEOUT)) is not None:
                    failure = InitFailed(problem.error_type, problem.document())
            if failure is None:
                self.process = await self._spawn(setup.bootstrap.argv)
        except OSError as exc:
            await self.shutdown()
            message = f"cannot start {exc.filename or setup.bootstrap.argv[0]!r}: {exc.strerror}"
            raise InitFailed(
                "Runtime.InvalidEntrypoint",
                error_document("Runtime.InvalidEntrypoint", message, ""),
            ) from None
        self.alive = True
        if self.process is not None:
            self._exit = asyncio.ensure_future(self.process.wait())
            failure = await self._await_init()
        if failure is not None:
            self.shutdown_reason = "failure"
            await self.shutdown()
            raise failure
        if self.extensions is not None:
            self.extensions.api.init_over = True
        self._init_duration = time.perf_counter() - started
        _log.info(
            "runtime.environment_started",
            function=setup.name,
            environment=self.id,
            pid=self.pid,
            init_duration_ms=round(self._init_duration * 1000, 2),
        )

    async def _spawn(self, argv: list[str]) -> asyncio.subprocess.Process:
        """Start a process of the environment in its group (the first one makes it)."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.setup.package.task_root,
            env=self._variables,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=self.pgid or 0,
            user=self.setup.config.user,
        )
        self.pgid = self.pgid or process.pid
        assert process.stdout is not None and process.stderr is not None
        self._readers += [
            asyncio.ensure_future(self._forward(process.stdout, "stdout")),
            asyncio.ensure_future(self._forward(process.stderr, "stderr")),
        ]
        return process

    async def _await_init(self) -> InitFailed | None:
        assert self._exit is not None
        ext = self.extensions
        ready = asyncio.ensure_future(ext.initialised(self.api) if ext else self.api.ready.wait())
        failed = asyncio.ensure_future(self.api.init_failed.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, failed, self._exit},
                timeout=INIT_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            failed.cancel()
        if (failure := self._extension_failure) is not None:
            return InitFailed(failure.error_type, failure.document())
        if self.api.init_error is not None:
            error = self.api.init_error
            return InitFailed(error.error_type, error.document)
        if ready.done() and not ready.cancelled():
            return None
        if self._exit in done:
            message = f"Runtime exited with error: {_exit_reason(self._exit.result())}"
            return InitFailed("Runtime.ExitError", error_document("Runtime.ExitError", message, ""))
        message = f"Init timed out after {INIT_TIMEOUT:.2f} seconds"
        return InitFailed("Runtime.InitError", error_document("Runtime.InitError", message, ""))

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        """One invocation; afterwards `alive` says whether the environment can take more."""
        assert self._exit is not None and self.alive
        setup = self.setup
        timeout = setup.config.timeout
        self._request_id = request_id
        self._line(f"START RequestId: {request_id} Version: $LATEST")
        started = time.perf_counter()
        invocation = Invocation(request_id, event, time.time() + timeout, setup.arn)
        if self.extensions is not None:
            self.extensions.invoke(invocation)
        self.api.submit(invocation)
        sampler = asyncio.ensure_future(self._sample())
        completed = asyncio.ensure_future(self._completed(invocation))
        result: InvokeResult
        try:
            waits: set[asyncio.Future[Any]] = {completed, self._exit}
            done, _ = await asyncio.wait(
                waits,
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            duration = time.perf_counter() - started
            if not completed.done() or self._extension_failure is not None:
                # Not over (timeout, exit or an extension's failure): not reusable.
                self.alive = False
                self.shutdown_reason = "timeout" if not done else "failure"
            result = self._outcome(invocation, self._exit in done, duration)
        except asyncio.CancelledError:
            self.alive = False
            self._kill()
            raise
        finally:
            sampler.cancel()
            completed.cancel()
            invocation.answer.cancel()
            self.api.abandon()
        await self._measure()
        self._line(f"END RequestId: {request_id}")
        self._line(self._report(request_id, result.duration))
        self._request_id = None
        self._init_duration = None
        self.last_used = time.monotonic()
        return result

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
            reason = _exit_reason(self._exit.result())
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
        """SHUTDOWN: SIGTERM to the group, SHUTDOWN_GRACE seconds, then SIGKILL."""
        self.alive = False
        if self.extensions is not None:
            exit = asyncio.shield(self._exit) if self._exit is not None else None
            await self.extensions.shutdown(self.shutdown_reason, self._terminate_runtime, exit)
        elif self.process is not None and self._exit is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid or self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), SHUTDOWN_GRACE)
            except TimeoutError:
                self._kill()
                await self._exit
        self._kill()  # whatever the bootstrap left behind in its group
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 1.0)
        if self.extensions is not None:
            await self.extensions.close()
        await self.api.close()
        await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    def _kill(self, *, runtime_only: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if runtime_only and self.process is not None:
                self.process.kill()
            elif self.pgid is not None:
                os.killpg(self.pgid, signal.SIGKILL)

    def _terminate_runtime(self) -> None:
        if self.process is not None and self._exit is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def _make_tmp(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.setup.config.user is not None:
            entry = pwd.getpwnam(self.setup.config.user)
            os.chown(self._tmp, entry.pw_uid, entry.pw_gid)

    async def _sample(self) -> None:
        while True:
            await self._measure()
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def _measure(self) -> None:
        if self.pgid is not None:
            rss = await asyncio.to_thread(group_rss, self.pgid)
            self.max_rss = max(self.max_rss, rss)

    async def _forward(self, stream: asyncio.StreamReader, name: str) -> None:
        pending = b""
        while chunk := await stream.read(1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._line(line.decode("utf-8", "replace").rstrip("\r"), name)
        if pending:
            self._line(pending.decode("utf-8", "replace"), name)

    def _line(self, text: str, stream: str = "platform") -> None:
        fields: dict[str, Any] = {"function": self.setup.name, "environment": self.id}
        if self._request_id is not None:
            fields["request_id"] = self._request_id
        _log.info("function.log", stream=stream, line=text, **fields)


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (from /proc; 0 where there is none)."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # After the command: state, ppid, pgrp, ...; rss (pages) is the 22nd of them.
        if len(fields) > 21 and int(fields[2]) == pgid:
            total += int(fields[21]) * _PAGE
    return total


def _exit_reason(status: int) -> str:
    return f"signal {-status}" if status < 0 else f"exit status {status}"

"""One execution environment: a process group running a runtime behind its own Runtime
API server, through Lambda's phases.

- INIT: the bootstrap starts with Lambda's variables only, the task root as its working
  folder and a TMPDIR of its own; INIT is over when the runtime asks for its first event,
  and fails if it reports /init/error, exits, or takes more than 10 s.
- INVOKE: one invocation at a time. A timeout kills the whole process group
  (`Sandbox.Timedout`), an exit is `Runtime.ExitError`; either way the environment is
  dead and the pool starts a fresh one for the next call.
- SHUTDOWN: SIGTERM to the group, 2 s, then SIGKILL.

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
        self.alive = False
        self.busy = False
        self.last_used = time.monotonic()
        self.max_rss = 0
        self._members: list[int] = []  # the group's processes, as last found
        self._scanned = -math.inf
        self._scan: asyncio.Task[None] | None = None
        self._initialization_type = initialization_type
        self._init_duration: float | None = None
        self._request_id: str | None = None
        self._exit: asyncio.Task[int] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._tmp = setup.tmp_root / self.id
        self._log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[$LATEST]{self.id}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Run INIT; raise InitFailed (the environment is shut down) if it fails."""
        setup = self.setup
        started = time.perf_counter()
        address = await self.api.start()
        await asyncio.to_thread(self._make_tmp)
        variables = lambda_environment(setup, address, self._tmp, self._log_stream)
        variables["AWS_LAMBDA_INITIALIZATION_TYPE"] = self._initialization_type
        try:
            self.process = await asyncio.create_subprocess_exec(
                *setup.bootstrap.argv,
                cwd=setup.package.task_root,
                env=variables,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                user=setup.config.user,
            )
        except OSError as exc:
            await self.shutdown()
            message = f"cannot start {setup.bootstrap.argv[0]!r}: {exc.strerror or exc}"
            raise InitFailed(
                "Runtime.InvalidEntrypoint",
                error_document("Runtime.InvalidEntrypoint", message, ""),
            ) from None
        self.alive = True
        self._members = [self.process.pid]
        self._exit = asyncio.ensure_future(self.process.wait())
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._forward(self.process.stdout, "stdout")),
            asyncio.ensure_future(self._forward(self.process.stderr, "stderr")),
        ]
        failure = await self._await_init()
        if failure is not None:
            await self.shutdown()
            raise failure
        self._init_duration = time.perf_counter() - started
        _log.info(
            "runtime.environment_started",
            function=setup.name,
            environment=self.id,
            pid=self.pid,
            init_duration_ms=round(self._init_duration * 1000, 2),
        )

    async def _await_init(self) -> InitFailed | None:
        assert self._exit is not None
        ready = asyncio.ensure_future(self.api.ready.wait())
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
        if self.api.init_error is not None:
            error = self.api.init_error
            return InitFailed(error.error_type, error.document)
        if self.api.ready.is_set():
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
        self.api.submit(invocation)
        sampler = asyncio.ensure_future(self._sample())
        result: InvokeResult
        try:
            waits: set[asyncio.Future[Any]] = {invocation.answer, self._exit}
            done, _ = await asyncio.wait(
                waits,
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            duration = time.perf_counter() - started
            if invocation.answer.done():
                answer = invocation.answer.result()
                result = InvokeResult(
                    payload=answer.payload,
                    request_id=request_id,
                    function_error=answer.function_error,
                    duration=duration,
                )
            elif self._exit in done:
                self.alive = False
                reason = _exit_reason(self._exit.result())
                message = f"RequestId: {request_id} Error: Runtime exited with error: {reason}"
                result = function_error("Runtime.ExitError", message, request_id, duration)
            else:
                # Lambda ends the whole environment on a timeout (esm-reference.md 4).
                self.alive = False
                self._kill()
                result = timed_out(request_id, timeout, duration)
        except asyncio.CancelledError:
            self.alive = False
            self._kill()
            raise
        finally:
            sampler.cancel()
            invocation.answer.cancel()
            self.api.abandon()
        self._measure()
        self._line(f"END RequestId: {request_id}")
        self._line(self._report(request_id, result.duration))
        self._request_id = None
        self._init_duration = None
        self.last_used = time.monotonic()
        return result

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
        if self.process is not None and self._exit is not None and not self._exit.done():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exit), SHUTDOWN_GRACE)
            except TimeoutError:
                self._kill()
                await self._exit
        self._kill()  # whatever the bootstrap left behind in its group
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 1.0)
        if self._scan is not None:
            with contextlib.suppress(Exception):
                await self._scan
        await self.api.close()
        await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    def _kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def _make_tmp(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.setup.config.user is not None:
            entry = pwd.getpwnam(self.setup.config.user)
            os.chown(self._tmp, entry.pw_uid, entry.pw_gid)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self._measure()

    def _measure(self) -> None:
        """Read the resident memory of the group's processes as last found (a few small
        /proc reads); finding them scans all of /proc (milliseconds), so that is done at
        most once per SAMPLE_INTERVAL, in a thread, and never waited for."""
        if self.process is None:
            return
        self.max_rss = max(self.max_rss, members_rss(self.process.pid, self._members))
        now = time.monotonic()
        if now - self._scanned >= SAMPLE_INTERVAL and (self._scan is None or self._scan.done()):
            self._scanned = now
            self._scan = asyncio.ensure_future(self._find_members(self.process.pid))

    async def _find_members(self, pgid: int) -> None:
        self._members = await asyncio.to_thread(group_members, pgid)
        self.max_rss = max(self.max_rss, members_rss(pgid, self._members))

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


def group_members(pgid: int) -> list[int]:
    """The processes of the group (from /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return [int(entry) for entry in entries if entry.isdigit() and _stat(int(entry), pgid)]


def members_rss(pgid: int, pids: list[int]) -> int:
    """Resident bytes of those of `pids` still in the group (0 where there is none)."""
    return sum(_stat(pid, pgid) for pid in pids)


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group."""
    return members_rss(pgid, group_members(pgid))


def _stat(pid: int, pgid: int) -> int:
    """The resident bytes of `pid` if it is in group `pgid` (at least 1), else 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    # After the command: state, ppid, pgrp, ...; rss (pages) is the 22nd of them.
    if len(fields) > 21 and int(fields[2]) == pgid:
        return max(1, int(fields[21]) * _PAGE)
    return 0


def _exit_reason(status: int) -> str:
    return f"signal {-status}" if status < 0 else f"exit status {status}"

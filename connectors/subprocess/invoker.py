"""Runs a command per invocation: the event on stdin, the response read from stdout.

Exit status 0 is a success with stdout as the response. Any other status is a function
error; if stdout holds a Lambda error document it is used, else the error is
`Runtime.ExitError`. The command runs in its own process group, and the timeout kills
the whole group. stderr is passed through as the function's log. More than Lambda's
6 MB on stdout is `Function.ResponseSizeTooLarge`: the rest is not read, the group is
killed.

The command sees only what a function needs: PATH, LANG, LC_*, HOME, TZ and TMPDIR from
the daemon, Lambda's variables, and its own `environment:`. The daemon's environment
may hold the admin token, AWS keys and broker passwords; `inherit_environment: true`
hands all of it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time

from bridge.config.plugins import BuildContext
from bridge.errors import InvokerStartError, TransportError
from bridge.invokers import (
    MAX_RESPONSE_BYTES,
    UNHANDLED,
    function_error,
    looks_like_error_document,
    response_too_large,
    timed_out,
)
from bridge.records import InvokeResult
from connectors.subprocess.config import SubprocessFunctionConfig


class SubprocessInvoker:
    def __init__(self, name: str, config: SubprocessFunctionConfig, context: BuildContext) -> None:
        self.name = name
        self.config = config
        self._argv: list[str] = []
        arn = context.function_arn(name, config.arn)
        self._environment = {
            **(dict(os.environ) if config.inherit_environment else _basic_environment()),
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": context.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(math.ceil(config.timeout)),
            "AWS_LAMBDA_FUNCTION_ARN": arn,
            "AWS_REGION": context.identity.region,
            **config.environment,
        }

    async def start(self) -> None:
        problems = self.config.command_problems()
        if problems:
            [(path, message), *_] = problems
            setting = ".".join(map(str, path))
            raise InvokerStartError(f"function {self.name!r}: {setting} {message}")
        self._argv = self.config.argv()

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        started = time.perf_counter()
        environment = {**self._environment, "LAMBDA_BRIDGE_REQUEST_ID": request_id}
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=self.config.cwd,
                env=environment,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(f"cannot start {self._argv[0]!r}: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(self.config.timeout):
                stdout = await _exchange(process, event, MAX_RESPONSE_BYTES)
                if stdout is None:
                    _kill_group(process.pid)
                await process.wait()
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            return timed_out(request_id, self.config.timeout, time.perf_counter() - started)
        except asyncio.CancelledError:
            _kill_group(process.pid)
            raise
        duration = time.perf_counter() - started
        if stdout is None:
            return response_too_large(request_id, duration)
        if process.returncode == 0:
            return InvokeResult(payload=stdout, request_id=request_id, duration=duration)
        if looks_like_error_document(stdout):
            return InvokeResult(
                payload=stdout, request_id=request_id, function_error=UNHANDLED, duration=duration
            )
        status = process.returncode
        reason = (
            f"signal {-status}" if status is not None and status < 0 else f"exit status {status}"
        )
        message = f"RequestId: {request_id} Error: Runtime exited with error: {reason}"
        return function_error("Runtime.ExitError", message, request_id, duration)

    async def close(self) -> None:
        return None


# What a command gets of the daemon's environment: enough to run, nothing secret.
BASIC_VARIABLES = ("PATH", "LANG", "HOME", "TZ", "TMPDIR")


def _basic_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in BASIC_VARIABLES or name.startswith("LC_")
    }


async def _exchange(process: asyncio.subprocess.Process, event: bytes, limit: int) -> bytes | None:
    """Write the event to stdin and read stdout to its end; None once stdout is over
    `limit` (no more is read)."""
    assert process.stdin is not None and process.stdout is not None
    stdin = process.stdin

    async def feed() -> None:
        try:
            stdin.write(event)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command does not read its input: its answer still counts
        finally:
            stdin.close()

    feeding = asyncio.ensure_future(feed())
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await process.stdout.read(1 << 16):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        await feeding
    finally:
        feeding.cancel()
    return b"".join(chunks)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)

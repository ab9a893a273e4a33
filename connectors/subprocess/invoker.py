"""Runs a command per invocation: the event on stdin, the response read from stdout.

Exit status 0 is a success with stdout as the response. Any other status is a function
error; if stdout holds a Lambda error document it is used, else the error is
`Runtime.ExitError`. The command runs in its own process group, and the timeout kills
the whole group. stderr is passed through as the function's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time

from bridge.errors import InvokerStartError, TransportError
from bridge.invokers import UNHANDLED, function_error, looks_like_error_document, timed_out
from bridge.plugins import BuildContext
from bridge.records import InvokeResult
from connectors.subprocess.config import SubprocessFunctionConfig


class SubprocessInvoker:
    def __init__(self, name: str, config: SubprocessFunctionConfig, context: BuildContext) -> None:
        self.name = name
        self.config = config
        self._argv: list[str] = []
        arn = config.arn or context.identity.function_arn(name)
        self._environment = {
            **os.environ,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
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
                stdout, _ = await process.communicate(event)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            return timed_out(request_id, self.config.timeout, time.perf_counter() - started)
        except asyncio.CancelledError:
            _kill_group(process.pid)
            raise
        duration = time.perf_counter() - started
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


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)

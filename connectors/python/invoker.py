"""Calls a Python handler in this process, as Lambda's Python runtime would.

Synchronous handlers run on worker threads so they never block the event loop; async
handlers run on the loop. The timeout is enforced: the invocation fails as
`Sandbox.Timedout` (a sync handler's thread cannot be killed and finishes in the
background, its result ignored), also when an async handler blocked the event loop
past it. Whatever the handler raises, BaseExceptions such as KeyboardInterrupt included,
is a function error with Lambda's error document (esm-reference.md 4); a result
`json.dumps` cannot write is `Runtime.MarshalError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import structlog

from bridge.cancellation import cancelled_from_outside
from bridge.codec import loads
from bridge.config.plugins import BuildContext
from bridge.errors import InvokerStartError, ThrottledError
from bridge.invokers import (
    CLIENT_CONTEXT,
    INVOKED_ARN,
    MAX_RESPONSE_BYTES,
    function_error,
    response_too_large,
    timed_out,
)
from bridge.pipeline.journal import RUNNING_INVOCATION
from bridge.records import InvokeResult
from connectors.python import imports, threads
from connectors.python.config import HandlerSpec, PythonFunctionConfig
from connectors.python.context import LambdaContext, client_context, log_stream_name
from connectors.python.imports import FunctionImports
from connectors.python.response import MarshalError, encode_result
from connectors.python.threads import HandlerThreads

DEFAULT_THREADS = 64
# Frames of these files are the runtime's, not the handler's: left out of stackTrace.
_MACHINERY = (
    __file__,
    threads.__file__,
    imports.__file__,
    asyncio.__file__.rpartition("/")[0],
)


def _handler_frames(exc: BaseException) -> list[str]:
    """The stack trace lines of the handler's own frames, as Lambda's `stackTrace`."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(_MACHINERY)
    ]
    return traceback.StackSummary.from_list(frames).format()


def _load_problem(exc: BaseException) -> str:
    """Why a handler could not be loaded, on one line."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        return f"{type(exc).__name__}: {exc.msg} ({where})"
    if isinstance(exc, SystemExit):
        return f"the module exited while being imported (exit status {exc.code})"
    detail = " ".join(traceback.format_exception_only(type(exc), exc)[-1].split())
    return detail or type(exc).__name__


def _decoded_call(handler: Callable[..., Any], event: bytes, context: LambdaContext) -> Any:
    token = RUNNING_INVOCATION.set(context.aws_request_id)
    try:
        return handler(loads(event), context)
    finally:
        RUNNING_INVOCATION.reset(token)


def _restart(scope: asyncio.Timeout, timeout: float) -> None:
    """A worker took the call: its time starts now (unless the wait is already over)."""
    if not scope.expired():
        with contextlib.suppress(RuntimeError):  # the invocation has ended meanwhile
            scope.reschedule(asyncio.get_running_loop().time() + timeout)


class PythonInvoker:
    def __init__(self, name: str, config: PythonFunctionConfig, context: BuildContext) -> None:
        self.name = name
        self.config = config
        self._context = context
        self._arn = context.function_arn(name, config.arn)
        self._handler: Callable[..., Any] | None = None
        self._log_stream = log_stream_name(context.function_version)
        self._is_async = False
        self._threads = HandlerThreads(config.reserved_concurrency or DEFAULT_THREADS, f"fn-{name}")
        self._warned_blocking = False
        self._log = structlog.get_logger("connectors.python")

    async def start(self) -> None:
        try:
            handler = self._load()
        except BaseException as exc:  # SystemExit or KeyboardInterrupt at import too
            raise InvokerStartError(
                f"function {self.name!r}: cannot load handler {self.config.handler!r}: "
                f"{_load_problem(exc)}"
            ) from None
        if not callable(handler):
            raise InvokerStartError(
                f"function {self.name!r}: handler {self.config.handler!r} is not callable"
            )
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(inspect.unwrap(handler))

    def _load(self) -> Any:
        """The handler, its module loaded in the function's own import root
        (connectors.python.imports): the handler's folder for a file, else `handler_root`."""
        spec = HandlerSpec.parse(self.config.handler)
        module: Any
        if spec.is_file:
            path = spec.file_path(self._context.handler_root).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            module = FunctionImports(self.name, path.parent).load_file(path)
        else:
            imports = FunctionImports(self.name, self._context.handler_root)
            if imports.holds(spec.module.partition(".")[0]):
                module = imports.load(spec.module)
            else:
                # An installed package, found the usual way.
                module = importlib.import_module(spec.module)
        handler = module
        for part in spec.function.split("."):
            handler = getattr(handler, part)
        return handler

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        handler = self._handler
        assert handler is not None, "start() was not called"
        timeout = self.config.timeout
        started = time.perf_counter()
        context = LambdaContext(
            aws_request_id=request_id,
            function_name=self.name,
            invoked_function_arn=INVOKED_ARN.get() or self._arn,
            memory_limit_in_mb=self.config.memory_size,
            deadline=time.time() + timeout,
            log_stream_name=self._log_stream,
            function_version=self._context.function_version,
        )
        context.client_context = client_context(CLIENT_CONTEXT.get())
        scope = asyncio.timeout(timeout)
        call: threads.Call | None = None
        ran_on_loop = self._is_async
        # Which invocation runs, for the crash journal's os._exit hook (bridge.pipeline.journal).
        running = RUNNING_INVOCATION.set(request_id)
        try:
            async with scope:
                if self._is_async:
                    result = handler(loads(event), context)
                else:
                    # The timeout runs from when a worker takes the call: time spent
                    # waiting for a free worker is not the function's. The event is
                    # decoded there too, off the event loop.
                    call = self._threads.submit(
                        _decoded_call,
                        (handler, event, context),
                        on_start=lambda: context.start_clock(timeout),
                        when_started=lambda: _restart(scope, timeout),
                    )
                    result = await call.done
                # Sync wrappers around async handlers (decorators) hand back a coroutine.
                if inspect.isawaitable(result):
                    ran_on_loop = True
                    result = await result
        except BaseException as exc:  # KeyboardInterrupt too: all of it is the handler's error
            if call is not None and call.abandon():
                self._never_started(exc)
            if call is not None and call.started_at is not None:
                started = call.started_at
            return self._raised(exc, scope, request_id, started)
        finally:
            RUNNING_INVOCATION.reset(running)
        if call is not None and call.started_at is not None:
            started = call.started_at
        duration = time.perf_counter() - started
        if duration > timeout:
            # The timeout could not fire: the handler held the event loop until it returned.
            if ran_on_loop:
                self._warn_blocked(duration)
            return timed_out(request_id, timeout, duration)
        try:
            body = encode_result(result)
        except MarshalError as exc:
            return function_error(
                "Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id, duration
            )
        if len(body) > MAX_RESPONSE_BYTES:
            return response_too_large(request_id, duration)
        return InvokeResult(payload=body, request_id=request_id, duration=duration)

    def _never_started(self, exc: BaseException) -> NoReturn:
        """The call was still waiting for a worker and is given up: no worker will run it.
        Cancelled from outside (the daemon stopping): that goes on. Out of time: every
        worker is still busy (handlers running on past their timeouts cannot be stopped),
        so the function is throttled, as Lambda is with no free environment: retried
        later, no attempt counted (esm-reference.md 6.1)."""
        if not isinstance(exc, TimeoutError):
            raise exc
        raise ThrottledError(
            f"function {self.name!r}: all {self._threads.limit} worker threads are busy "
            "(handlers still running past their timeout keep theirs)"
        ) from None

    def _raised(
        self, exc: BaseException, scope: asyncio.Timeout, request_id: str, started: float
    ) -> InvokeResult:
        """What a handler raised, as Lambda reports it. Raises again only a cancellation
        of this invocation from outside (the daemon stopping)."""
        duration = time.perf_counter() - started
        if isinstance(exc, threads.Raised):
            exc = exc.raised
        elif isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
            raise exc
        if isinstance(exc, SystemExit):
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {exc.code}"
            )
            return function_error("Runtime.ExitError", message, request_id, duration)
        if isinstance(exc, TimeoutError) and scope.expired():
            return timed_out(request_id, self.config.timeout, duration)
        return function_error(
            type(exc).__name__, str(exc), request_id, duration, _handler_frames(exc)
        )

    def _warn_blocked(self, duration: float) -> None:
        if self._warned_blocking:
            return
        self._warned_blocking = True
        self._log.warning(
            "python.blocked_event_loop",
            function=self.name,
            duration=round(duration, 3),
            timeout=self.config.timeout,
            hint="an async handler must not call blocking code (time.sleep, sync I/O): "
            "nothing else runs meanwhile; make it a sync handler or await async calls",
        )

    async def close(self) -> None:
        self._threads.close()

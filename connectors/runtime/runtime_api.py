"""The Lambda Runtime API served to one execution environment (esm-reference.md 15).

Each environment gets its own server on a loopback port of its own
(AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>), which only ever hands out that environment's
invocations: one environment can never fetch or answer another's. Only the invocation
handed out last can be answered, and only once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.invokers import MAX_RESPONSE_BYTES, UNHANDLED, error_document
from bridge.records import InvokeResult

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


def trace_header() -> str:
    """An X-Ray trace header as Lambda passes it (`Root=1-<time>-<24 hex>;...`)."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


@dataclass
class Invocation:
    """One event handed to the runtime, and the answer it gave."""

    request_id: str
    event: bytes
    deadline: float  # Unix time in seconds
    function_arn: str
    client_context: str | None = None
    trace_id: str = field(default_factory=trace_header)
    answer: asyncio.Future[InvokeResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # The runtime's response was refused as too large: runtimes (awslambdaric) end then.
    response_refused: bool = False


@dataclass
class InitError:
    """What the runtime reported to /runtime/init/error."""

    error_type: str
    document: bytes


class RuntimeApi:
    """The Runtime API of one environment; `submit` hands it an invocation."""

    def __init__(self) -> None:
        self._pending: asyncio.Queue[Invocation] = asyncio.Queue(maxsize=1)
        self.current: Invocation | None = None
        self.ready = asyncio.Event()  # the runtime asked for its first event: INIT is over
        self.waiting = asyncio.Event()  # the runtime is in `next` with nothing to take
        self.init_error: InitError | None = None
        self.init_failed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._polls: set[asyncio.Task[object]] = set()  # the `GET next` waiting
        self.address = ""

    async def start(self, more_routes: Callable[[web.Application], None] | None = None) -> str:
        """Serve on a free loopback port (with `more_routes`, e.g. the Extensions API);
        return `127.0.0.1:<port>`."""
        app = web.Application(client_max_size=MAX_RESPONSE_BYTES + 1)
        if more_routes is not None:
            more_routes(app)
        app.router.add_get(f"{PREFIX}/invocation/next", self._next)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/response", self._response)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/error", self._error)
        app.router.add_post(f"{PREFIX}/init/error", self._init_error)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.address = f"{host}:{port}"
        return self.address

    async def close(self) -> None:
        # aiohttp does not cancel a handler whose client went away: end the long polls.
        for poll in self._polls:
            poll.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def submit(self, invocation: Invocation) -> None:
        """Hand `invocation` to the runtime's (next) `GET next`; one at a time."""
        self._pending.put_nowait(invocation)

    def abandon(self) -> None:
        """Forget the invocation in progress (it timed out or its environment ended)."""
        self.current = None
        while not self._pending.empty():
            self._pending.get_nowait()

    async def _next(self, request: web.Request) -> web.StreamResponse:
        # Asking for the next event ends INIT (and, on Lambda, the previous invocation).
        self.ready.set()
        poll = asyncio.current_task()
        assert poll is not None
        self._polls.add(poll)
        if self._pending.empty():
            self.waiting.set()
        try:
            invocation = await self._pending.get()
        finally:
            self._polls.discard(poll)
        self.waiting.clear()
        self.current = invocation
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(invocation.deadline * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
            "Content-Type": "application/json",
        }
        if invocation.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        return web.Response(body=invocation.event, headers=headers)

    def _answerable(self, request: web.Request) -> Invocation | web.Response:
        request_id = request.match_info["request_id"]
        invocation = self.current
        if invocation is None or invocation.request_id != request_id:
            return _status(400, "InvalidRequestID", f"no invocation {request_id!r} in progress")
        if invocation.answer.done():
            return _status(400, "InvalidStateTransition", "the invocation is answered already")
        return invocation

    async def _response(self, request: web.Request) -> web.Response:
        found = self._answerable(request)
        if isinstance(found, web.Response):
            return found
        body = await _read_capped(request)
        self.current = None
        if body is None:
            # Lambda: a response over 6 MB is a function error (esm-reference.md 14).
            message = (
                "Response payload size exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes)."
            )
            found.response_refused = True
            found.answer.set_result(
                _error_result("Function.ResponseSizeTooLarge", message, found.request_id)
            )
            return _status(413, "RequestEntityTooLarge", message)
        found.answer.set_result(InvokeResult(payload=body, request_id=found.request_id))
        return web.json_response({"status": "OK"}, status=202)

    async def _error(self, request: web.Request) -> web.Response:
        found = self._answerable(request)
        if isinstance(found, web.Response):
            return found
        body = await _read_capped(request) or b""
        self.current = None
        error_type = request.headers.get(ERROR_TYPE_HEADER, "Runtime.Unknown")
        payload = _error_body(body, error_type, found.request_id)
        found.answer.set_result(
            InvokeResult(payload=payload, request_id=found.request_id, function_error=UNHANDLED)
        )
        return web.json_response({"status": "OK"}, status=202)

    async def _init_error(self, request: web.Request) -> web.Response:
        if self.ready.is_set() or self.init_error is not None:
            return _status(403, "InvalidStateTransition", "INIT is over")
        body = await _read_capped(request) or b""
        error_type = request.headers.get(ERROR_TYPE_HEADER, "Runtime.InitError")
        self.init_error = InitError(error_type, _error_body(body, error_type, ""))
        self.init_failed.set()
        return web.json_response({"status": "OK"}, status=202)


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None once it is over Lambda's 6 MB (no more is read)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(1 << 16):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error_body(body: bytes, error_type: str, request_id: str) -> bytes:
    """The runtime's error document as it sent it, or one made from its text."""
    try:
        document = loads(body) if body.strip() else None
    except JSONDecodeError:
        document = None
    if isinstance(document, dict) and "errorMessage" in document:
        document.setdefault("errorType", error_type)
        return dumps(document)
    text = body.decode("utf-8", "replace").strip() or "the runtime reported an error"
    return error_document(error_type, text, request_id)


def _error_result(error_type: str, message: str, request_id: str) -> InvokeResult:
    return InvokeResult(
        payload=error_document(error_type, message, request_id),
        request_id=request_id,
        function_error=UNHANDLED,
    )


def _status(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"errorType": error_type, "errorMessage": message}, status=status)

"""Helpers every invoker shares: Lambda's error documents and a concurrency cap."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from bridge.codec import JSONDecodeError, dumps, loads
from bridge.protocols import Invoker
from bridge.records import MAX_SYNC_PAYLOAD_BYTES, InvokeResult

UNHANDLED = "Unhandled"

# The client context of the invocation under way: the Invoke API's X-Amz-Client-Context
# decoded to compact JSON text, set by the API around its call of the invoker. Invokers
# that can hand it to the function read it (python, runtime, http, lambda); others, third
# parties' included, need not know of it. Invocations by mappings have none.
CLIENT_CONTEXT: ContextVar[str | None] = ContextVar("client_context", default=None)
# The ARN the caller invoked, qualified as it was named (`...:function:orders:live` for an
# alias): what Lambda tells the handler as its invoked function ARN. Set around the call by
# whoever resolved the qualifier (the API); unset, invokers report their own ARN.
INVOKED_ARN: ContextVar[str | None] = ContextVar("invoked_arn", default=None)
_ERROR_DOCUMENT_KEYS = frozenset({"errorMessage", "errorType", "stackTrace", "requestId", "cause"})


def error_document(
    error_type: str, message: str, request_id: str, stack_trace: list[str] | None = None
) -> bytes:
    """The body Lambda returns for a function error (esm-reference.md 4, 14)."""
    document: dict[str, Any] = {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
    }
    document["stackTrace"] = stack_trace or []
    return dumps(document)


def function_error(
    error_type: str,
    message: str,
    request_id: str,
    duration: float,
    stack_trace: list[str] | None = None,
) -> InvokeResult:
    return InvokeResult(
        payload=error_document(error_type, message, request_id, stack_trace),
        request_id=request_id,
        function_error=UNHANDLED,
        duration=duration,
    )


def timed_out(request_id: str, timeout: float, duration: float) -> InvokeResult:
    """A handler that ran past its timeout: a function error, as on Lambda
    (esm-reference.md 4: `Sandbox.Timedout`, `Task timed out after N seconds`)."""
    message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
    return function_error("Sandbox.Timedout", message, request_id, duration)


# What a function may answer a synchronous invocation with (esm-reference.md 0, 14).
MAX_RESPONSE_BYTES = MAX_SYNC_PAYLOAD_BYTES


def response_too_large(request_id: str, duration: float) -> InvokeResult:
    """A function whose answer is over Lambda's 6 MB: a function error, as on Lambda; no
    more of the answer is read than the limit and one byte."""
    message = (
        f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
    )
    return function_error("Function.ResponseSizeTooLarge", message, request_id, duration)


def looks_like_error_document(body: bytes) -> bool:
    """True if `body` is nothing but a Lambda error document or the old timeout text."""
    stripped = body.strip()
    if stripped.startswith(b"Task timed out after"):
        return True
    if not stripped.startswith(b"{"):
        return False
    try:
        document = loads(stripped)
    except JSONDecodeError:
        return False
    return (
        isinstance(document, dict)
        and {"errorType", "errorMessage"} <= document.keys() <= _ERROR_DOCUMENT_KEYS
    )


class LimitedInvoker:
    """Lets at most `limit` invocations of a function run at once; the others wait.

    This is a function's reserved concurrency, except that callers queue instead of
    being throttled: one slot per Runtime Interface Emulator container, for example.
    The versions of a function share its `slots`, as they share its reserved concurrency.
    """

    def __init__(self, inner: Invoker, limit: int, slots: asyncio.Semaphore | None = None) -> None:
        self.inner = inner
        self._slots = slots or asyncio.Semaphore(limit)

    @property
    def busy(self) -> bool:
        """Every slot is taken: a synchronous Invoke is throttled rather than queued."""
        return self._slots.locked()

    async def start(self) -> None:
        await self.inner.start()

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        async with self._slots:
            return await self.inner.invoke(event, request_id)

    async def close(self) -> None:
        await self.inner.close()

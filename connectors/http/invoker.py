"""POSTs the event to an endpoint that speaks Lambda's Invoke API (esm-reference.md 14, 15).

A function error is recognised from `X-Amz-Function-Error`, from the runtime error-type
headers newer emulators send, or (with `detect_error_body`) from a body that is only a
Lambda error document or the old `Task timed out after` text. Connection failures, 429
and other non-200 statuses are TransportErrors: the function did not run, so Lambda
retries them without counting an attempt (esm-reference.md 6.1).
"""

from __future__ import annotations

import base64
import time

import aiohttp

from bridge.errors import ThrottledError, TransportError
from bridge.invokers import (
    CLIENT_CONTEXT,
    MAX_RESPONSE_BYTES,
    UNHANDLED,
    looks_like_error_document,
    response_too_large,
    timed_out,
)
from bridge.records import InvokeResult
from bridge.redaction import redact_url, redact_urls_in
from connectors.http.config import HttpFunctionConfig

_RUNTIME_ERROR_HEADERS = ("Lambda-Runtime-Function-Error-Type", "Error-Type")
# Our own read timeout waits this much longer than the function's, so an emulator that
# enforces the timeout itself answers first.
TIMEOUT_GRACE = 2.0


class HttpInvoker:
    def __init__(self, name: str, config: HttpFunctionConfig) -> None:
        self.name = name
        self.config = config
        # What messages call the endpoint: never its credentials.
        self._where = redact_url(config.url)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # A silent server times out after the function's timeout (sock_read); the total
        # also bounds one that trickles bytes to keep each read alive.
        connect, answer = self.config.connect_timeout, self.config.timeout + TIMEOUT_GRACE
        timeout = aiohttp.ClientTimeout(
            total=connect + answer, sock_connect=connect, sock_read=answer
        )
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self.config.headers)

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        session = self._session
        assert session is not None, "start() was not called"
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": "RequestResponse",
            "X-Amzn-RequestId": request_id,
        }
        if (context := CLIENT_CONTEXT.get()) is not None:  # the emulator hands it on
            headers["X-Amz-Client-Context"] = base64.b64encode(context.encode()).decode()
        started = time.perf_counter()
        try:
            async with session.post(self.config.url, data=event, headers=headers) as response:
                body = await _read_at_most(response, MAX_RESPONSE_BYTES)
                status = response.status
                response_headers = response.headers
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportError(
                f"cannot connect to {self._where} within {self.config.connect_timeout} s"
            ) from exc
        except TimeoutError:
            return timed_out(request_id, self.config.timeout, time.perf_counter() - started)
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(
                f"cannot reach {self._where}: {redact_urls_in(str(exc)) or type(exc).__name__}"
            ) from exc
        duration = time.perf_counter() - started
        if body is None:
            return response_too_large(request_id, duration)
        if status == 429:
            raise ThrottledError(
                f"{self._where} throttled the invocation (429)",
                _seconds(response_headers.get("Retry-After")),
            )
        if status != 200:
            raise TransportError(
                f"{self._where} answered HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            )
        function_error = response_headers.get("X-Amz-Function-Error")
        if function_error is None and (
            any(name in response_headers for name in _RUNTIME_ERROR_HEADERS)
            or (self.config.detect_error_body and looks_like_error_document(body))
        ):
            function_error = UNHANDLED
        return InvokeResult(
            payload=body,
            request_id=response_headers.get("X-Amzn-RequestId", request_id),
            function_error=function_error,
            status_code=status,
            executed_version=response_headers.get("X-Amz-Executed-Version", "$LATEST"),
            duration=duration,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it is over `limit` (the rest is not read)."""
    declared = response.content_length
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is ignored)."""
    try:
        return max(float(retry_after), 0.0) if retry_after else None
    except ValueError:
        return None

"""The `http` invoker against a real aiohttp server that speaks the Lambda Invoke contract."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import ThrottledError, TransportError
from bridge.invokers import CLIENT_CONTEXT
from bridge.records import InvokeResult
from connectors.http import invoker as http_invoker
from connectors.http.config import HttpFunctionConfig
from connectors.http.invoker import HttpInvoker

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
REQUEST_ID = "c0ffee00-0000-4000-8000-000000000002"
ERROR_DOCUMENT = {"errorMessage": "boom", "errorType": "ValueError"}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received] = field(default_factory=list)

    def invoke_url(self, route: str = "") -> str:
        return f"{self.url}{INVOKE_PATH}{route}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def lambda_server(answer: Handler) -> AsyncIterator[Server]:
    """A real HTTP server on 127.0.0.1 (free port) that records each invoke request and
    answers with `answer`."""
    server = Server(url="")

    async def invoke(request: web.Request) -> web.StreamResponse:
        server.received.append(
            Received(request.method, request.path, dict(request.headers), await request.read())
        )
        return await answer(request)

    app = web.Application()
    app.router.add_post(INVOKE_PATH, invoke)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def build(url: str, **settings: Any) -> HttpInvoker:
    config = HttpFunctionConfig(invoker="http", url=url, **settings)
    # The http invoker uses no local folders.
    context = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))
    invoker = config.build("remote-fn", context)
    assert isinstance(invoker, HttpInvoker)
    return invoker


async def invoke_once(
    url: str, event: bytes = b'{"Records": []}', request_id: str = REQUEST_ID, **settings: Any
) -> InvokeResult:
    invoker = build(url, **settings)
    await invoker.start()
    try:
        return await invoker.invoke(event, request_id)
    finally:
        await invoker.close()


def answer_with(
    body: bytes | str = b"null", status: int = 200, headers: dict[str, str] | None = None
) -> Handler:
    data = body.encode() if isinstance(body, str) else body

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, headers=headers or {})

    return answer


def call(
    answer: Handler, event: bytes = b'{"Records": []}', **settings: Any
) -> tuple[InvokeResult, Server]:
    """Serve `answer`, invoke once, and return the result and what the server received."""

    async def main() -> tuple[InvokeResult, Server]:
        async with lambda_server(answer) as server:
            return await invoke_once(server.invoke_url(), event, **settings), server

    return asyncio.run(main())


def call_raises(answer: Handler, error: type[Exception], **settings: Any) -> Exception:
    async def main() -> None:
        async with lambda_server(answer) as server:
            await invoke_once(server.invoke_url(), **settings)

    with pytest.raises(error) as caught:
        asyncio.run(main())
    return caught.value


# The request


def test_request_follows_the_invoke_contract() -> None:
    """The invoker POSTs the event bytes unchanged, as application/json, with
    `X-Amz-Invocation-Type: RequestResponse` and the request id in `X-Amzn-RequestId`."""
    event = b'{"Records":[{"body":"caf\xc3\xa9"}]}'
    _, server = call(answer_with(b"{}"), event)
    [request] = server.received
    assert request.method == "POST"
    assert request.path == INVOKE_PATH
    assert request.body == event
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Amz-Invocation-Type"] == "RequestResponse"
    assert request.headers["X-Amzn-RequestId"] == REQUEST_ID


def test_a_client_context_is_forwarded_base64() -> None:
    """The client context of an Invoke API call goes on as X-Amz-Client-Context (the
    emulator hands it to the function); a mapping's invocation sends none."""
    context = '{"custom":{"tenant":"acme"}}'

    async def main() -> Server:
        async with lambda_server(answer_with(b"{}")) as server:
            token = CLIENT_CONTEXT.set(context)
            try:
                await invoke_once(server.invoke_url())
            finally:
                CLIENT_CONTEXT.reset(token)
            await invoke_once(server.invoke_url())
            return server

    with_context, without = asyncio.run(main()).received
    assert base64.b64decode(with_context.headers["X-Amz-Client-Context"]).decode() == context
    assert "X-Amz-Client-Context" not in without.headers


def test_configured_headers_are_sent() -> None:
    """Extra `headers` from the config go with every request, next to the contract's own."""
    headers = {"Authorization": "Bearer t0ken", "X-Tenant": "acme"}
    _, server = call(answer_with(b"{}"), headers=headers)
    [request] = server.received
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Tenant"] == "acme"
    assert request.headers["X-Amzn-RequestId"] == REQUEST_ID


# Successful answers


def test_200_is_success_with_body_and_executed_version() -> None:
    """A 200 answer is a success: the body is the payload byte for byte and the executed
    version comes from `X-Amz-Executed-Version`."""
    body = b'{"batchItemFailures": [{"itemIdentifier": "m-1"}]}'
    result, _ = call(answer_with(body, headers={"X-Amz-Executed-Version": "42"}))
    assert result.function_error is None
    assert result.payload == body
    assert result.status_code == 200
    assert result.executed_version == "42"
    assert result.request_id == REQUEST_ID


def test_executed_version_defaults_to_latest() -> None:
    """Without `X-Amz-Executed-Version` the version is `$LATEST`."""
    result, _ = call(answer_with(b"null"))
    assert result.function_error is None
    assert result.executed_version == "$LATEST"


# Function errors


@pytest.mark.parametrize(
    "document",
    [
        ERROR_DOCUMENT,
        {**ERROR_DOCUMENT, "stackTrace": ["  File x"], "requestId": REQUEST_ID},
    ],
    ids=["minimal", "full"],
)
def test_bare_error_document_is_a_function_error(document: dict[str, Any]) -> None:
    """A 200 whose body is only a Lambda error document (how the RIE answers a handler
    exception) is a function error when `detect_error_body` is on, its default."""
    body = json.dumps(document).encode()
    result, _ = call(answer_with(body))
    assert result.function_error == "Unhandled"
    assert result.payload == body


def test_error_document_detection_can_be_disabled() -> None:
    """With `detect_error_body: false` the same error-shaped body is an ordinary success."""
    body = json.dumps(ERROR_DOCUMENT).encode()
    result, _ = call(answer_with(body), detect_error_body=False)
    assert result.function_error is None
    assert result.payload == body


@pytest.mark.parametrize(
    "body",
    [
        {"errorType": "x", "errorMessage": "y", "data": 1},
        {"errorType": "x"},
        [ERROR_DOCUMENT],
        "errorMessage",
    ],
    ids=["extra-key", "incomplete", "list", "string"],
)
def test_error_like_success_bodies_stay_successes(body: Any) -> None:
    """A result that merely contains error-document keys alongside others (or only some of
    them) is the function's legitimate answer, not a function error."""
    result, _ = call(answer_with(json.dumps(body)))
    assert result.function_error is None


def test_old_timeout_text_is_a_function_error() -> None:
    """The plain-text `Task timed out after N seconds` answer of older emulators is a
    function error."""
    result, _ = call(answer_with("Task timed out after 3.00 seconds"))
    assert result.function_error == "Unhandled"
    assert result.payload == b"Task timed out after 3.00 seconds"


@pytest.mark.parametrize("header", ["Lambda-Runtime-Function-Error-Type", "Error-Type"])
def test_runtime_error_type_headers(header: str) -> None:
    """The error-type headers newer emulators send mark a function error even if the body
    does not look like an error document."""
    result, _ = call(answer_with(b'{"whatever": true}', headers={header: "Runtime.ExitError"}))
    assert result.function_error == "Unhandled"


# Faults around the function


def test_429_is_throttled_with_retry_after() -> None:
    """429 raises ThrottledError (a retriable TransportError) carrying `Retry-After`."""
    error = call_raises(
        answer_with(b'{"Type": "User"}', status=429, headers={"Retry-After": "7"}),
        ThrottledError,
    )
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 7.0
    assert error.retriable


@pytest.mark.parametrize(
    ("header", "seconds"), [("1.5", 1.5), ("Wed, 21 Oct 2026 07:28:00 GMT", None)]
)
def test_retry_after_fractions_and_dates(header: str, seconds: float | None) -> None:
    """Fractional Retry-After values are kept; the HTTP-date form is ignored."""
    error = call_raises(
        answer_with(b"", status=429, headers={"Retry-After": header}), ThrottledError
    )
    assert isinstance(error, ThrottledError)
    assert error.retry_after == seconds


def test_429_without_retry_after() -> None:
    """429 without a usable `Retry-After` leaves `retry_after` unset."""
    error = call_raises(answer_with(b"", status=429), ThrottledError)
    assert isinstance(error, ThrottledError)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_transport_errors(status: int) -> None:
    """5xx means the function did not answer: a TransportError (retried without counting an
    attempt), not a function error, and the message names the status."""
    body = json.dumps(ERROR_DOCUMENT)
    error = call_raises(answer_with(body, status=status), TransportError)
    assert not isinstance(error, ThrottledError)
    assert f"HTTP {status}" in str(error)


# Timeouts


def delayed(seconds: float) -> Handler:
    """Answers after `seconds`."""

    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(body=b'"late"')

    return answer


def test_answer_within_grace_is_still_taken() -> None:
    """An endpoint that answers a little after `timeout` but within TIMEOUT_GRACE (an
    emulator enforcing the timeout itself answers then) is not cut off by the invoker."""
    timeout = 0.3
    assert http_invoker.TIMEOUT_GRACE > 0.5
    result, _ = call(delayed(timeout + 0.3), timeout=timeout)
    assert result.function_error is None
    assert result.payload == b'"late"'

"""The `lambda` invoker against a small Invoke-API server written here (aiohttp on
127.0.0.1): results, function errors, throttles and faults, the start-up check, the
qualifier, the 6 MB limit, and the config rules."""

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
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge.config.plugins import BuildContext, Identity
from bridge.errors import InvokerStartError, ThrottledError, TransportError
from bridge.invokers import CLIENT_CONTEXT
from bridge.records import MAX_SYNC_PAYLOAD_BYTES, InvokeResult
from connectors.awslambda import invoker as lambda_invoker
from connectors.awslambda.config import LambdaFunctionConfig
from connectors.awslambda.invoker import LambdaInvoker
from tests.services import AWS_TEST_ENV, free_port

CONTEXT = BuildContext(identity=Identity(), state_dir=Path("."), handler_root=Path("."))
EVENT = b'{"Records": [{"id": 1}]}'
OUR_REQUEST_ID = "00000000-0000-4000-8000-000000000001"
LAMBDA_REQUEST_ID = "c9b8fa9f-5a7f-4b1e-af9c-0c604cde93a5"
ACCOUNT = "123456789012"
# Function name -> what its invocations answer.
ERROR_ANSWERS = {
    "busy": (429, "TooManyRequestsException", {"Retry-After": "7"}),
    "broken": (500, "ServiceException", {}),
    "warming": (502, "ResourceNotReadyException", {}),
    "huge": (413, "RequestTooLargeException", {}),
}
FUNCTION_ERRORS = {"failing": "Unhandled", "handled": "Handled"}
MISSING, DENIED_READ, DENIED = "missing", "no-get-function", "forbidden"


@dataclass
class Seen:
    method: str
    name: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeLambda:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    timeouts: dict[str, int] = field(default_factory=dict)
    sleep_seconds: float = 0.0

    def invocations(self) -> list[Seen]:
        return [request for request in self.seen if request.method == "POST"]


def short_name(path_name: str) -> str:
    """`orders`, `orders:live`, `<account>:function:orders` or an ARN -> `orders`."""
    parts = path_name.split(":")
    return parts[parts.index("function") + 1] if "function" in parts else parts[0]


def aws_error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error the way the rest-json protocol sends it."""
    body = {"Type": "User", "message": f"{code} (fake)"}
    all_headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": LAMBDA_REQUEST_ID}
    return web.json_response(body, status=status, headers={**all_headers, **(headers or {})})


def routes(fake: FakeLambda) -> web.Application:
    async def record(request: web.Request) -> str:
        name = request.match_info["name"]
        fake.seen.append(
            Seen(
                request.method,
                name,
                dict(request.query),
                dict(request.headers),
                await request.read(),
            )
        )
        return short_name(name)

    async def get_function(request: web.Request) -> web.Response:
        name = await record(request)
        if name == MISSING:
            return aws_error(404, "ResourceNotFoundException")
        if name in (DENIED_READ, DENIED):
            return aws_error(403, "AccessDeniedException")
        arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
        timeout = fake.timeouts.get(name, 3)
        configuration = {
            "FunctionName": name,
            "FunctionArn": arn,
            "State": "Active",
            "Timeout": timeout,
        }
        return web.json_response({"Configuration": configuration, "Code": {}})

    async def invoke(request: web.Request) -> web.StreamResponse:
        name = await record(request)
        if name == DENIED:
            return aws_error(403, "AccessDeniedException")
        if request.headers.get("X-Amz-Invocation-Type") == "DryRun":
            return web.Response(status=204)
        if name in ERROR_ANSWERS:
            status, code, headers = ERROR_ANSWERS[name]
            return aws_error(status, code, headers)
        await asyncio.sleep(fake.sleep_seconds)
        headers = {"X-Amz-Executed-Version": "7", "x-amzn-RequestId": LAMBDA_REQUEST_ID}
        if name in FUNCTION_ERRORS:
            headers["X-Amz-Function-Error"] = FUNCTION_ERRORS[name]
            body = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
            return web.json_response(body, headers=headers)
        received = json.loads(await request.read())
        return web.json_response({"statusCode": 200, "received": received}, headers=headers)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/2015-03-31/functions/{name}", get_function)
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    return app


@asynccontextmanager
async def fake_lambda() -> AsyncIterator[FakeLambda]:
    fake = FakeLambda()
    runner = web.AppRunner(routes(fake), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)


def config(function_name: str, endpoint: str, **settings: Any) -> LambdaFunctionConfig:
    return LambdaFunctionConfig.model_validate(
        {"invoker": "lambda", "function_name": function_name, "endpoint_url": endpoint, **settings}
    )


def build(function_name: str, endpoint: str, **settings: Any) -> LambdaInvoker:
    invoker = config(function_name, endpoint, **settings).build("orders-fn", CONTEXT)
    assert isinstance(invoker, LambdaInvoker)
    return invoker


Scenario = Callable[[LambdaInvoker, FakeLambda], Awaitable[Any]]


def scenario(function_name: str, body: Scenario, **settings: Any) -> tuple[Any, FakeLambda]:
    """Start an invoker for `function_name` against a fresh fake, run `body`, close."""

    async def main() -> tuple[Any, FakeLambda]:
        async with fake_lambda() as fake:
            invoker = build(function_name, fake.url, **settings)
            try:
                await invoker.start()
                return await body(invoker, fake), fake
            finally:
                await invoker.close()

    return asyncio.run(main())


async def invoke_once(invoker: LambdaInvoker, _: FakeLambda) -> InvokeResult:
    return await invoker.invoke(EVENT, OUR_REQUEST_ID)


def test_result_carries_lambdas_answer() -> None:
    """A 200 answer is the result: its body, Lambda's request id (x-amzn-RequestId, not
    ours), the executed version and status; the request is a RequestResponse Invoke of
    the event as sent, made once, after one GetFunction check."""
    result, fake = scenario("orders", invoke_once)
    assert isinstance(result, InvokeResult)
    assert json.loads(result.payload) == {"statusCode": 200, "received": json.loads(EVENT)}
    assert result.request_id == LAMBDA_REQUEST_ID
    assert result.executed_version == "7"
    assert result.status_code == 200
    assert result.function_error is None
    assert [request.method for request in fake.seen] == ["GET", "POST"]
    (request,) = fake.invocations()
    assert request.headers["X-Amz-Invocation-Type"] == "RequestResponse"
    assert request.body == EVENT
    assert request.query == {}


@pytest.mark.parametrize("function", ["failing", "handled"])
def test_function_error_header_becomes_the_result_error(function: str) -> None:
    """X-Amz-Function-Error (Unhandled, or the legacy Handled) is the result's function
    error, with Lambda's error document as the payload."""
    result, _ = scenario(function, invoke_once)
    assert result.function_error == FUNCTION_ERRORS[function]
    assert json.loads(result.payload)["errorType"] == "ValueError"


def test_throttle_is_a_throttled_error_with_retry_after() -> None:
    """429 TooManyRequestsException is a ThrottledError carrying Retry-After in seconds;
    the SDK does not retry it on its own."""

    async def body(invoker: LambdaInvoker, _: FakeLambda) -> ThrottledError:
        with pytest.raises(ThrottledError) as raised:
            await invoker.invoke(EVENT, OUR_REQUEST_ID)
        return raised.value

    error, fake = scenario("busy", body)
    assert error.retry_after == 7.0
    assert "TooManyRequestsException" in str(error)
    assert len(fake.invocations()) == 1


@pytest.mark.parametrize("function", ["broken", "warming", "huge"])
def test_service_faults_are_transport_errors(function: str) -> None:
    """500 ServiceException, 502 ResourceNotReadyException and 413 are TransportErrors
    (not throttles), each from a single request."""

    async def body(invoker: LambdaInvoker, _: FakeLambda) -> TransportError:
        with pytest.raises(TransportError) as raised:
            await invoker.invoke(EVENT, OUR_REQUEST_ID)
        return raised.value

    error, fake = scenario(function, body)
    assert not isinstance(error, ThrottledError)
    assert ERROR_ANSWERS[function][1] in str(error)
    assert len(fake.invocations()) == 1


def test_event_over_6_mb_is_not_sent() -> None:
    """An event over the 6 MB request limit becomes a function error
    (RequestTooLargeException, status 413) without a request, so the retry machine
    counts and bisects it instead of retrying a send that cannot succeed."""
    oversized = b'{"Records": ["' + b"x" * MAX_SYNC_PAYLOAD_BYTES + b'"]}'

    async def body(invoker: LambdaInvoker, _: FakeLambda) -> InvokeResult:
        return await invoker.invoke(oversized, OUR_REQUEST_ID)

    result, fake = scenario("orders", body)
    assert result.function_error == "Unhandled"
    assert result.status_code == 413
    assert json.loads(result.payload)["errorType"] == "RequestTooLargeException"
    assert fake.invocations() == []


def test_qualifier_is_sent_as_query_or_in_the_name() -> None:
    """A separate qualifier goes as ?Qualifier= on the check and the Invoke; one in the
    function name stays in the path; the executed version comes from the answer."""
    _, fake = scenario("orders", invoke_once, qualifier="live")
    assert [request.query for request in fake.seen] == [{"Qualifier": "live"}] * 2
    _, fake = scenario("orders:live", invoke_once)
    assert [(request.name, request.query) for request in fake.seen] == [("orders:live", {})] * 2


def test_a_client_context_is_forwarded_base64() -> None:
    """The client context of an Invoke API call goes on to Lambda as ClientContext."""
    context = '{"custom":{"tenant":"acme"}}'

    async def with_context(invoker: LambdaInvoker, fake: FakeLambda) -> InvokeResult:
        token = CLIENT_CONTEXT.set(context)
        try:
            return await invoke_once(invoker, fake)
        finally:
            CLIENT_CONTEXT.reset(token)

    _, fake = scenario("orders", with_context)
    (request,) = fake.invocations()
    assert base64.b64decode(request.headers["X-Amz-Client-Context"]).decode() == context
    _, fake = scenario("orders", invoke_once)
    (request,) = fake.invocations()
    assert "X-Amz-Client-Context" not in request.headers


def test_function_arn_is_sent_as_is() -> None:
    """A full ARN is the FunctionName of both calls."""
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders"
    result, fake = scenario(arn, invoke_once)
    assert result.function_error is None
    assert {request.name for request in fake.seen} == {arn}


@pytest.mark.parametrize("function", [MISSING, DENIED])
def test_missing_or_forbidden_function_fails_at_start(function: str) -> None:
    """ResourceNotFound and AccessDenied at start are InvokerStartErrors naming the
    function and the code, so a typo stops the daemon before it reads anything."""

    async def main() -> None:
        async with fake_lambda() as fake:
            invoker = build(function, fake.url)
            try:
                with pytest.raises(InvokerStartError, match=f"orders-fn.*{function}"):
                    await invoker.start()
            finally:
                await invoker.close()

    asyncio.run(main())


def test_invoke_only_role_is_checked_with_dry_run() -> None:
    """Without lambda:GetFunction, a DryRun Invoke checks the function instead."""
    result, fake = scenario(DENIED_READ, invoke_once)
    assert result.function_error is None
    invocation_types = [request.headers.get("X-Amz-Invocation-Type") for request in fake.seen]
    assert invocation_types == [None, "DryRun", "RequestResponse"]


def test_read_timeout_follows_the_functions_own_timeout() -> None:
    """The invoker waits for the longer of the configured and the function's timeout,
    plus a grace for cold starts, and warns when they differ."""

    async def main() -> tuple[float, list[str]]:
        async with fake_lambda() as fake:
            fake.timeouts["orders"] = 60
            invoker = build("orders", fake.url, timeout=5)
            with capture_logs() as logs:
                await invoker.start()
            await invoker.close()
            return invoker.read_timeout, [entry["event"] for entry in logs]

    read_timeout, events = asyncio.run(main())
    assert read_timeout == 60 + lambda_invoker.TIMEOUT_GRACE_SECONDS
    assert "lambda.timeout_differs" in events


def test_lost_answer_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No answer within the read timeout is a TransportError: Lambda answers a timed-out
    function itself, so silence means the answer was lost."""
    monkeypatch.setattr(lambda_invoker, "TIMEOUT_GRACE_SECONDS", 0.1)

    async def main() -> None:
        async with fake_lambda() as fake:
            # A configuration without a timeout leaves the configured one (0.2 s).
            fake.timeouts["orders"] = 0
            invoker = build("orders", fake.url, timeout=0.2)
            await invoker.start()
            fake.sleep_seconds = invoker.read_timeout + 0.5
            try:
                with pytest.raises(TransportError, match="Invoke failed"):
                    await invoker.invoke(EVENT, OUR_REQUEST_ID)
            finally:
                await invoker.close()

    asyncio.run(main())


def test_unreachable_service_starts_and_invoke_raises() -> None:
    """An unreachable endpoint at start is logged (the check is skipped); invocations
    are TransportErrors, which the bridge retries."""

    async def main() -> None:
        invoker = build("orders", f"http://127.0.0.1:{free_port()}")
        with capture_logs() as logs:
            await invoker.start()
        try:
            assert "lambda.function_unchecked" in [entry["event"] for entry in logs]
            with pytest.raises(TransportError, match="Invoke failed"):
                await invoker.invoke(EVENT, OUR_REQUEST_ID)
        finally:
            await invoker.close()

    asyncio.run(main())


def test_config_rules() -> None:
    """Names, partial ARNs and ARNs (with a qualifier) are accepted; a full ARN becomes
    the failure records' function ARN (qualified if configured); conflicting
    qualifiers, malformed names and unknown keys are rejected."""
    endpoint = "http://127.0.0.1:1"
    arn = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders"
    assert config("orders", endpoint).arn is None
    assert config(f"{ACCOUNT}:function:orders:live", endpoint).effective_qualifier == "live"
    assert config(arn, endpoint).arn == arn
    assert config(f"{arn}:live", endpoint).arn == f"{arn}:live"
    assert config(arn, endpoint, qualifier="7").arn == f"{arn}:7"
    assert config(arn, endpoint, arn="arn:custom").arn == "arn:custom"
    assert config(arn, endpoint).parsed_name.region == "eu-west-1"
    with pytest.raises(ValidationError, match="give one of them"):
        config("orders:live", endpoint, qualifier="blue")
    for bad in ("orders fn", "arn:aws:lambda:eu-west-1:function:orders", "a:b:c", ""):
        with pytest.raises(ValidationError):
            config(bad, endpoint)
    with pytest.raises(ValidationError):
        config("orders", endpoint, qualifier="bad qualifier")
    with pytest.raises(ValidationError):
        config("orders", endpoint, handler="x.py:f")

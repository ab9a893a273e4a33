"""Invokes a real Lambda function synchronously, as an event source mapping does
(esm-reference.md 0, 14: `InvocationType=RequestResponse`).

The SDK makes exactly one attempt per call: the bridge's retry machine decides what is
retried. A 200 answer is a result, with `X-Amz-Function-Error` as its function error and
Lambda's request id (`x-amzn-RequestId`), which failure records name. A 429
(TooManyRequestsException) is a ThrottledError carrying `Retry-After`; every other
failure (5xx, ResourceNotReady, a connection or read timeout, even a function deleted
meanwhile) is a TransportError, retried without counting an attempt (6.1).

An event over the 6 MB request limit (3.1) is not sent: the answer would be a 413 that
retrying cannot fix. It becomes a function error instead (`RequestTooLargeException`,
status 413), so the retry machine counts attempts, bisects the batch if asked, and in
the end hands the records to the on-failure destination.

`start()` checks the function with GetFunction, so a typo or missing permission stops
the daemon at start. A role allowed to invoke but not to read the configuration is
checked with a DryRun invocation instead. An unreachable service is only logged.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from bridge.config.plugins import BuildContext
from bridge.errors import BridgeError, InvokerStartError, ThrottledError, TransportError
from bridge.invokers import CLIENT_CONTEXT, UNHANDLED, error_document
from bridge.records import MAX_SYNC_PAYLOAD_BYTES, InvokeResult
from connectors.aws.client import announce_endpoint, aws_errors, error_code, session
from connectors.aws.config import AwsConnectionConfig
from connectors.awslambda.config import LambdaFunctionConfig

# Added to the function's timeout for the read timeout: Lambda answers a timed-out
# function itself, and a cold start's init phase (up to 10 s) is not part of the timeout.
TIMEOUT_GRACE_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 256
THROTTLED = "TooManyRequestsException"
DENIED = frozenset({"AccessDeniedException", "AccessDenied"})
_SDK_ERRORS = (ClientError, BotoCoreError, OSError, aiohttp.ClientError)


class _Unreachable(BridgeError):
    """The service did not answer the check; invocations will tell."""


class LambdaInvoker:
    def __init__(self, name: str, config: LambdaFunctionConfig, context: BuildContext) -> None:
        self.name = name
        self.config = config
        parsed = config.parsed_name
        self.function_name = config.function_name
        # A qualifier in the name is sent as part of it; Qualifier only for the separate one.
        self._qualifier_arguments = (
            {"Qualifier": config.qualifier} if config.qualifier and not parsed.qualifier else {}
        )
        self._executed_default = config.effective_qualifier or "$LATEST"
        # An ARN names its region: talk to that one unless `region` says otherwise.
        self._connection = config.connection().model_copy(
            update={"region": config.region or parsed.region}
        )
        self._region = self._connection.region_or(context.identity.region)
        self._where = f"function {name!r} ({config.function_name})"
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._log = structlog.get_logger("connectors.awslambda").bind(
            function=name, function_name=config.function_name
        )
        self.read_timeout = config.timeout + TIMEOUT_GRACE_SECONDS

    async def start(self) -> None:
        announce_endpoint(
            self._log, self._connection, "Lambda", f"function {self.function_name}", self._region
        )
        function_timeout = await self._check_function()
        self.read_timeout = max(self.config.timeout, function_timeout) + TIMEOUT_GRACE_SECONDS
        self._client = await self._open_client(self._stack, self.read_timeout)

    async def _open_client(self, stack: contextlib.AsyncExitStack, read_timeout: float) -> Any:
        with aws_errors(
            self._where,
            "creating the client",
            retriable=InvokerStartError,
            permanent=InvokerStartError,
        ):
            return await stack.enter_async_context(
                lambda_client(self._connection, self._region, read_timeout)
            )

    async def _check_function(self) -> float:
        """The function's own timeout (0 if unknown); raise InvokerStartError if it does
        not exist or may not be invoked."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await self._open_client(stack, CHECK_TIMEOUT_SECONDS)
                return await self._read_configuration(client)
        except _Unreachable as exc:
            self._log.warning("lambda.function_unchecked", error=str(exc))
            return 0.0

    async def _read_configuration(self, client: Any) -> float:
        try:
            with aws_errors(
                self._where, "GetFunction", retriable=_Unreachable, permanent=InvokerStartError
            ):
                answer = await client.get_function(
                    FunctionName=self.function_name, **self._qualifier_arguments
                )
        except InvokerStartError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ClientError) and error_code(cause) in DENIED):
                raise
            # Allowed to invoke but not to read the configuration: check with DryRun.
            with aws_errors(
                self._where, "Invoke (DryRun)", retriable=_Unreachable, permanent=InvokerStartError
            ):
                await client.invoke(
                    FunctionName=self.function_name,
                    InvocationType="DryRun",
                    **self._qualifier_arguments,
                )
            self._log.info("lambda.function_checked", check="DryRun")
            return 0.0
        configuration = answer.get("Configuration", {})
        function_timeout = float(configuration.get("Timeout") or 0)
        if function_timeout and function_timeout != self.config.timeout:
            self._log.warning(
                "lambda.timeout_differs",
                configured=self.config.timeout,
                function_timeout=function_timeout,
                message="set the function's timeout in the config: sources rely on it",
            )
        self._log.info(
            "lambda.function_checked",
            function_arn=configuration.get("FunctionArn"),
            state=configuration.get("State"),
            timeout=function_timeout,
        )
        return function_timeout

    async def invoke(self, event: bytes, request_id: str) -> InvokeResult:
        client = self._client
        assert client is not None, "start() was not called"
        if len(event) > MAX_SYNC_PAYLOAD_BYTES:
            return self._too_large(len(event), request_id)
        started = time.perf_counter()
        arguments = dict(self._qualifier_arguments)
        if (context := CLIENT_CONTEXT.get()) is not None:
            arguments["ClientContext"] = base64.b64encode(context.encode()).decode()
        try:
            response = await client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=event,
                **arguments,
            )
            payload = await response["Payload"].read()
        except ClientError as exc:
            raise self._refused(exc) from exc
        except _SDK_ERRORS as exc:
            raise TransportError(
                f"{self._where}: Invoke failed: {exc or type(exc).__name__}"
            ) from exc
        metadata = response.get("ResponseMetadata", {})
        return InvokeResult(
            payload=payload,
            request_id=metadata.get("RequestId") or request_id,
            function_error=response.get("FunctionError"),
            status_code=int(response.get("StatusCode", 200)),
            executed_version=response.get("ExecutedVersion") or self._executed_default,
            duration=time.perf_counter() - started,
        )

    def _refused(self, error: ClientError) -> TransportError:
        """A ThrottledError for 429, with Retry-After in seconds; a TransportError otherwise."""
        code = error_code(error)
        metadata = error.response.get("ResponseMetadata", {})
        status = metadata.get("HTTPStatusCode")
        message = f"{self._where}: Invoke answered {status} {code}: {error}"
        if code == THROTTLED or status == 429:
            headers = metadata.get("HTTPHeaders", {})
            return ThrottledError(message, _seconds(headers.get("retry-after")))
        return TransportError(message)

    def _too_large(self, size: int, request_id: str) -> InvokeResult:
        message = (
            f"the event is {size} bytes, over Lambda's {MAX_SYNC_PAYLOAD_BYTES}-byte "
            "request limit; it was not sent"
        )
        self._log.error("lambda.event_too_large", bytes=size, limit=MAX_SYNC_PAYLOAD_BYTES)
        return InvokeResult(
            payload=error_document("RequestTooLargeException", message, request_id),
            request_id=request_id,
            function_error=UNHANDLED,
            status_code=413,
            executed_version=self._executed_default,
        )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def lambda_client(
    config: AwsConnectionConfig, region: str, read_timeout: float
) -> AsyncIterator[Any]:
    """A Lambda client that makes exactly one attempt per call. (`aws_client` sets
    `max_attempts: 1`, which botocore counts as one *retry*: two attempts, so a throttled
    or failed invocation would be sent twice.) Each invocation in flight holds a
    connection for as long as the function runs, hence the larger pool."""
    settings = BotoConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        max_pool_connections=MAX_CONNECTIONS,
    )
    async with session(config).client(
        "lambda", region_name=region, endpoint_url=config.endpoint_url, config=settings
    ) as client:
        yield client


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is ignored)."""
    try:
        return max(float(retry_after), 0.0) if retry_after else None
    except ValueError:
        return None

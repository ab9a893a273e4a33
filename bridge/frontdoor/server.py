"""The Lambda API listener (`api.listen`) and Invoke (esm-reference.md 14).

`POST /2015-03-31/functions/{FunctionName}/invocations` runs the function with the daemon's
own invoker, the one its mappings use: `RequestResponse` answers 200 with what the function
returned (with `X-Amz-Function-Error` on a function error), `DryRun` 204;
`X-Amz-Client-Context` reaches the invoker as bridge.invokers.CLIENT_CONTEXT. `Event` is
queued durably and answered 202 (bridge.frontdoor.asynchronous).
A function whose `reserved_concurrency` is taken throttles a synchronous call (429
`TooManyRequestsException`) where mappings would wait for a slot. GetFunction,
GetFunctionConfiguration and ListFunctions describe the configured functions
(bridge.frontdoor.describe); ListVersionsByFunction, ListAliases and GetAlias their versions
and aliases (bridge.frontdoor.versions). A qualifier runs that version, or the version an
alias picks (`X-Amz-Executed-Version` names it; bridge.config.versions).

Beyond loopback every request's SigV4 signature is verified with `api.credentials`
(bridge.frontdoor.sigv4). On loopback any credentials are accepted, but a request must
look like an SDK's (an `Authorization` or `X-Amz-*` header, or a JSON content type), which
no web page can send to another site without a CORS preflight this listener never grants,
and its Host must be a loopback name, as on the admin endpoint: a page cannot invoke a
function through the browser of the person running the daemon.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from bridge.addresses import is_loopback, parse_listen
from bridge.codec import JSONDecodeError, dumps, loads
from bridge.config.model import ApiConfig, BridgeConfig
from bridge.errors import BridgeError, ThrottledError
from bridge.frontdoor import sigv4
from bridge.frontdoor.asynchronous import AsyncTarget, EventInvokeConfigApi, accept_event
from bridge.frontdoor.describe import DEFAULT_ITEMS, MAX_ITEMS, Describer
from bridge.frontdoor.errors import ApiError, invalid_parameter, invalid_signature
from bridge.frontdoor.esm import EventSourceMappings, MappingTarget
from bridge.frontdoor.functions import LATEST, Target, resolve
from bridge.frontdoor.http.triggers import HttpTriggers
from bridge.frontdoor.versions import VersionsApi
from bridge.invokers import CLIENT_CONTEXT, INVOKED_ARN, LimitedInvoker
from bridge.ops.admin import foreign_host, serve, stop_serving
from bridge.protocols import Invoker
from bridge.records import MAX_SYNC_PAYLOAD_BYTES, InvokeResult

ADDRESS_FILE = "api-address"
INVOKE_PATH = "/2015-03-31/functions/{function}/invocations"
FUNCTIONS_PATH = "/2015-03-31/functions"
FUNCTION_PATH = "/2015-03-31/functions/{function}"
CONFIGURATION_PATH = "/2015-03-31/functions/{function}/configuration"
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TYPES = ("None", "Tail")
MAX_CLIENT_CONTEXT = 3583  # bytes of base64, as Lambda's Invoke allows
# A body over the limit is still read (and hashed, so a refused signature is told apart)
# up to this much, so that the client, still sending, reads the 413 rather than a reset.
_DRAIN_LIMIT = 4 * MAX_SYNC_PAYLOAD_BYTES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiTarget(MappingTarget, AsyncTarget, Protocol):
    """What the listener needs of the daemon: its config as it is now (reloads replace it),
    its mappings (bridge.frontdoor.esm), its asynchronous queues, and the started invoker
    (and version) an invocation of a function runs on."""

    def invocation_target(self, function: str, qualifier: str) -> tuple[Invoker, str] | None: ...


@dataclass
class _Body:
    data: bytes | None  # None: over the limit
    size: int
    sha256: str


async def _read_body(request: web.Request) -> _Body:
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        digest.update(chunk)
        if size <= MAX_SYNC_PAYLOAD_BYTES:
            chunks.append(chunk)
        elif size > _DRAIN_LIMIT:
            break
    data = b"".join(chunks) if size <= MAX_SYNC_PAYLOAD_BYTES else None
    return _Body(data, size, digest.hexdigest())


def _too_large() -> ApiError:
    return ApiError(
        413,
        "RequestTooLargeException",
        f"Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the InvokeFunction "
        "operation",
    )


def _looks_like_an_sdk(request: web.Request) -> bool:
    if "Authorization" in request.headers:
        return True
    if any(name.lower().startswith("x-amz-") for name in request.headers):
        return True
    media_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    return media_type == "application/json"


def _client_context(header: str | None) -> str | None:
    """X-Amz-Client-Context (base64 of a JSON object) as compact JSON text."""
    if not header:
        return None
    try:
        parsed = loads(base64.b64decode(header, validate=True))
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError too
        parsed = None
    if len(header) > MAX_CLIENT_CONTEXT or not isinstance(parsed, dict):
        raise ApiError(
            400,
            "InvalidRequestContentException",
            "Client context must be a valid Base64-encoded JSON object "
            f"of at most {MAX_CLIENT_CONTEXT} bytes.",
        )
    return dumps(parsed).decode()


def _throttled(target: Target, config: BridgeConfig, exc: ThrottledError | None) -> ApiError:
    reserved = config.functions[target.name].reserved_concurrency
    return ApiError(
        429,
        "TooManyRequestsException",
        "Rate Exceeded.",
        reason=(
            "ReservedFunctionConcurrentInvocationLimitExceeded"
            if reserved is not None
            else "ConcurrentInvocationLimitExceeded"
        ),
        retry_after=exc.retry_after if exc is not None else None,
    )


async def start_api(
    target: ApiTarget, config: BridgeConfig, handler_root: Path
) -> ApiServer | None:
    """Lambda's API, if configured and started; BridgeError if it cannot listen (one asked
    for and not served stops the daemon's start). Relative paths of the config (a
    function's `code`) start at `handler_root`."""
    if config.api is None:
        return None
    server = ApiServer(target, config.api, config.state_dir, handler_root)
    try:
        await server.start(shutdown_timeout=config.drain_timeout_seconds)
    except OSError as exc:
        raise BridgeError(f"api.listen {config.api.listen}: {exc.strerror or exc}") from None
    return server


class ApiServer:
    def __init__(
        self, target: ApiTarget, config: ApiConfig, state_dir: Path, handler_root: Path
    ) -> None:
        self._target = target
        self._config = config
        self._loopback_only = is_loopback(parse_listen(config.listen)[0])
        self._address_file = state_dir / ADDRESS_FILE
        self._runner: web.AppRunner | None = None
        self._log = structlog.get_logger("bridge.api")
        self._describer = Describer(handler_root)
        self.address: str | None = None

    async def start(self, shutdown_timeout: float = 30.0) -> str:
        """Serve; returns the bound `host:port`. Raises OSError if it cannot bind."""
        host, port = parse_listen(self._config.listen)
        app = web.Application(middlewares=[self._check_host, self._answer_errors])
        app.router.add_route("*", INVOKE_PATH, self._invoke)
        app.router.add_route("*", CONFIGURATION_PATH, self._get_function_configuration)
        app.router.add_route("*", FUNCTION_PATH, self._get_function)
        app.router.add_route("*", FUNCTIONS_PATH, self._list_functions)
        app.router.add_route("*", FUNCTIONS_PATH + "/", self._list_functions)
        versions = VersionsApi(
            self._target, self._describer, self._authenticated_body, self._unknown_operation
        )
        versions.add_routes(app.router)
        EventInvokeConfigApi(self._target, self._authenticated_body).register(app.router)
        EventSourceMappings(self._target, self._authenticated_body).add_routes(app.router)
        triggers = HttpTriggers(self._target, self._unknown_operation)
        app.router.add_route("*", "/{tail:.*}", triggers.handle)
        self._runner, self.address = await serve(app, host, port, "api", shutdown_timeout)
        self._address_file.write_text(self.address + "\n")
        self._log.info(
            "api.listening",
            address=self.address,
            signatures_verified=not self._loopback_only,
        )
        return self.address

    async def close(self) -> None:
        """Stop accepting; invocations under way finish (up to the shutdown timeout)."""
        runner, self._runner = self._runner, None
        await stop_serving(runner, self._address_file)

    # -- around every request ---------------------------------------------------------

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._loopback_only and foreign_host(request):
            # 421 Misdirected Request: this server does not answer for that name.
            return ApiError(
                421,
                "MisdirectedRequestException",
                "this endpoint listens on loopback and answers only to a loopback Host "
                "(127.0.0.1, [::1] or localhost)",
            ).response(str(uuid.uuid4()))
        return await handler(request)

    @web.middleware
    async def _answer_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        request["request_id"] = request_id
        try:
            return await handler(request)
        except ApiError as error:
            return error.response(request_id)

    async def _authenticated_body(self, request: web.Request) -> bytes:
        """The body of a request whose sender is accepted; ApiError otherwise."""
        if request.content_length is not None and request.content_length > _DRAIN_LIMIT:
            raise _too_large()
        body = await _read_body(request)
        credentials = self._config.credentials
        if credentials is not None and not self._loopback_only:
            sigv4.verify(
                sigv4.Request(
                    request.method,
                    request.raw_path.partition("?")[0],
                    request.raw_path.partition("?")[2],
                    request.headers,
                    body.sha256,
                ),
                credentials.access_key_id,
                credentials.secret_access_key.get_secret_value(),
            )
        elif not _looks_like_an_sdk(request):
            raise invalid_signature(
                "the request is not signed: send it with an AWS SDK or the aws cli (any "
                "credentials are accepted on loopback), or with an Authorization header"
            )
        if body.data is None:
            raise _too_large()
        return body.data

    async def _unknown_operation(self, request: web.Request) -> web.StreamResponse:
        await self._authenticated_body(request)
        raise ApiError(
            404,
            "UnknownOperationException",
            f"lambda-bridge does not serve {request.method} {request.path} (yet): of "
            "Lambda's API it serves Invoke, GetFunction, GetFunctionConfiguration, "
            "ListFunctions, ListVersionsByFunction, ListAliases, GetAlias and the event "
            "source mapping operations",
        )

    # -- GetFunction, GetFunctionConfiguration, ListFunctions ---------------------------

    def _described(self, request: web.Request, answer: dict[str, Any]) -> web.Response:
        return web.Response(
            body=dumps(answer),
            headers={"x-amzn-RequestId": request["request_id"]},
            content_type="application/json",
        )

    async def _get_function(self, request: web.Request) -> web.StreamResponse:
        return await self._describe_one(request, self._describer.function)

    async def _get_function_configuration(self, request: web.Request) -> web.StreamResponse:
        return await self._describe_one(request, self._describer.configuration)

    async def _describe_one(
        self, request: web.Request, describe: Callable[[BridgeConfig, str, str | None], Any]
    ) -> web.StreamResponse:
        """GetFunction / GetFunctionConfiguration: the function (at its qualifier) named."""
        if request.method != "GET":
            return await self._unknown_operation(request)
        await self._authenticated_body(request)
        config = self._target.config
        target = resolve(config, request.match_info["function"], request.query.get("Qualifier"))
        answer = await asyncio.to_thread(describe, config, target.name, target.given_qualifier)
        return self._described(request, answer)

    async def _list_functions(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return await self._unknown_operation(request)
        await self._authenticated_body(request)
        max_items = request.query.get("MaxItems", str(DEFAULT_ITEMS))
        if not max_items.isdigit() or not 1 <= int(max_items) <= MAX_ITEMS:
            raise invalid_parameter(f"MaxItems must be a whole number from 1 to {MAX_ITEMS}")
        if request.query.get("FunctionVersion", "ALL") != "ALL":
            raise invalid_parameter("FunctionVersion must be ALL")
        config = self._target.config
        marker = request.query.get("Marker") or None
        versions = "FunctionVersion" in request.query  # ALL: published versions too
        answer = await asyncio.to_thread(
            self._describer.page, config, marker, int(max_items), versions
        )
        return self._described(request, answer)

    # -- Invoke -----------------------------------------------------------------------

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return await self._unknown_operation(request)
        payload = await self._authenticated_body(request)
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            raise invalid_parameter(
                f"InvocationType {invocation_type!r} is not one of {', '.join(INVOCATION_TYPES)}"
            )
        log_type = request.headers.get("X-Amz-Log-Type", "None")
        if log_type not in LOG_TYPES:
            raise invalid_parameter(f"LogType {log_type!r} is not one of {', '.join(LOG_TYPES)}")
        config = self._target.config
        target = resolve(config, request.match_info["function"], request.query.get("Qualifier"))
        client_context = _client_context(request.headers.get("X-Amz-Client-Context"))
        if invocation_type == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request["request_id"]})
        if not payload.strip():
            payload = b"{}"  # Lambda hands a function invoked without a payload {}
        try:
            loads(payload)
        except (JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {exc}",
            ) from None
        if invocation_type == "Event":
            return await accept_event(
                self._target.asynchronous, target, payload, request["request_id"]
            )
        token, arn = CLIENT_CONTEXT.set(client_context), INVOKED_ARN.set(target.invoked_arn)
        try:
            result, version = await self._call(config, target, payload, request["request_id"])
        finally:
            CLIENT_CONTEXT.reset(token)
            INVOKED_ARN.reset(arn)
        # A configured version is the one that ran; $LATEST may be a remote function's.
        executed = version if version != LATEST else result.executed_version or LATEST
        headers = {"x-amzn-RequestId": request["request_id"], "X-Amz-Executed-Version": executed}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if log_type == "Tail":
            # Invokers that keep no log (all but runtime) answer an empty tail, so code
            # that decodes LogResult works whatever the function's invoker.
            headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail or b"").decode()
        return web.Response(
            body=result.payload, status=200, headers=headers, content_type="application/json"
        )

    async def _call(
        self, config: BridgeConfig, target: Target, payload: bytes, request_id: str
    ) -> tuple[InvokeResult, str]:
        found = self._target.invocation_target(target.name, target.qualifier)
        if found is None:  # replaced by a reload at this very moment
            raise ApiError(
                500, "ServiceException", f"function {target.name!r} is being reloaded; try again"
            )
        invoker, version = found
        if isinstance(invoker, LimitedInvoker) and invoker.busy:
            self._log.info("api.throttled", function=target.name, request_id=request_id)
            raise _throttled(target, config, None)
        try:
            return await invoker.invoke(payload, request_id), version
        except ThrottledError as exc:
            self._log.info("api.throttled", function=target.name, request_id=request_id)
            raise _throttled(target, config, exc) from None
        except BridgeError as exc:
            self._log.warning(
                "api.invoke_failed", function=target.name, request_id=request_id, error=str(exc)
            )
            raise ApiError(
                500, "ServiceException", f"the function could not be invoked: {exc}"
            ) from None

"""Serving HTTP triggers on the API listener.

A request to a configured route needs no signature, as a Function URL with `AuthType NONE`
(on a loopback listener its Host must still be a loopback name: the listener's middleware
checks that first). Requests under Lambda's API paths (`/2015-03-31/...`), and every
request while no route is configured, go on to the Lambda API's own handler. The routes
follow the config: a reload that changes `http_triggers` applies to the next request.

The function runs through the same started invoker the Invoke API and mappings use; a
function whose `reserved_concurrency` is taken answers 429 rather than queueing, as a
synchronous invocation is throttled on AWS. The event must fit Lambda's 6 MB synchronous
payload (esm-reference.md 14). esm-reference.md has no section on API Gateway: the event
and response shapes follow AWS's API Gateway developer guide (see the README).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from aiohttp import web

from bridge.codec import dumps
from bridge.config.http_routes import Match, RouteTable
from bridge.config.http_triggers import is_lambda_api_path
from bridge.config.model import BridgeConfig
from bridge.errors import BridgeError, ThrottledError
from bridge.frontdoor.functions import LATEST
from bridge.frontdoor.http import responses
from bridge.frontdoor.http.events import Api, HttpRequest, event_v1, event_v2
from bridge.frontdoor.http.responses import HttpAnswer, MalformedAnswer
from bridge.invokers import LimitedInvoker
from bridge.protocols import Invoker
from bridge.records import MAX_SYNC_PAYLOAD_BYTES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A body over the limit is still read this far, so the client reads the 413, not a reset.
_DRAIN_LIMIT = 4 * MAX_SYNC_PAYLOAD_BYTES


class TriggerTarget(Protocol):
    @property
    def config(self) -> BridgeConfig: ...

    def invocation_target(self, function: str, qualifier: str) -> tuple[Invoker, str] | None: ...


async def _read_body(request: web.Request) -> bytes | None:
    """The body, or None if it is over Lambda's 6 MB synchronous payload limit."""
    if request.content_length is not None and request.content_length > _DRAIN_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size <= MAX_SYNC_PAYLOAD_BYTES:
            chunks.append(chunk)
        elif size > _DRAIN_LIMIT:
            break
    return b"".join(chunks) if size <= MAX_SYNC_PAYLOAD_BYTES else None


def _received(request: web.Request, body: bytes) -> HttpRequest:
    raw_path, _, raw_query = request.raw_path.partition("?")
    return HttpRequest(
        method=request.method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=[
            (name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
            for name, value in request.raw_headers
        ],
        body=body,
        source_ip=request.remote or "127.0.0.1",
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        received=time.time(),
    )


class HttpTriggers:
    """The catch-all handler of the API listener: routes first, then `fallback`."""

    def __init__(self, target: TriggerTarget, fallback: Handler) -> None:
        self._target = target
        self._fallback = fallback
        self._compiled: tuple[BridgeConfig, RouteTable, Api] | None = None
        self._log = structlog.get_logger("bridge.api")

    def _routes(self) -> tuple[RouteTable, Api]:
        config = self._target.config
        if self._compiled is None or self._compiled[0] is not config:
            listen = config.api.listen if config.api is not None else ""
            api_id = hashlib.sha256(listen.encode()).hexdigest()[:10]
            api = Api(config.aws.account_id, api_id)
            self._compiled = (config, RouteTable(config.http_triggers), api)
        return self._compiled[1], self._compiled[2]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        table, api = self._routes()
        if not table or is_lambda_api_path(request.path):
            return await self._fallback(request)
        request_id: str = request["request_id"]
        match = table.find(request.method, request.raw_path.partition("?")[0])
        if match is None:
            return _response(responses.NOT_FOUND, request_id, "2.0")
        answer = await self._answer(request, match, api, request_id)
        return _response(answer, request_id, match.route.format)

    async def _answer(
        self, request: web.Request, match: Match, api: Api, request_id: str
    ) -> HttpAnswer:
        body = await _read_body(request)
        if body is None:
            return responses.TOO_LARGE
        received = _received(request, body)
        route = match.route
        build = event_v2 if route.format == "2.0" else event_v1
        event = dumps(build(received, match, api, request_id))
        if len(event) > MAX_SYNC_PAYLOAD_BYTES:
            return responses.TOO_LARGE
        target = self._target.invocation_target(route.function, LATEST)
        if target is None:  # replaced by a reload at this very moment
            return responses.UNAVAILABLE
        invoker = target[0]
        fields = {"function": route.function, "route": route.path, "request_id": request_id}
        if isinstance(invoker, LimitedInvoker) and invoker.busy:
            self._log.info("http_trigger.throttled", **fields)
            return responses.THROTTLED
        try:
            result = await invoker.invoke(event, request_id)
        except ThrottledError:
            self._log.info("http_trigger.throttled", **fields)
            return responses.THROTTLED
        except BridgeError as exc:
            self._log.warning("http_trigger.invoke_failed", error=str(exc), **fields)
            return responses.message(500, "Internal Server Error")
        if result.function_error:
            self._log.info("http_trigger.function_error", **fields)
            return responses.FUNCTION_ERROR
        try:
            return responses.answer(route.format, result.payload)
        except MalformedAnswer as exc:
            self._log.warning("http_trigger.malformed_answer", problem=str(exc), **fields)
            return responses.malformed(route.format)


def _response(answer: HttpAnswer, request_id: str, format_version: str) -> web.Response:
    # HTTP APIs name their request ID apigw-requestid; REST APIs x-amzn-RequestId.
    name = "apigw-requestid" if format_version == "2.0" else "x-amzn-RequestId"
    headers = [*answer.headers, (name, request_id)]
    return web.Response(status=answer.status, body=answer.body, headers=headers)

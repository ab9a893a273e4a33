"""Asynchronous invocation through Lambda's API (esm-reference.md 12, 14).

`Invoke` with `X-Amz-Invocation-Type: Event` answers 202 (empty body, `x-amzn-RequestId`)
once the event is committed to the function's durable queue (bridge.asyncinvoke); an
event over 1 MB is refused with 413 `RequestTooLargeException`.

The event-invoke-config operations (`/2019-09-25/functions/{FunctionName}/event-invoke-config`):
PUT sets a function's config whole (`PutFunctionEventInvokeConfig`), POST merges into it
(`Update...`), GET and DELETE read and remove it, `.../list` lists them. Destinations are
named by ARN, which must be the ARN of a configured destination (an SQS queue's, an SNS
topic's, an S3 bucket's, an event bus's, a function's); an `s3` destination cannot take
successes, as on AWS. A config set here is effective at once, kept under `state_dir`
and overrides the config file's `async:` (bridge.asyncinvoke.settings).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from bridge.asyncinvoke.service import AsyncInvocations
from bridge.asyncinvoke.settings import destination_named, shown
from bridge.codec import dumps
from bridge.config.model import BridgeConfig
from bridge.frontdoor.errors import ApiError, invalid_parameter, json_object, not_found
from bridge.frontdoor.functions import Target, resolve

# Lambda's asynchronous payload limit (1 MB since 2026, esm-reference.md [S31]).
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024
CONFIG_PATH = "/2019-09-25/functions/{function}/event-invoke-config"
LIST_PATH = "/2019-09-25/functions/{function}/event-invoke-config/list"
MAX_LIST_ITEMS = 50
_KEYS = {"OnSuccess", "OnFailure"}


class AsyncTarget(Protocol):
    @property
    def config(self) -> BridgeConfig: ...

    @property
    def asynchronous(self) -> AsyncInvocations: ...


async def accept_event(
    service: AsyncInvocations, target: Target, payload: bytes, request_id: str
) -> web.Response:
    """Queue an `Event` invocation durably, then answer 202."""
    if len(payload) > MAX_ASYNC_PAYLOAD_BYTES:
        raise ApiError(
            413,
            "RequestTooLargeException",
            f"Request must be smaller than {MAX_ASYNC_PAYLOAD_BYTES} bytes for the "
            "InvokeFunction operation",
        )
    try:
        await service.accept(target.name, target.qualifier, payload, request_id)
    except Exception as exc:  # nothing was promised: the caller may send it again
        raise ApiError(
            500, "ServiceException", f"the event could not be queued: {type(exc).__name__}: {exc}"
        ) from None
    return web.Response(status=202, headers={"x-amzn-RequestId": request_id})


class EventInvokeConfigApi:
    def __init__(
        self, target: AsyncTarget, body_of: Callable[[web.Request], Awaitable[bytes]]
    ) -> None:
        self._target = target
        self._body_of = body_of
        self._started = time.time()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", LIST_PATH, self._list)
        router.add_route("*", CONFIG_PATH, self._config)

    def _answer(self, request: web.Request, answer: Any, status: int = 200) -> web.Response:
        return web.Response(
            body=None if status == 204 else dumps(answer),
            status=status,
            headers={"x-amzn-RequestId": request["request_id"]},
            content_type=None if status == 204 else "application/json",
        )

    async def _config(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("PUT", "POST", "GET", "DELETE"):
            raise ApiError(404, "UnknownOperationException", f"{request.method} is not served here")
        body = await self._body_of(request)
        config = self._target.config
        target = resolve(config, request.match_info["function"], request.query.get("Qualifier"))
        overrides = self._target.asynchronous.overrides
        if request.method == "GET":
            return self._answer(request, self._current(config, target))
        if request.method == "DELETE":
            if not await overrides.delete(target.name, target.qualifier):
                raise self._none(target)
            return self._answer(request, None, 204)
        given = _parse(body)
        if request.method == "POST":
            base = overrides.get(target.name, target.qualifier) or self._from_file(config, target)
            given = {**(base or {}), **given}
        stored = self._checked(config, given)
        await overrides.put(target.name, target.qualifier, stored)
        return self._answer(request, self._shown(config, target, stored))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            raise ApiError(404, "UnknownOperationException", f"{request.method} is not served here")
        await self._body_of(request)
        config = self._target.config
        target = resolve(config, request.match_info["function"], None)
        max_items = request.query.get("MaxItems", str(MAX_LIST_ITEMS))
        if not max_items.isdigit() or not 1 <= int(max_items) <= MAX_LIST_ITEMS:
            raise invalid_parameter(f"MaxItems must be a whole number from 1 to {MAX_LIST_ITEMS}")
        made = self._target.asynchronous.overrides.of_function(target.name)
        found = {
            qualifier: self._shown(config, Target(target.name, qualifier, target.arn), kept)
            for qualifier, kept in made.items()
        }
        if not found and (file := self._from_file(config, target)) is not None:
            found[target.qualifier] = self._shown(config, target, file)
        qualifiers = sorted(found)
        marker = request.query.get("Marker")
        if marker:
            qualifiers = [qualifier for qualifier in qualifiers if qualifier >= marker]
        page, rest = qualifiers[: int(max_items)], qualifiers[int(max_items) :]
        answer: dict[str, Any] = {"FunctionEventInvokeConfigs": [found[q] for q in page]}
        if rest:
            answer["NextMarker"] = rest[0]
        return self._answer(request, answer)

    # -- shapes -------------------------------------------------------------------------

    def _none(self, target: Target) -> ApiError:
        return not_found(f"The function {target.qualified_arn} doesn't have an EventInvokeConfig")

    def _current(self, config: BridgeConfig, target: Target) -> dict[str, Any]:
        kept = self._target.asynchronous.overrides.get(target.name, target.qualifier)
        if kept is None:
            kept = self._from_file(config, target)
        if kept is None:
            raise self._none(target)
        return self._shown(config, target, kept)

    def _from_file(self, config: BridgeConfig, target: Target) -> dict[str, Any] | None:
        """The file's `async:` in the API's terms, if the file sets one."""
        function = config.functions[target.name]
        if "async_" not in function.model_fields_set:
            return None
        settings = function.async_
        return {
            "MaximumRetryAttempts": settings.maximum_retry_attempts,
            "MaximumEventAgeInSeconds": settings.maximum_event_age_in_seconds,
            "OnSuccess": shown(config, settings.destinations.on_success),
            "OnFailure": shown(config, settings.destinations.on_failure),
            "LastModified": self._started,
        }

    def _shown(self, config: BridgeConfig, target: Target, kept: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "LastModified": kept["LastModified"],
            "FunctionArn": target.qualified_arn,
            "DestinationConfig": {
                key: ({"Destination": kept[key]} if kept.get(key) else {}) for key in sorted(_KEYS)
            },
        }
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if kept.get(key) is not None:
                answer[key] = kept[key]
        return answer

    def _checked(self, config: BridgeConfig, given: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = {"LastModified": time.time()}
        for key, low, high in (
            ("MaximumRetryAttempts", 0, 2),
            ("MaximumEventAgeInSeconds", 60, 21_600),
        ):
            value = given.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise invalid_parameter(f"{key} must be a whole number from {low} to {high}")
            stored[key] = value
        for key in _KEYS:
            reference = given.get(key)
            if reference is None:
                continue
            name = destination_named(config, reference)
            if name is None:
                raise invalid_parameter(
                    f"{key} destination {reference!r} is the ARN of no destination configured "
                    "under `destinations` (an sqs queue, sns topic, s3 bucket, event bus or "
                    "function)"
                )
            if key == "OnSuccess" and config.destinations[name].type == "s3":
                raise invalid_parameter("An S3 bucket can only be an OnFailure destination")
            stored[key] = reference
        return stored


def _parse(body: bytes) -> dict[str, Any]:
    """The request's settings, with DestinationConfig flattened to OnSuccess / OnFailure."""
    document = json_object(body)
    given: dict[str, Any] = {
        key: document[key]
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")
        if key in document
    }
    destinations = document.get("DestinationConfig") or {}
    if not isinstance(destinations, dict):
        raise invalid_parameter("DestinationConfig must be an object")
    for key in _KEYS & destinations.keys():
        entry = destinations[key] or {}
        if not isinstance(entry, dict):
            raise invalid_parameter(f"DestinationConfig.{key} must be an object")
        destination = entry.get("Destination")
        if destination is not None and not isinstance(destination, str):
            raise invalid_parameter(f"DestinationConfig.{key}.Destination must be an ARN")
        given[key] = destination
    return given

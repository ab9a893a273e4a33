"""Lambda's event source mapping API (esm-reference.md 16): Create, Get, List, Update and
Delete EventSourceMapping, over the same mappings the config file declares.

A config file mapping's UUID is derived from its name; API-made mappings are named by
their UUID (bridge.frontdoor.overlay). Update applies like a reload of that one mapping: it drains
and starts again with the new settings. Delete removes API-made mappings only: a config
file mapping is refused (`ResourceInUseException`), it is removed from the file. Answers
show the transitional state AWS answers with (`Creating`, `Updating`, `Enabling`,
`Disabling`, `Deleting`); Get and List show `Enabled` or `Disabled`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from bridge.codec import dumps
from bridge.config.model import BridgeConfig, LoadedConfig, MappingConfig
from bridge.config.versions import LATEST
from bridge.errors import BridgeError
from bridge.frontdoor.errors import ApiError, invalid_parameter, json_object, not_found
from bridge.frontdoor.esm_describe import describe, function_arn
from bridge.frontdoor.esm_params import SOURCE_PARAMETERS, problem_text, settings_of, source_of
from bridge.frontdoor.functions import resolve
from bridge.frontdoor.overlay import (
    Changed,
    Created,
    MappingInvalid,
    MappingOverlay,
    StoredChanges,
    build_mapping,
    entry_of,
    fingerprint,
    merged,
    now,
)
from bridge.pipeline.mapping import MappingRunner

MAPPINGS_PATH = "/2015-03-31/event-source-mappings"
MAPPING_PATH = "/2015-03-31/event-source-mappings/{uuid}"
MAX_ITEMS = 10000
PAGE_SIZE = 100  # at most this many per page, whatever MaxItems says
_NO_SUCH_MAPPING = "The resource you requested does not exist."

Authenticate = Callable[[web.Request], Awaitable[bytes]]


class MappingTarget(Protocol):
    """What the API needs of the daemon: its effective config, runners and overlay."""

    @property
    def config(self) -> BridgeConfig: ...

    runners: dict[str, MappingRunner]
    overlay: MappingOverlay


class EventSourceMappings:
    def __init__(self, target: MappingTarget, authenticate: Authenticate) -> None:
        self._target = target
        self._authenticate = authenticate
        self._served: dict[str, tuple[str, float]] = {}  # name -> (fingerprint, since)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for path in (MAPPINGS_PATH, MAPPINGS_PATH + "/"):
            router.add_route("GET", path, self._list)
            router.add_route("POST", path, self._create)
        router.add_route("GET", MAPPING_PATH, self._get)
        router.add_route("PUT", MAPPING_PATH, self._update)
        router.add_route("DELETE", MAPPING_PATH, self._delete)

    # -- describing -------------------------------------------------------------------

    def _uuid(self, mapping: MappingConfig) -> str:
        return self._target.overlay.stored.uuid_of(mapping.name)

    def _last_modified(self, mapping: MappingConfig) -> float:
        """When the API changed it, else when the daemon first ran its current settings."""
        stored = self._target.overlay.stored.last_modified(mapping.name)
        if stored is not None:
            return stored
        current = fingerprint(mapping)
        seen = self._served.get(mapping.name)
        if seen is None or seen[0] != current:
            seen = self._served[mapping.name] = (current, now())
        return seen[1]

    def _described(self, mapping: MappingConfig, state: str | None = None) -> dict[str, Any]:
        return describe(
            self._target.config,
            mapping,
            mapping_uuid=self._uuid(mapping),
            runner=self._target.runners.get(mapping.name),
            last_modified=self._last_modified(mapping),
            state=state,
        )

    def _find(self, mapping_uuid: str) -> MappingConfig:
        for mapping in self._target.config.mappings:
            if self._uuid(mapping) == mapping_uuid:
                return mapping
        raise not_found(_NO_SUCH_MAPPING)

    @staticmethod
    def _answer(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(
            body=dumps(body),
            status=status,
            headers={"x-amzn-RequestId": request["request_id"]},
            content_type="application/json",
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return json_object(await self._authenticate(request))

    def _function(self, name: Any, *, mapped: bool = True) -> str:
        """The configured function `name` names; a version or alias is refused for a
        mapping (`mapped`): mappings invoke `$LATEST`, never silently instead of one."""
        if not isinstance(name, str):
            raise invalid_parameter("FunctionName is required")
        try:
            target = resolve(self._target.config, name, None)
        except ApiError as exc:
            if exc.status == 404:
                raise invalid_parameter("Function does not exist") from None
            raise
        if mapped and target.qualifier != LATEST:
            raise invalid_parameter(
                f"lambda-bridge's event source mappings invoke a function's $LATEST: name "
                f"{target.name!r} without the qualifier {target.qualifier!r}"
            )
        return target.name

    async def _edit(self, change: Callable[[StoredChanges, LoadedConfig], MappingConfig]) -> None:
        try:
            await self._target.overlay.edit(change)
        except MappingInvalid as exc:
            raise invalid_parameter(problem_text(exc.problems)) from None
        except BridgeError as exc:
            raise ApiError(500, "ServiceException", str(exc)) from None

    async def _check_source(self, entry: dict[str, Any]) -> None:
        """The settings are valid, and what they read exists (asked of the service)."""
        try:
            mapping = await asyncio.to_thread(
                build_mapping, self._target.overlay.file.config, entry
            )
        except MappingInvalid as exc:
            raise invalid_parameter(problem_text(exc.problems)) from None
        missing = await mapping.source.check_exists(self._target.config.identity)
        if missing is not None:
            raise invalid_parameter(missing)

    # -- operations -------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        await self._authenticate(request)
        return self._answer(request, self._described(self._find(request.match_info["uuid"])))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        await self._authenticate(request)
        query = request.query
        max_items = query.get("MaxItems", str(PAGE_SIZE))
        if not max_items.isdigit() or not 1 <= int(max_items) <= MAX_ITEMS:
            raise invalid_parameter(f"MaxItems must be a whole number from 1 to {MAX_ITEMS}")
        described = [self._described(mapping) for mapping in self._target.config.mappings]
        if "FunctionName" in query:
            try:
                function = self._function(query["FunctionName"], mapped=False)
                arn = function_arn(self._target.config, function)
            except ApiError:
                arn = None
            described = [item for item in described if item["FunctionArn"] == arn]
        if "EventSourceArn" in query:
            source = query["EventSourceArn"]
            described = [item for item in described if item.get("EventSourceArn") == source]
        start = 0
        if query.get("Marker"):
            uuids = [item["UUID"] for item in described]
            if query["Marker"] not in uuids:
                raise invalid_parameter("Marker is not one this API gave")
            start = uuids.index(query["Marker"])
        page = described[start : start + min(int(max_items), PAGE_SIZE)]
        answer: dict[str, Any] = {"EventSourceMappings": page}
        if start + len(page) < len(described):
            answer["NextMarker"] = described[start + len(page)]["UUID"]
        return self._answer(request, answer)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        config = self._target.config
        function = self._function(body.get("FunctionName"))
        mapping_uuid = str(uuid.uuid4())
        assert config.api is not None  # this listener is served
        source = source_of(body, mapping_uuid, config.api.aws)
        entry = merged(
            {"name": mapping_uuid, "function": function, "source": source},
            settings_of(body, config),
        )
        await self._check_source(entry)

        def create(stored: StoredChanges, file: LoadedConfig) -> MappingConfig:
            mapping = build_mapping(file.config, entry)
            self._refuse_duplicate(mapping, None)
            stored.created[mapping_uuid] = Created(entry, now())
            return mapping

        await self._edit(create)
        mapping = self._find(mapping_uuid)
        return self._answer(
            request, self._described(mapping, "Creating" if mapping.enabled else "Disabled"), 202
        )

    async def _update(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        before = self._find(request.match_info["uuid"])
        fixed = sorted(SOURCE_PARAMETERS & set(body))
        if fixed:
            raise invalid_parameter(f"{', '.join(fixed)} cannot be updated")
        settings = settings_of(body, self._target.config)
        if "FunctionName" in body:
            settings["function"] = self._function(body["FunctionName"])
        name = before.name

        def update(stored: StoredChanges, file: LoadedConfig) -> MappingConfig:
            created = stored.created.get(name)
            if created is not None:
                entry = merged(created.settings, settings)
                mapping = build_mapping(file.config, entry)
                stored.created[name] = Created(entry, now())
            else:
                declared = next(item for item in file.config.mappings if item.name == name)
                change = stored.changed.get(name)
                combined = {**(change.settings if change else {}), **settings}
                mapping = build_mapping(file.config, merged(entry_of(declared), combined))
                stored.changed[name] = Changed(fingerprint(declared), combined, now())
            if "function" in settings:
                self._refuse_duplicate(mapping, name)
            return mapping

        await self._edit(update)
        after = self._find(request.match_info["uuid"])
        state = "Updating"
        if after.enabled != before.enabled:
            state = "Enabling" if after.enabled else "Disabling"
        return self._answer(request, self._described(after, state), 202)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        await self._authenticate(request)
        mapping = self._find(request.match_info["uuid"])
        if mapping.name not in self._target.overlay.stored.created:
            raise ApiError(
                400,
                "ResourceInUseException",
                f"the mapping {mapping.name!r} is declared in the config file "
                f"{self._target.overlay.file.name}: remove it there and reload",
            )
        answer = self._described(mapping, "Deleting")

        def delete(stored: StoredChanges, file: LoadedConfig) -> MappingConfig:
            stored.created.pop(mapping.name, None)
            return mapping

        await self._edit(delete)
        return self._answer(request, answer, 202)

    def _refuse_duplicate(self, mapping: MappingConfig, name: str | None) -> None:
        """One mapping per function and source, as AWS allows (409)."""
        config = self._target.config
        key = _source_key(mapping, config)
        if key is None:  # a source AWS has no name for (a folder, Redis streams)
            return
        for other in config.mappings:
            if other.name in (mapping.name, name):
                continue
            if other.function == mapping.function and _source_key(other, config) == key:
                raise ApiError(
                    409, "ResourceConflictException", _conflict(mapping, config, self._uuid(other))
                )


def _source_key(mapping: MappingConfig, config: BridgeConfig) -> tuple[Any, ...] | None:
    described = mapping.source.api_description(mapping.name, config.identity)
    if "EventSourceArn" in described:
        return (described["EventSourceArn"],)
    if "SelfManagedEventSource" in described:
        servers = described["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"]
        return (tuple(servers), tuple(described.get("Topics", ())))
    return None


def _conflict(mapping: MappingConfig, config: BridgeConfig, existing: str) -> str:
    described = mapping.source.api_description(mapping.name, config.identity)
    tail = f"already exists. Please update or delete the existing mapping with UUID {existing}"
    arn = described.get("EventSourceArn")
    function = mapping.function
    if mapping.source.type == "sqs":
        return (
            f'An event source mapping with SQS arn (" {arn} ") and function (" {function} ") {tail}'
        )
    if arn is not None and mapping.source.type != "kafka":
        return (
            f'The event source arn (" {arn} ") and function (" {function} ") provided mapping '
            f"{tail}"
        )
    endpoints = described.get("SelfManagedEventSource", {}).get("Endpoints", {})
    servers = ",".join(endpoints.get("KAFKA_BOOTSTRAP_SERVERS", [arn]))
    topics = ",".join(described.get("Topics", ()))
    return (
        f'An event source mapping with event source ("{servers}"), '
        f'function ("{function_arn(config, function)}"), '
        f'topics ("{topics}") {tail}'
    )

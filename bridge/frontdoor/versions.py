"""ListVersionsByFunction, ListAliases and GetAlias (AWS's API reference) for the versions
and aliases the config declares (bridge.config.versions); Invoke takes them as the
qualifier of esm-reference.md 14.

ListVersionsByFunction lists `$LATEST` first, then the versions in number order, each
described as GetFunctionConfiguration describes it with that qualifier. ListAliases lists
aliases in name order; its `FunctionVersion` keeps those whose primary version it is.
Both page with `Marker` (the first item of the next page, as `NextMarker` gave it) and
`MaxItems` (1 to 10000; 50 when not given). An alias's `RevisionId` changes when its
settings do.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from bridge.codec import dumps
from bridge.config.model import BridgeConfig
from bridge.config.versions import LATEST, AliasConfig
from bridge.frontdoor.describe import DEFAULT_ITEMS, MAX_ITEMS, Describer
from bridge.frontdoor.errors import invalid_parameter, not_found
from bridge.frontdoor.functions import Target, resolve

VERSIONS_PATH = "/2015-03-31/functions/{function}/versions"
ALIASES_PATH = "/2015-03-31/functions/{function}/aliases"
ALIAS_PATH = "/2015-03-31/functions/{function}/aliases/{alias}"
# Lambda's patterns for ListAliases' FunctionVersion and GetAlias' Name.
_FUNCTION_VERSION = re.compile(r"\$LATEST|[0-9]{1,1024}")
_ALIAS_NAME = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]{1,128}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Configured(Protocol):
    @property
    def config(self) -> BridgeConfig: ...


def alias_configuration(target: Target, name: str, alias: AliasConfig) -> dict[str, Any]:
    """Lambda's AliasConfiguration of one configured alias."""
    settings = f"{target.arn}\0{name}\0{alias.model_dump_json()}"
    revision = hashlib.sha256(settings.encode()).hexdigest()[:32]
    described: dict[str, Any] = {
        "AliasArn": f"{target.arn}:{name}",
        "Name": name,
        "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": str(uuid.UUID(hex=revision)),
    }
    if alias.routing:
        described["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.routing)}
    return described


def _page(items: list[str], request: web.Request) -> tuple[list[str], str | None]:
    """The items of the page that `Marker` and `MaxItems` ask for, and the next marker."""
    max_items = request.query.get("MaxItems", str(DEFAULT_ITEMS))
    if not max_items.isdigit() or not 1 <= int(max_items) <= MAX_ITEMS:
        raise invalid_parameter(f"MaxItems must be a whole number from 1 to {MAX_ITEMS}")
    marker = request.query.get("Marker") or None
    start = 0
    if marker is not None:
        if marker not in items:
            raise invalid_parameter(f"Marker {marker!r} is not one this listing gave")
        start = items.index(marker)
    end = start + int(max_items)
    return items[start:end], items[end] if end < len(items) else None


class VersionsApi:
    """The three operations' routes, served by the API listener (bridge.frontdoor.server)."""

    def __init__(
        self,
        target: Configured,
        describer: Describer,
        authenticate: Callable[[web.Request], Awaitable[bytes]],
        unknown: Handler,
    ) -> None:
        self._target = target
        self._describer = describer
        self._authenticate = authenticate
        self._unknown = unknown

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", VERSIONS_PATH, self._list_versions)
        router.add_route("*", ALIASES_PATH, self._list_aliases)
        router.add_route("*", ALIAS_PATH, self._get_alias)

    async def _function(self, request: web.Request) -> tuple[BridgeConfig, Target] | None:
        """The unqualified function the request names; None: not a GET (unknown operation)."""
        if request.method != "GET":
            return None
        await self._authenticate(request)
        config = self._target.config
        target = resolve(config, request.match_info["function"], None)
        if target.qualified:
            raise invalid_parameter("FunctionName must name the function without a qualifier")
        return config, target

    def _answer(self, request: web.Request, answer: dict[str, Any]) -> web.Response:
        return web.Response(
            body=dumps(answer),
            headers={"x-amzn-RequestId": request["request_id"]},
            content_type="application/json",
        )

    async def _list_versions(self, request: web.Request) -> web.StreamResponse:
        found = await self._function(request)
        if found is None:
            return await self._unknown(request)
        config, target = found
        versions = [LATEST, *sorted(config.functions[target.name].versions, key=int)]
        page, next_marker = _page(versions, request)

        def describe() -> list[dict[str, Any]]:
            return [self._describer.configuration(config, target.name, v) for v in page]

        answer: dict[str, Any] = {"Versions": await asyncio.to_thread(describe)}
        if next_marker is not None:
            answer["NextMarker"] = next_marker
        return self._answer(request, answer)

    async def _list_aliases(self, request: web.Request) -> web.StreamResponse:
        found = await self._function(request)
        if found is None:
            return await self._unknown(request)
        config, target = found
        aliases = config.functions[target.name].aliases
        version = request.query.get("FunctionVersion")
        if version is not None and not _FUNCTION_VERSION.fullmatch(version):
            raise invalid_parameter("FunctionVersion must be $LATEST or a version number")
        names = sorted(name for name, alias in aliases.items() if version in (None, alias.version))
        page, next_marker = _page(names, request)
        answer: dict[str, Any] = {
            "Aliases": [alias_configuration(target, name, aliases[name]) for name in page]
        }
        if next_marker is not None:
            answer["NextMarker"] = next_marker
        return self._answer(request, answer)

    async def _get_alias(self, request: web.Request) -> web.StreamResponse:
        found = await self._function(request)
        if found is None:
            return await self._unknown(request)
        config, target = found
        name = request.match_info["alias"]
        if not _ALIAS_NAME.fullmatch(name):
            raise invalid_parameter(f"Name {name!r} is not an alias name")
        alias = config.functions[target.name].aliases.get(name)
        if alias is None:
            raise not_found(f"Alias not found: {target.arn}:{name}")
        return self._answer(request, alias_configuration(target, name, alias))

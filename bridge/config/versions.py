"""A function's versions and aliases, as its config declares them (esm-reference.md 14).

`versions: {"1": {handler: ..., memory_size: ...}}`: each version is the function's own
settings with these replaced, key by key (a nested setting such as `environment` is
replaced whole, not merged); it is validated as a function of the same invoker would be.
Versions are named as Lambda publishes them: "1", "2", ... `$LATEST` is the function's
own settings.

`aliases: {live: {version: "1", routing: {"2": 0.1}}}`: a name for a version, optionally
sending a share of the invocations to one additional version, as Lambda's weighted
aliases do (AliasRoutingConfiguration: one additional version, weight 0.0 to 1.0).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

if TYPE_CHECKING:
    from bridge.config.plugins import FunctionConfig

LATEST = "$LATEST"
# Settings a version cannot have of its own: what the function is, its versions, and its
# reserved concurrency, which Lambda reserves for the function, all versions together.
NOT_PER_VERSION = ("invoker", "versions", "aliases", "reserved_concurrency")

_VERSION = re.compile(r"[1-9][0-9]{0,9}")
# Lambda's alias name pattern: letters, digits, - and _, not all digits (that is a version).
_ALIAS = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]{1,128}")


def _as_text(value: Any) -> Any:
    """`1:` in YAML is the number 1; a version is named by its number either way."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _keys_as_text(value: Any) -> Any:
    return (
        {_as_text(key): item for key, item in value.items()} if isinstance(value, dict) else value
    )


def _version_name(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(
            f"version {value!r} is not a version name: Lambda numbers versions 1, 2, 3, ..."
        )
    return value


def _alias_name(value: str) -> str:
    if not _ALIAS.fullmatch(value):
        raise ValueError(
            f"alias {value!r} is not an alias name: 1 to 128 letters, digits, - or _, "
            "not all of them digits"
        )
    return value


VersionName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_version_name)]
AliasName = Annotated[str, AfterValidator(_alias_name)]
Weight = Annotated[float, Field(ge=0.0, le=1.0)]


class AliasConfig(BaseModel):
    """One alias: the version it names, and an optional weighted second version."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    version: Annotated[str, BeforeValidator(_as_text)] = Field(
        description='A version of the function ("1", ...) or $LATEST.'
    )
    routing: Annotated[dict[VersionName, Weight], BeforeValidator(_keys_as_text)] = Field(
        default_factory=dict,
        max_length=1,
        description="At most one additional version and the share (0.0 to 1.0) of "
        "invocations it receives, as Lambda's AdditionalVersionWeights.",
    )
    description: str = Field("", max_length=256)


VersionOverrides = Annotated[dict[VersionName, dict[str, Any]], BeforeValidator(_keys_as_text)]


def version_config(function: FunctionConfig, version: str) -> FunctionConfig:
    """The settings `version` runs with: the function's, with the version's overrides.
    ValidationError if they are not valid (bridge.config.version_checks reports it with its
    path)."""
    if version == LATEST:
        return function
    return type(function).model_validate(merged_settings(function, version))


def merged_settings(function: FunctionConfig, version: str) -> dict[str, Any]:
    base = function.model_dump(exclude_unset=True, by_alias=True, exclude={"versions", "aliases"})
    return {**base, **function.versions[version], "invoker": function.invoker}


def qualifiers(function: FunctionConfig) -> set[str]:
    """Every qualifier that names something of this function."""
    return {LATEST, *function.versions, *function.aliases}


def pick_version(
    function: FunctionConfig, qualifier: str, draw: Callable[[], float] = random.random
) -> str | None:
    """The version an invocation with `qualifier` runs: an alias with routing sends each
    invocation to its additional version with that version's weight (`draw() < weight`),
    as Lambda's weighted aliases do; None if the qualifier names nothing."""
    if qualifier == LATEST or qualifier in function.versions:
        return qualifier
    alias = function.aliases.get(qualifier)
    if alias is None:
        return None
    for extra, weight in alias.routing.items():
        if draw() < weight:
            return extra
    return alias.version

"""The `http_triggers:` settings: routes on the API listener that invoke a function.

A path is a template as API Gateway writes one: literal segments, `{name}` for one
segment, and a last `{name+}` for the rest of the path (greedy, as `{proxy+}`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from bridge.config.plugins import StrictModel

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"]
ANY = "ANY"


def _any() -> list[Method]:
    return ["ANY"]


_VARIABLE = re.compile(r"\{(?P<name>[A-Za-z0-9_.-]+)(?P<greedy>\+)?\}")
# RFC 3986 pchar, without `{` `}` (which mark variables) and without percent escapes.
_LITERAL = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]+")
# Lambda's API versions its paths with a date: /2015-03-31/functions, /2019-09-25/...
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_lambda_api_path(path: str) -> bool:
    """Whether a request path belongs to Lambda's API (its first segment is a date)."""
    return _API_VERSION.fullmatch(path.lstrip("/").partition("/")[0]) is not None


def path_problem(path: str) -> str | None:
    """What is wrong with a route's path template, or None."""
    if not path.startswith("/"):
        return "must start with /"
    if path == "/":
        return None
    segments = path[1:].split("/")
    if is_lambda_api_path(path):
        return (
            f"/{segments[0]}/ is where Lambda's API lives on this listener (its paths start "
            "with a date such as /2015-03-31/): choose another path"
        )
    names: set[str] = set()
    for index, segment in enumerate(segments):
        variable = _VARIABLE.fullmatch(segment)
        if variable is None:
            if not segment:
                return "has an empty segment (// or a trailing /)"
            if _LITERAL.fullmatch(segment) is None:
                return (
                    f"segment {segment!r} is neither literal text (letters, digits and "
                    "-._~!$&'()*+,;=:@) nor a {name} or greedy {name+} variable"
                )
            continue
        name = variable["name"]
        if variable["greedy"] and index != len(segments) - 1:
            return f"the greedy variable {{{name}+}} must be the last segment"
        if name in names:
            return f"names the variable {name!r} twice"
        names.add(name)
    return None


class HttpTriggerConfig(StrictModel):
    """One route: requests whose method and path match invoke `function` with an API
    Gateway event of payload `format` 2.0 (HTTP API) or 1.0 (REST API)."""

    path: str = Field(
        min_length=1,
        max_length=2048,
        description="/orders/{id}, /files/{proxy+}: a {name} is one segment, a last "
        "{name+} the rest of the path.",
    )
    methods: list[Method] = Field(
        default_factory=_any,
        min_length=1,
        description="GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, or ANY (the default).",
    )
    function: str = Field(description="Name of an entry under `functions`.")
    format: Literal["2.0", "1.0"] = Field(
        "2.0", description="The event: API Gateway HTTP API payload 2.0, or REST API 1.0."
    )

    @field_validator("path")
    @classmethod
    def _a_path_template(cls, value: str) -> str:
        problem = path_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [item.upper() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("methods")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a method twice")
        if ANY in value and len(value) > 1:
            raise ValueError("ANY already covers every method: list it alone")
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _yaml_number(cls, value: Any) -> Any:
        # `format: 2.0` in YAML is a number.
        if isinstance(value, float) and value in (1.0, 2.0):
            return f"{value:.1f}"
        return value

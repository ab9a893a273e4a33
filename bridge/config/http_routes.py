"""HTTP trigger routes: compiled from `http_triggers:`, matched against requests.

A request's path is split into segments and each is percent-decoded before matching, so an
encoded `/` (`%2F`) stays inside one segment. When several routes match, the most specific
one wins, as API Gateway chooses: segment by segment from the left a literal beats a
`{name}`, which beats a greedy `{name+}`; then a route naming the method beats `ANY`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from bridge.config.http_triggers import ANY, HttpTriggerConfig

_VARIABLE = re.compile(r"\{(?P<name>[^{}+]+)(?P<greedy>\+)?\}")
_LITERAL, _ONE, _GREEDY = 0, 1, 2

Found = list[tuple[tuple[str | int, ...], str]]


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: int
    text: str  # the literal, or the variable's name


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # the template as configured: API Gateway's resource and route path
    methods: frozenset[str]
    function: str
    format: str
    segments: tuple[_Segment, ...]

    @property
    def any_method(self) -> bool:
        return ANY in self.methods

    def route_key(self, method: str) -> str:
        """API Gateway's routeKey: `GET /orders/{id}`, or `ANY /orders/{id}`."""
        return f"{ANY if self.any_method else method} {self.path}"

    def specificity(self) -> tuple[int, ...]:
        """Smaller is more specific."""
        return (*(segment.kind for segment in self.segments), 1 if self.any_method else 0)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """The path parameters if the decoded request segments fit this template."""
        parameters: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.kind == _GREEDY:
                rest = segments[index:]
                if not rest or not rest[0]:
                    return None  # {proxy+} needs at least one non-empty segment
                parameters[segment.text] = "/".join(rest)
                return parameters
            if index >= len(segments):
                return None
            if segment.kind == _LITERAL:
                if segments[index] != segment.text:
                    return None
            elif not segments[index]:
                return None
            else:
                parameters[segment.text] = segments[index]
        return parameters if len(segments) == len(self.segments) else None


def compile_route(trigger: HttpTriggerConfig) -> Route:
    segments: list[_Segment] = []
    for text in trigger.path.strip("/").split("/") if trigger.path != "/" else []:
        variable = _VARIABLE.fullmatch(text)
        if variable is None:
            segments.append(_Segment(_LITERAL, text))
        else:
            kind = _GREEDY if variable["greedy"] else _ONE
            segments.append(_Segment(kind, variable["name"]))
    return Route(
        trigger.path, frozenset(trigger.methods), trigger.function, trigger.format, tuple(segments)
    )


def request_segments(raw_path: str) -> list[str]:
    """The percent-decoded segments of a raw request path (`/` is [])."""
    path = raw_path.partition("?")[0]
    if path in ("", "/"):
        return []
    return [unquote(segment) for segment in path[1:].split("/")]


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """The routes of one config, most specific first."""

    def __init__(self, triggers: Sequence[HttpTriggerConfig]) -> None:
        routes = [compile_route(trigger) for trigger in triggers]
        self.routes = sorted(routes, key=Route.specificity)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def find(self, method: str, raw_path: str) -> Match | None:
        segments = request_segments(raw_path)
        for route in self.routes:
            if route.any_method or method in route.methods:
                parameters = route.match(segments)
                if parameters is not None:
                    return Match(route, parameters)
        return None


def _shape(route: Route) -> tuple[tuple[int, str], ...]:
    # Variables' names do not tell two routes apart: /a/{x} and /a/{y} are one route.
    return tuple((s.kind, s.text if s.kind == _LITERAL else "") for s in route.segments)


def trigger_problems(
    triggers: Sequence[HttpTriggerConfig], functions: Collection[str], api_configured: bool
) -> Found:
    """Config problems pydantic cannot see: the listener, references and duplicates."""
    if triggers and not api_configured:
        return [
            (
                ("http_triggers",),
                "HTTP triggers are served on Lambda's API listener: configure api: "
                '{listen: "127.0.0.1:9001"} too',
            )
        ]
    problems: Found = []
    seen: dict[tuple[tuple[int, str], ...], list[tuple[int, frozenset[str]]]] = {}
    for index, trigger in enumerate(triggers):
        if trigger.function not in functions:
            defined = ", ".join(sorted(functions))
            problems.append(
                (
                    ("http_triggers", index, "function"),
                    f"no function named {trigger.function!r} (defined: {defined})",
                )
            )
        route = compile_route(trigger)
        for other, methods in seen.get(_shape(route), []):
            # A route naming a method may sit beside an ANY route of the same path.
            both = route.methods & methods
            if both:
                shared = ", ".join(sorted(both))
                problems.append(
                    (
                        ("http_triggers", index, "path"),
                        f"http_triggers[{other}] already routes {shared} {trigger.path}",
                    )
                )
                break
        seen.setdefault(_shape(route), []).append((index, route.methods))
    return problems

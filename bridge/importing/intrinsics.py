"""CloudFormation's intrinsic functions, resolved locally: Ref, Fn::GetAtt, Fn::Sub,
Fn::Join, Fn::If with Conditions, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64,
Fn::GetAZs, Fn::Length, Fn::ToJsonString, the condition functions, parameters and the
pseudo parameters.

Resolution is bounded: nesting deeper than MAX_DEPTH, a string longer than
MAX_STRING_CHARS, more than MAX_STEPS steps for one import, or a condition that depends on
itself is an error with the template location, never a loop.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.importing.notes import Location, TemplateError

MAX_DEPTH = 64
MAX_STRING_CHARS = 1_000_000
MAX_STEPS = 2_000_000
TOO_LONG = "the resolved string is longer than 1,000,000 characters"


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


class ResourceValue(str):
    """A string that came from a declared resource's `Ref` or `Fn::GetAtt`: callers that
    can use the resource itself (a table rather than its stream's ARN) look at where it
    came from."""

    logical_id: str
    attribute: str | None

    def __new__(cls, value: str, logical_id: str, attribute: str | None) -> ResourceValue:
        made = super().__new__(cls, value)
        made.logical_id = logical_id
        made.attribute = attribute
        return made


# (logical id, attribute or None for Ref) -> the value; raises LookupError(reason).
ResourceLookup = Callable[[str, "str | None"], Any]

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
CONDITION_FUNCTIONS = ("Fn::And", "Fn::Equals", "Fn::If", "Fn::Not", "Fn::Or", "Condition")


@dataclass
class Resolver:
    """Resolves intrinsics in template data. `error(location, message)` makes the
    TemplateError for a location (with its file and line)."""

    parameters: dict[str, Any]
    pseudo: dict[str, Any]
    conditions: dict[str, Any]
    mappings: dict[str, Any]
    resources: ResourceLookup
    error: Callable[[Location, str], TemplateError]
    referenced: set[str] = field(default_factory=set)
    _condition_values: dict[str, bool] = field(default_factory=dict)
    _evaluating: set[str] = field(default_factory=set)
    _steps: int = 0

    # -- public -----------------------------------------------------------------------

    def resolve(self, value: Any, location: Location) -> Any:
        """The value with every intrinsic replaced; NO_VALUE for AWS::NoValue."""
        return self._resolve(value, location, 0)

    def condition(self, name: str, location: Location) -> bool:
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self.conditions:
            raise self.error(location, f"no condition named {name!r} under Conditions")
        if name in self._evaluating:
            raise self.error(("Conditions", name), "the condition depends on itself")
        self._evaluating.add(name)
        try:
            result = self._resolve(self.conditions[name], ("Conditions", name), 0)
        finally:
            self._evaluating.discard(name)
        if not isinstance(result, bool):
            raise self.error(("Conditions", name), "a condition must be true or false")
        self._condition_values[name] = result
        return result

    # -- walking ------------------------------------------------------------------------

    def _resolve(self, value: Any, location: Location, depth: int) -> Any:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise self.error(location, "the template takes too many steps to resolve")
        if depth > MAX_DEPTH:
            raise self.error(location, f"intrinsic functions nested more than {MAX_DEPTH} deep")
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                    return self._function(key, argument, (*location, key), depth + 1)
            resolved: dict[str, Any] = {}
            for key, item in value.items():
                result = self._resolve(item, (*location, key), depth + 1)
                if result is not NO_VALUE:
                    resolved[key] = result
            return resolved
        if isinstance(value, list):
            items = [self._resolve(item, (*location, i), depth + 1) for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def _function(self, name: str, argument: Any, location: Location, depth: int) -> Any:
        handlers: dict[str, Callable[[Any, Location, int], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::If": self._if,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
            "Fn::GetAZs": self._get_azs,
            "Fn::Length": self._length,
            "Fn::ToJsonString": self._to_json,
            "Fn::Equals": self._equals,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Fn::Not": self._not,
            "Condition": self._condition_ref,
        }
        handler = handlers.get(name)
        if handler is None:
            raise self.error(location, f"{name} cannot be resolved locally")
        return handler(argument, location, depth)

    def _string(self, value: Any, location: Location, depth: int, what: str) -> str:
        result = self._resolve(value, location, depth)
        if isinstance(result, bool) or not isinstance(result, str | int | float):
            raise self.error(location, f"{what} must be a string, not {_kind(result)}")
        text = str(result)
        if len(text) > MAX_STRING_CHARS:
            raise self.error(location, TOO_LONG)
        return text

    def _list(self, value: Any, location: Location, depth: int, what: str) -> list[Any]:
        result = self._resolve(value, location, depth)
        if not isinstance(result, list):
            raise self.error(location, f"{what} must be a list, not {_kind(result)}")
        return result

    # -- the functions ------------------------------------------------------------------

    def _ref(self, argument: Any, location: Location, depth: int) -> Any:
        if not isinstance(argument, str):
            raise self.error(location, "Ref takes the name of a parameter or resource")
        if argument == "AWS::NoValue":
            return NO_VALUE
        if argument in self.pseudo:
            return self.pseudo[argument]
        if argument in self.parameters:
            return self.parameters[argument]
        return self._resource(argument, None, location)

    def _resource(self, logical_id: str, attribute: str | None, location: Location) -> Any:
        try:
            value = self.resources(logical_id, attribute)
        except LookupError as exc:
            raise self.error(location, str(exc.args[0] if exc.args else exc)) from None
        self.referenced.add(logical_id)
        if isinstance(value, str) and not isinstance(value, ResourceValue):
            return ResourceValue(value, logical_id, attribute)
        return value

    def _get_att(self, argument: Any, location: Location, depth: int) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(location, "Fn::GetAtt takes [Resource, Attribute]")
        logical_id = self._string(argument[0], (*location, 0), depth, "the resource")
        attribute = self._string(argument[1], (*location, 1), depth, "the attribute")
        return self._resource(logical_id, attribute, location)

    def _sub(self, argument: Any, location: Location, depth: int) -> str:
        variables: dict[str, Any] = {}
        if isinstance(argument, list):
            if len(argument) != 2 or not isinstance(argument[1], dict):
                raise self.error(location, "Fn::Sub takes a string or [string, {variables}]")
            argument, given = argument
            for key, item in given.items():
                variables[key] = self._resolve(item, (*location, 1, key), depth)
        if not isinstance(argument, str):
            raise self.error(location, "Fn::Sub takes a string")

        def value_of(name: str) -> str:
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in variables:
                value = variables[name]
            elif "." in name and name.split(".", 1)[0] not in self.parameters:
                value = self._get_att(name.split(".", 1), location, depth)
            else:
                value = self._ref(name, location, depth)
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.error(location, f"${{{name}}} is {_kind(value)}, not a string")
            return str(value)

        # Counted as it is built: the limit is passed before the whole text exists.
        pieces = _Pieces(self, location)
        end = 0
        for found in _SUB_VARIABLE.finditer(argument):
            pieces.add(argument[end : found.start()])
            pieces.add(value_of(found.group(1)))
            end = found.end()
        pieces.add(argument[end:])
        return "".join(pieces.parts)

    def _join(self, argument: Any, location: Location, depth: int) -> str:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(location, "Fn::Join takes [delimiter, [values]]")
        delimiter = self._string(argument[0], (*location, 0), depth, "the delimiter")
        items = self._list(argument[1], (*location, 1), depth, "the values")
        parts = [
            self._string(item, (*location, 1, i), depth, "a value") for i, item in enumerate(items)
        ]
        if sum(map(len, parts)) + len(delimiter) * max(len(parts) - 1, 0) > MAX_STRING_CHARS:
            raise self.error(location, TOO_LONG)
        return delimiter.join(parts)

    def _if(self, argument: Any, location: Location, depth: int) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3 and isinstance(argument[0], str)):
            raise self.error(
                location, "Fn::If takes [condition name, value if true, value if false]"
            )
        chosen = 1 if self.condition(argument[0], location) else 2
        return self._resolve(argument[chosen], (*location, chosen), depth)

    def _select(self, argument: Any, location: Location, depth: int) -> Any:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(location, "Fn::Select takes [index, [values]]")
        index = self._resolve(argument[0], (*location, 0), depth)
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise self.error(location, f"the index {index!r} is not a number") from None
        items = self._list(argument[1], (*location, 1), depth, "the values")
        if not 0 <= index < len(items):
            raise self.error(location, f"index {index} is outside the {len(items)} values")
        return items[index]

    def _split(self, argument: Any, location: Location, depth: int) -> list[str]:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(location, "Fn::Split takes [delimiter, string]")
        delimiter = self._string(argument[0], (*location, 0), depth, "the delimiter")
        if not delimiter:
            raise self.error(location, "the delimiter of Fn::Split must not be empty")
        return self._string(argument[1], (*location, 1), depth, "the value").split(delimiter)

    def _find_in_map(self, argument: Any, location: Location, depth: int) -> Any:
        if not (isinstance(argument, list) and len(argument) in (3, 4)):
            raise self.error(location, "Fn::FindInMap takes [map, top key, second key]")
        keys = [
            self._string(item, (*location, i), depth, "a key")
            for i, item in enumerate(argument[:3])
        ]
        try:
            found = self.mappings[keys[0]][keys[1]][keys[2]]
        except (KeyError, TypeError):
            if (
                len(argument) == 4
                and isinstance(argument[3], dict)
                and "DefaultValue" in argument[3]
            ):
                return self._resolve(argument[3]["DefaultValue"], (*location, 3), depth)
            raise self.error(location, f"Mappings has no {'.'.join(keys)}") from None
        return self._resolve(found, ("Mappings", *keys), depth)

    def _base64(self, argument: Any, location: Location, depth: int) -> str:
        text = self._string(argument, location, depth, "the value")
        return base64.b64encode(text.encode()).decode()

    def _get_azs(self, argument: Any, location: Location, depth: int) -> list[str]:
        region = self._string(argument, location, depth, "the region") or self.pseudo["AWS::Region"]
        return [f"{region}{zone}" for zone in "abc"]

    def _length(self, argument: Any, location: Location, depth: int) -> int:
        return len(self._list(argument, location, depth, "the value"))

    def _to_json(self, argument: Any, location: Location, depth: int) -> str:
        value = self._resolve(argument, location, depth)

        def unwritable(item: Any) -> Any:
            raise self.error(location, f"a {type(item).__name__} cannot be written as JSON")

        encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=unwritable)
        pieces = _Pieces(self, location)
        try:
            for chunk in encoder.iterencode(value):
                pieces.add(chunk)
        except ValueError as exc:  # NaN or infinity
            raise self.error(location, f"cannot be written as JSON: {exc}") from None
        return "".join(pieces.parts)

    def _equals(self, argument: Any, location: Location, depth: int) -> bool:
        if not (isinstance(argument, list) and len(argument) == 2):
            raise self.error(location, "Fn::Equals takes [value, value]")
        left, right = (
            self._resolve(item, (*location, i), depth) for i, item in enumerate(argument)
        )
        return bool(_comparable(left) == _comparable(right))

    def _conditions(self, argument: Any, location: Location, depth: int) -> list[bool]:
        if not (isinstance(argument, list) and argument):
            raise self.error(location, "takes a list of conditions")
        results = [self._resolve(item, (*location, i), depth) for i, item in enumerate(argument)]
        if not all(isinstance(result, bool) for result in results):
            raise self.error(location, "every item must be a condition")
        return results

    def _and(self, argument: Any, location: Location, depth: int) -> bool:
        return all(self._conditions(argument, location, depth))

    def _or(self, argument: Any, location: Location, depth: int) -> bool:
        return any(self._conditions(argument, location, depth))

    def _not(self, argument: Any, location: Location, depth: int) -> bool:
        results = self._conditions(argument, location, depth)
        if len(results) != 1:
            raise self.error(location, "Fn::Not takes one condition")
        return not results[0]

    def _condition_ref(self, argument: Any, location: Location, depth: int) -> bool:
        if not isinstance(argument, str):
            raise self.error(location, "Condition takes a condition's name")
        return self.condition(argument, location)


class _Pieces:
    """The parts of a string being built, counted as they come: TemplateError as soon as
    they add up to more than MAX_STRING_CHARS."""

    def __init__(self, resolver: Resolver, location: Location) -> None:
        self.resolver, self.location = resolver, location
        self.parts: list[str] = []
        self.length = 0

    def add(self, part: str) -> None:
        self.length += len(part)
        if self.length > MAX_STRING_CHARS:
            raise self.resolver.error(self.location, TOO_LONG)
        self.parts.append(part)


def _comparable(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _kind(value: Any) -> str:
    if value is NO_VALUE:
        return "AWS::NoValue"
    return {dict: "a mapping", list: "a list", bool: "a boolean"}.get(type(value), "a value")

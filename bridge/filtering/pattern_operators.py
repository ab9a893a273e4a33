"""Operators of event patterns (esm-reference.md 11.3): each value or `{operator: ...}`
of a field's list becomes a test of one leaf, and the list a test of the field's value.

Only leaves (strings, numbers, booleans, null) are values. A field holding an array
matches if any leaf does (nested arrays are flattened); one holding an object has no
leaves, so `exists: true` never matches it and `exists: false` does. Numbers equal
numbers by value (`300` matches `300.0`) and never strings; `numeric` and `cidr` only
see numbers and strings respectively; `anything-but` needs the field present and
matches null. `wildcard` matches in time linear in the value (`bridge.filtering.wildcards`); no
operator reads a leaf more than a bounded number of times. The messages of PatternError
are AWS's reasons.
"""

# ruff: noqa: SIM110 (explicit loops: faster than any()/all() with a generator here)
from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from bridge.filtering.wildcards import WildcardError, compile_wildcard

# Operators EventBridge accepts that Lambda's filtering documentation does not list
# (esm-reference.md 11.3); they work here, and validate warns about them.
LAMBDA_UNDOCUMENTED = frozenset(
    {
        "wildcard",
        "cidr",
        "anything-but/prefix",
        "anything-but/suffix",
        "anything-but/equals-ignore-case",
        "anything-but/wildcard",
    }
)

# A field's value when the document does not have the field.
MISSING = object()
Leaf = Callable[[Any], bool]


class PatternError(ValueError):
    """A pattern AWS would reject; the message is AWS's reason."""


def _leaves(value: Any) -> list[Any]:
    """The leaves of a value in document order, nested arrays flattened without
    recursion: a record's nesting depth cannot exhaust the stack."""
    if isinstance(value, list):
        found: list[Any] = []
        stack = [iter(value)]
        while stack:
            for item in stack[-1]:
                if isinstance(item, list):
                    stack.append(iter(item))
                    break
                if not isinstance(item, dict):
                    found.append(item)
            else:
                stack.pop()
        return found
    if isinstance(value, dict):
        return []
    return [value]


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _string_of(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise PatternError(f"{name} match pattern must be a string")
    return value


def _strings_of(name: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise PatternError("Empty arrays are not allowed")
    return [_string_of(name, item) for item in values]


def _wildcard(value: Any) -> Leaf:
    try:
        tests = [compile_wildcard(item) for item in _strings_of("wildcard", value)]
    except WildcardError as error:
        raise PatternError(str(error)) from None
    if len(tests) == 1:
        (test,) = tests
        return lambda leaf: isinstance(leaf, str) and test(leaf)
    return lambda leaf: isinstance(leaf, str) and any(test(leaf) for test in tests)


def _affix(kind: str, value: Any, operators: set[str], message: str | None = None) -> Leaf:
    """`prefix` / `suffix`, plain or with `equals-ignore-case`."""
    ignore_case = isinstance(value, dict) and list(value) == ["equals-ignore-case"]
    if ignore_case:
        operators.add(f"{kind}/equals-ignore-case")
        value = value["equals-ignore-case"]
    text = value if isinstance(value, str) else None
    if text is None:
        raise PatternError(message or f"{kind} match pattern must be a string")
    if kind == "prefix":
        if ignore_case:
            lowered = text.lower()
            return lambda leaf: isinstance(leaf, str) and leaf.lower().startswith(lowered)
        return lambda leaf: isinstance(leaf, str) and leaf.startswith(text)
    if ignore_case:
        lowered = text.lower()
        return lambda leaf: isinstance(leaf, str) and leaf.lower().endswith(lowered)
    return lambda leaf: isinstance(leaf, str) and leaf.endswith(text)


_ANYTHING_BUT_TYPE = "Value of anything-but must be an array or single string/number value."


def _anything_but(value: Any, operators: set[str]) -> Leaf:
    if isinstance(value, dict):
        if len(value) != 1:
            raise PatternError(_ANYTHING_BUT_TYPE)
        ((kind, inner),) = value.items()
        operators.add(f"anything-but/{kind}")
        excluded: Leaf
        if kind in ("prefix", "suffix"):
            if isinstance(inner, dict):
                raise PatternError(_ANYTHING_BUT_TYPE)
            affixes = inner if isinstance(inner, list) else [inner]
            if not affixes:
                raise PatternError("Empty arrays are not allowed")
            if "" in affixes:
                raise PatternError("Null prefix/suffix not allowed")
            tests = [
                _affix(kind, item, set(), "prefix/suffix match pattern must be a string")
                for item in affixes
            ]
            excluded = lambda leaf: any(test(leaf) for test in tests)  # noqa: E731
        elif kind == "equals-ignore-case":
            lowered = {item.lower() for item in _strings_of(kind, inner)}
            excluded = lambda leaf: isinstance(leaf, str) and leaf.lower() in lowered  # noqa: E731
        elif kind == "wildcard":
            excluded = _wildcard(inner)
        else:
            raise PatternError(f"Unsupported anything-but pattern: {kind}")
        return lambda leaf: not excluded(leaf)
    values = value if isinstance(value, list) else [value]
    if value is None or isinstance(value, bool):
        raise PatternError(_ANYTHING_BUT_TYPE)
    if not values:
        raise PatternError("Empty arrays are not allowed")
    strings: set[str] = set()
    numbers: set[int | float] = set()
    for item in values:
        if isinstance(item, str):
            strings.add(item)
        elif _is_number(item):
            numbers.add(item)
        else:
            raise PatternError("Inside anything but list, start|null|boolean is not supported.")

    def anything_but(leaf: Any) -> bool:
        if isinstance(leaf, str):
            return leaf not in strings
        if _is_number(leaf):
            return leaf not in numbers
        return True

    return anything_but


_BOUNDS = {">": "lower", ">=": "lower", "<": "upper", "<=": "upper", "=": "equal"}


def _numeric(value: Any) -> Leaf:
    if not isinstance(value, list):
        raise PatternError("Value of numeric must be an array.")
    if not value or len(value) % 2:
        raise PatternError("Value of numeric must be an array of operator, number pairs.")
    bounds: dict[str, tuple[str, int | float]] = {}
    for operator, bound in zip(value[::2], value[1::2], strict=True):
        side = _BOUNDS.get(operator) if isinstance(operator, str) else None
        if side is None:
            raise PatternError(f"Unrecognized numeric range operator: {operator}")
        if not _is_number(bound):
            raise PatternError(f"Value of {operator} must be numeric")
        if side in bounds or (side == "equal" and len(value) > 2):
            raise PatternError(
                "Bad numeric range: operators must be '=' alone, or one lower "
                "and/or one upper bound"
            )
        bounds[side] = (operator, bound)
    if "equal" in bounds:
        equal = bounds["equal"][1]
        return lambda leaf: (type(leaf) is int or type(leaf) is float) and leaf == equal
    low_operator, low = bounds.get("lower", (">", -math.inf))
    high_operator, high = bounds.get("upper", ("<", math.inf))
    low_inclusive, high_inclusive = low_operator == ">=", high_operator == "<="

    def in_range(leaf: Any) -> bool:
        if type(leaf) is not int and type(leaf) is not float:
            return False
        if leaf < low or (leaf == low and not low_inclusive):
            return False
        return leaf < high or (leaf == high and high_inclusive)

    return in_range


def _cidr(value: Any) -> Leaf:
    text = _string_of("cidr", value)
    if text.count("/") != 1:
        raise PatternError("Malformed CIDR, one '/' required")
    address, bits = text.split("/")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise PatternError(f"Nonstandard IP address: {address}") from None
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PatternError(f"Malformed CIDR, bad mask bits: {bits}") from None

    def in_network(leaf: Any) -> bool:
        if not isinstance(leaf, str):
            return False
        try:
            return ipaddress.ip_address(leaf) in network
        except ValueError:
            return False

    return in_network


def compile_operator(matcher: dict[str, Any], operators: set[str]) -> Leaf | bool:
    """One `{operator: argument}`; `exists` gives its bool."""
    if len(matcher) != 1:
        raise PatternError(
            "Empty objects are not allowed"
            if not matcher
            else "A match object must have exactly one operator"
        )
    ((name, argument),) = matcher.items()
    if name == "exists":
        if not isinstance(argument, bool):
            raise PatternError("exists match pattern must be either true or false.")
        operators.add("exists")
        return argument
    if name == "anything-but":
        operators.add("anything-but")
        return _anything_but(argument, operators)
    operators.add(name)
    if name in ("prefix", "suffix"):
        return _affix(name, argument, operators)
    if name == "equals-ignore-case":
        lowered = _string_of(name, argument).lower()
        return lambda leaf: isinstance(leaf, str) and leaf.lower() == lowered
    if name == "numeric":
        return _numeric(argument)
    if name == "wildcard":
        if not isinstance(argument, str):
            raise PatternError("wildcard match pattern must be a string")
        return _wildcard(argument)
    if name == "cidr":
        return _cidr(argument)
    raise PatternError(f"Unrecognized match type {name}")


class ValueTests(NamedTuple):
    """A field's list of values and operators, OR-ed."""

    leaf: Leaf  # the test of one leaf
    value: Leaf  # the test of the field's value, MISSING when the field is absent
    strings: frozenset[str] | None  # when the list is strings only: the strings


class _Values:
    """A field's list sorted by kind: exact values per JSON type, operator tests, and
    the `exists` flags."""

    def __init__(self, matchers: list[Any], operators: set[str]) -> None:
        if not matchers:
            raise PatternError("Empty arrays are not allowed")
        self.strings: set[str] = set()
        self.numbers: set[int | float] = set()
        self.booleans: set[bool] = set()
        self.null = False
        self.exists: set[bool] = set()
        self.tests: list[Leaf] = []
        for matcher in matchers:
            self._add(matcher, operators)
        if True in self.exists:
            self.tests.append(lambda leaf: True)

    def _add(self, matcher: Any, operators: set[str]) -> None:
        if isinstance(matcher, dict):
            compiled = compile_operator(matcher, operators)
            if isinstance(compiled, bool):
                self.exists.add(compiled)
            else:
                self.tests.append(compiled)
            return
        if isinstance(matcher, str):
            self.strings.add(matcher)
        elif isinstance(matcher, bool):
            self.booleans.add(matcher)
        elif _is_number(matcher):
            self.numbers.add(matcher)
        elif matcher is None:
            self.null = True
        else:
            raise PatternError("Match value must be String, number, true, false, or null")
        operators.add("equals")

    def exact_values(self) -> bool:
        return bool(self.strings or self.numbers or self.booleans or self.null)


def _leaf_test(values: _Values) -> Leaf:
    strings, numbers, booleans, null, tests = (
        values.strings,
        values.numbers,
        values.booleans,
        values.null,
        values.tests,
    )
    if not (numbers or booleans or null or tests):
        # Leaves are hashable and a string set holds no number or boolean: one lookup.
        return frozenset(strings).__contains__
    if len(tests) == 1 and not values.exact_values():
        return tests[0]

    def leaf_matches(leaf: Any) -> bool:
        kind = type(leaf)
        if kind is str:
            if leaf in strings:
                return True
        elif kind is int or kind is float:
            if leaf in numbers:
                return True
        elif kind is bool:
            if leaf in booleans:
                return True
        elif leaf is None and null:
            return True
        for test in tests:
            if test(leaf):
                return True
        return False

    return leaf_matches


def compile_values(matchers: list[Any], operators: set[str]) -> ValueTests:
    """The tests of a field's list; records the operators it uses in `operators`."""
    values = _Values(matchers, operators)
    absent_matches = False in values.exists
    leaf_matches = _leaf_test(values)

    def value_matches(value: Any) -> bool:
        kind = type(value)
        if kind is list:
            leaves = _leaves(value)
            if not leaves:
                return absent_matches
            for leaf in leaves:
                if leaf_matches(leaf):
                    return True
            return False
        if value is MISSING or kind is dict:
            return absent_matches
        return leaf_matches(value)

    only_strings = (
        frozenset(values.strings)
        if not (values.numbers or values.booleans or values.null or values.tests)
        else None
    )
    return ValueTests(leaf_matches, value_matches, only_strings)

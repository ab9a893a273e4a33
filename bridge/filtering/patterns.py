"""Event patterns as EventBridge and Lambda event filtering read them (esm-reference.md 11).

Every field a pattern names must match (AND); the values listed for a field are OR-ed
(see `pattern_operators`); `$or` takes two or more sub-patterns, any of which must
match. A sub-pattern applied to an array of objects must match within one element.
Paths are joined with dots as EventBridge flattens them: `{"a.b": [...]}` reads
`{"a": {"b": ...}}` and `{"a": {"b": [...]}}` reads a field named `a.b`. Below a missing
field only `exists: false` matches.

Each object of a pattern is compiled once into one Python function, generated from the
pattern, whose fields are tested inline: a record costs a few dict lookups and set
membership tests per filter, not a walk through nested closures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bridge.filtering.pattern_operators import (
    LAMBDA_UNDOCUMENTED,
    MISSING,
    PatternError,
    compile_values,
)

__all__ = [
    "LAMBDA_UNDOCUMENTED",
    "MAX_PATTERN_DEPTH",
    "MAX_PATTERN_LENGTH",
    "Pattern",
    "PatternError",
    "compile_part",
    "compile_pattern",
]

# Lambda's limit on Filter.Pattern; the depth limit is ours, far beyond real patterns.
MAX_PATTERN_LENGTH = 4096
MAX_PATTERN_DEPTH = 32

Test = Callable[[dict[str, Any]], bool]
_EMPTY: dict[str, Any] = {}


def _objects(value: list[Any]) -> list[dict[str, Any]]:
    """The objects of an array in document order, nested arrays flattened without
    recursion."""
    found: list[dict[str, Any]] = []
    stack = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, dict):
                found.append(item)
            elif isinstance(item, list):
                stack.append(iter(item))
                break
        else:
            stack.pop()
    return found


def _dotted(document: dict[str, Any], key: str) -> Any:
    """`key` read through nested objects where its dots split it; MISSING if absent."""
    start = key.find(".")
    while start != -1:
        head = document.get(key[:start])
        if isinstance(head, dict):
            tail = key[start + 1 :]
            value = head.get(tail, MISSING)
            if value is MISSING:
                value = _dotted(head, tail)
            if value is not MISSING:
                return value
        start = key.find(".", start + 1)
    return MISSING


def _dotted_nested(document: dict[str, Any], key: str) -> Any:
    """What a sub-pattern under a missing `key` reads: `key` through dots, or the fields
    named `key.<rest>` gathered as an object; MISSING if neither."""
    if "." in key:
        found = _dotted(document, key)
        if found is not MISSING:
            return found
    prefix = key + "."
    joined = {
        name[len(prefix) :]: value for name, value in document.items() if name.startswith(prefix)
    }
    return joined or MISSING


def _nested_value(inner: Test) -> Callable[[Any], bool]:
    """A sub-pattern as a test of the value it sits on (MISSING when absent)."""

    def nested_value_matches(value: Any) -> bool:
        if isinstance(value, dict):
            return inner(value)
        if isinstance(value, list):
            objects = _objects(value)
            if objects:
                for item in objects:  # noqa: SIM110 (faster than any() here)
                    if inner(item):
                        return True
                return False
        return inner(_EMPTY)

    return nested_value_matches


class _Source:
    """The source of one generated test function and the names it uses."""

    def __init__(self) -> None:
        self.lines = ["def test(d):"]
        self.names: dict[str, Any] = {"M": MISSING, "dotted": _dotted, "nested": _dotted_nested}

    def name(self, value: Any) -> str:
        name = f"n{len(self.names)}"
        self.names[name] = value
        return name

    def add(self, *lines: str) -> None:
        self.lines += [f"    {line}" for line in lines]

    def build(self) -> Test:
        self.add("return True")
        code = "\n".join(self.lines)
        namespace = dict(self.names)
        exec(compile(code, "<filter pattern>", "exec"), namespace)
        test: Test = namespace["test"]
        return test


def _object(
    pattern: dict[str, Any], operators: set[str], depth: int, on_any_value: bool = False
) -> Test:
    """The test of an object. `on_any_value`: the test takes whatever value the pattern
    sits on (an array, a scalar, MISSING), as a sub-pattern reads it."""
    if depth > MAX_PATTERN_DEPTH:
        raise PatternError(f"Pattern is too deep: more than {MAX_PATTERN_DEPTH} nested levels")
    if not pattern:
        raise PatternError("Empty objects are not allowed")
    source = _Source()
    if on_any_value:
        other_values = _nested_value(_object(pattern, set(), depth))
        source.add(f"if type(d) is not dict: return {source.name(other_values)}(d)")
    for key, value in pattern.items():
        if not isinstance(key, str):
            raise PatternError(f"Field names must be strings, not {type(key).__name__}: {key!r}")
        if key == "$or":
            if (
                not isinstance(value, list)
                or len(value) < 2
                or not all(isinstance(branch, dict) for branch in value)
            ):
                raise PatternError("Value of $or must be an array of at least 2 objects")
            operators.add("$or")
            branches = [source.name(_object(b, operators, depth + 1)) for b in value]
            source.add(f"if not ({' or '.join(f'{b}(d)' for b in branches)}): return False")
            continue
        source.add(f"v = d.get({key!r}, M)")
        if isinstance(value, dict):
            inner = _object(value, operators, depth + 1)
            source.add(
                f"if v is M: v = nested(d, {key!r})",
                "if type(v) is dict:",
                f"    if not {source.name(inner)}(v): return False",
                f"elif not {source.name(_nested_value(inner))}(v): return False",
            )
        elif isinstance(value, list):
            tests = compile_values(value, operators)
            if "." in key:
                source.add(f"if v is M: v = dotted(d, {key!r})")
            if tests.strings is not None:
                source.add(
                    "if type(v) is str:",
                    f"    if v not in {source.name(tests.strings)}: return False",
                    f"elif not {source.name(tests.value)}(v): return False",
                )
            else:
                source.add(
                    "t = type(v)",
                    "if t is list or t is dict or v is M:",
                    f"    if not {source.name(tests.value)}(v): return False",
                    f"elif not {source.name(tests.leaf)}(v): return False",
                )
        else:
            raise PatternError(f'"{key}" must be an object or an array')
    return source.build()


class Pattern:
    """A compiled pattern: `matches(document)` tests a JSON document (a dict)."""

    def __init__(self, source: dict[str, Any]) -> None:
        self.source = source
        operators: set[str] = set()
        self.matches: Test = _object(source, operators, 1)
        self.operators = frozenset(operators)
        keys = set(source) - {"$or"}
        for branch in source.get("$or", ()):
            keys |= set(branch)
        self.keys = frozenset(keys)

    def part(self, key: str) -> dict[str, Any] | list[Any] | None:
        """The pattern's own rule for top-level `key` (None if it only sits in `$or`)."""
        value = self.source.get(key)
        return value if isinstance(value, dict | list) else None

    def without(self, key: str) -> Pattern | None:
        """This pattern less its top-level `key`; None if nothing is left."""
        rest = {name: value for name, value in self.source.items() if name != key}
        return Pattern(rest) if rest else None


def compile_part(part: dict[str, Any] | list[Any]) -> Callable[[Any], bool]:
    """The test a pattern's `{key: part}` applies to the value under `key` (the value
    itself, not the document holding it)."""
    if isinstance(part, dict):
        return _object(part, set(), 2, on_any_value=True)
    return compile_values(part, set()).value


def compile_pattern(pattern: str | dict[str, Any]) -> Pattern:
    """Parse and check a pattern (a JSON string or an object); raises PatternError."""
    if isinstance(pattern, str):
        text = pattern
        try:
            parsed = json.loads(pattern)
        except json.JSONDecodeError as error:
            raise PatternError(f"Filter pattern is not valid JSON: {error}") from None
    else:
        parsed = pattern
        try:
            text = json.dumps(pattern, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise PatternError(f"Filter pattern is not JSON: {error}") from None
    if len(text) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"Filter pattern is {len(text)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    if not isinstance(parsed, dict):
        raise PatternError("Filter pattern must be a JSON object")
    return Pattern(parsed)

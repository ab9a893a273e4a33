"""Config problems as the user wrote them: pydantic's errors mapped onto the file's keys
and lines, and source, function and destination types no connector provides."""

from __future__ import annotations

import datetime
import difflib
from typing import Any

from pydantic import ValidationError

from bridge.config.model import config_model
from bridge.config.registry import registered_names
from bridge.config.yamlsource import YamlDocument, non_json

# What a setting should be, by pydantic's error type; the input's kind is added, never
# the input itself (it may be a secret from the environment).
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "path_type": "a path (a string)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of settings",
    "model_attributes_type": "a mapping of settings",
}


def _kind(value: Any) -> str:
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a mapping"),
        ((datetime.date, datetime.datetime), "a date"),
        (bytes, "binary data"),
    ]
    if value is None:
        return "null"
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


_KNOWN_KEYS: set[str] = set()


def _known_keys() -> set[str]:
    if not _KNOWN_KEYS:
        schema = config_model().model_json_schema()
        for definition in [schema, *schema.get("$defs", {}).values()]:
            _KNOWN_KEYS.update(definition.get("properties", {}))
    return _KNOWN_KEYS


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _is_tag(node: Any, part: str | int) -> bool:
    """A union member's tag, or pydantic's name for a validator step: not a key. A name
    below a value that is not a mapping or a list can only be a union member's."""
    if isinstance(node, dict) and part in (node.get("type"), node.get("invoker")):
        return True
    if isinstance(part, str) and node is not None and not isinstance(node, dict | list):
        return True
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _resolve(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """Map a pydantic error location onto the file's keys, dropping union tags."""
    path: list[str | int] = []
    node = data
    for part in loc:
        # The tag first: the `runtime` invoker also has a key named `runtime`.
        if isinstance(node, dict) and part == node.get("invoker"):
            continue
        if _has(node, part):
            path.append(part)
            node = node[part]
        elif _is_tag(node, part):
            continue
        else:
            path.append(part)
            node = None
    return tuple(path)


def unknown_types(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Sources, functions and destinations whose type no connector provides."""
    found: list[tuple[tuple[str | int, ...], str]] = []

    def check(item: Any, at: tuple[str | int, ...], key: str, kind: str, noun: str) -> None:
        if not isinstance(item, dict) or key not in item:
            return
        known = registered_names(kind)
        if not isinstance(item[key], str) or item[key] not in known:
            names = ", ".join(sorted(known))
            found.append(((*at, key), f"unknown {noun} {item[key]!r} (known: {names})"))

    mappings = data.get("mappings")
    for index, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if isinstance(mapping, dict):
            at = ("mappings", index, "source")
            check(mapping.get("source"), at, "type", "sources", "source type")
    store = data.get("checkpoint_store")
    if isinstance(store, dict):
        check(store, ("checkpoint_store",), "type", "checkpoint_stores", "checkpoint store type")
    sections = (("functions", "invoker", "invoker"), ("destinations", "type", "destination type"))
    for kind, key, noun in sections:
        section = data.get(kind)
        if isinstance(section, dict):
            for name, item in section.items():
                check(item, (kind, name), key, kind, noun)
    return found


def _filter_patterns(data: dict[str, Any]) -> list[tuple[str | int, ...]]:
    paths: list[tuple[str | int, ...]] = []
    mappings = data.get("mappings")
    for index, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        criteria = mapping.get("filter_criteria") if isinstance(mapping, dict) else None
        filters = criteria.get("filters") if isinstance(criteria, dict) else None
        for number, item in enumerate(filters if isinstance(filters, list) else []):
            if isinstance(item, dict) and "pattern" in item:
                at = ("mappings", index, "filter_criteria", "filters", number, "pattern")
                paths.append(at)
    return paths


def non_json_patterns(document: YamlDocument) -> tuple[list[str], list[tuple[str | int, ...]]]:
    """Filter patterns written in YAML that JSON cannot hold (esm-reference.md 11.1: a
    pattern is JSON): problem lines, and the patterns they are in."""
    problems: list[str] = []
    paths: list[tuple[str | int, ...]] = []
    if isinstance(document.data, dict):
        for path in _filter_patterns(document.data):
            found = non_json(document, path, "a filter pattern")
            if found:
                problems += found
                paths.append(path)
    return problems, paths


def describe(
    exc: ValidationError, document: YamlDocument, skip: list[tuple[str | int, ...]]
) -> list[str]:
    """One line per problem; the members of a union that all refused a value's type
    make one line (`should be a string or a list, not an integer`)."""
    found = validation_messages(exc, document.data, skip)
    return [document.problem(path, message) for path, message in found]


def validation_messages(
    exc: ValidationError, data: Any, skip: list[tuple[str | int, ...]] | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """pydantic's errors as (path of the key in `data`, message) pairs."""
    skip = skip or []
    messages: dict[tuple[str | int, ...], list[str]] = {}
    expected: dict[tuple[str | int, ...], tuple[list[str], Any]] = {}
    for error in exc.errors():
        path = _resolve(tuple(error["loc"]), data)
        if any(path[: len(bad) - 1] == bad[:-1] for bad in skip):
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in _EXPECTED:
            kinds, _ = expected.setdefault(path, ([], error["input"]))
            kinds.append(_EXPECTED[error["type"]])
            messages.setdefault(path, [])
            continue
        if error["type"] == "extra_forbidden":
            key = str(path[-1]) if path else ""
            # The key may be right elsewhere (a filter's `pattern`): suggest another.
            others = [known for known in _known_keys() if known != key]
            close = difflib.get_close_matches(key, others, n=1)
            message = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "union_tag_not_found":
            path = (*path, str(error.get("ctx", {}).get("discriminator", "type")).strip("'"))
            message = "required key is missing"
        messages.setdefault(path, []).append(message)
    for path, (kinds, given) in expected.items():
        messages[path].insert(
            0, f"should be {' or '.join(dict.fromkeys(kinds))}, not {_kind(given)}"
        )
    return [(path, message) for path, found in messages.items() for message in found]

"""YAML loading that remembers where each key was written, and ${VAR} interpolation."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from bridge.config.yamlbounds import check_expansion
from bridge.errors import ConfigError

Path = tuple[str | int, ...]

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


@dataclass
class YamlDocument:
    """Parsed data plus the line of every mapping key and sequence item (1-based)."""

    name: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    # The composed node graph, for questions the data cannot answer (how a key was written).
    root: yaml.Node | None = field(default=None, repr=False, compare=False)

    def line_of(self, path: Path) -> int:
        """Line of the deepest part of `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def where(self, path: Path) -> str:
        return f"{self.name}:{self.line_of(path)}"

    def problem(self, path: Path, message: str) -> str:
        """One problem as a line: `file:line: key.path: message`."""
        return f"{self.where(path)}: {format_path(path)}: {message}"


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        # A key with a line break or control character must not break the line.
        key = str(part) if str(part).isprintable() else repr(str(part))
        text += f".{key}" if text else key
    return text or "(top level)"


def parse_yaml(text: str, name: str) -> YamlDocument:
    """Parse one YAML document; syntax errors, duplicate keys and alias bombs become
    ConfigErrors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        problem = f"character #x{exc.character:04x} is not allowed in YAML"
        raise ConfigError([f"{name}:{line}: invalid YAML: {problem}"]) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, name)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}:1: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}:1: invalid YAML: nested too deeply"]) from None
    if node is None:
        return YamlDocument(name, {}, {(): 1})
    check_expansion(node, name)
    document = YamlDocument(name, None, root=node)
    problems: list[str] = []
    # Before constructing: that merges `<<` keys into the mapping nodes themselves, and
    # a merged key would look like a duplicate of the one that overrides it.
    _record_lines(node, (), document, problems)
    if problems:
        raise ConfigError(problems)
    try:
        document.data = SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, name)]) from None
    except (ValueError, TypeError, AttributeError, OverflowError):
        # An explicit tag the text does not fit (`!!int abc`): PyYAML fails without a mark.
        raise ConfigError([_unreadable_tagged_value(node, name)]) from None
    return document


def _unreadable_tagged_value(root: yaml.Node, name: str) -> str:
    """The first scalar that cannot be constructed, as a problem line."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                SafeConstructor().construct_object(node)
            except (ValueError, TypeError, AttributeError, OverflowError, yaml.YAMLError):
                tag = node.tag.rsplit(":", 1)[-1]
                line = node.start_mark.line + 1
                return f"{name}:{line}: invalid YAML: {node.value!r} cannot be read as !!{tag}"
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in reversed(node.value) for part in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return f"{name}:1: invalid YAML: a value cannot be read"


def _yaml_problem(exc: yaml.MarkedYAMLError, name: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    return f"{name}:{line}: invalid YAML: {exc.problem or exc.context or 'cannot be read'}"


def _record_lines(node: yaml.Node, path: Path, document: YamlDocument, problems: list[str]) -> None:
    document.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = key_node.value
            if key in seen:
                line = key_node.start_mark.line + 1
                problems.append(
                    f"{document.name}:{line}: {format_path((*path, key))}: duplicate key"
                )
            seen.add(key)
            document.lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*path, key), document, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), document, problems)


_TAG = "tag:yaml.org,2002:"
_JSON_SCALARS = {f"{_TAG}{kind}" for kind in ("str", "int", "float", "bool", "null")}
_KINDS = {
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
    "binary": "binary data",
    "set": "a set",
    "omap": "an ordered mapping",
    "pairs": "a list of pairs",
}


def _kind(node: yaml.Node) -> str:
    tag = str(node.tag)
    name = tag.removeprefix(_TAG)
    return _KINDS.get(name, f"a value tagged {tag}")


def _shown(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _as_string(node: yaml.ScalarNode) -> str:
    """How to write a plain scalar YAML reads as something else as the string it looks
    like; nothing for explicitly tagged or unprintable ones."""
    implicit = {f"{_TAG}{kind}" for kind in ("int", "float", "bool", "null", "timestamp")}
    text = str(node.value)
    if node.tag not in implicit or not text.isprintable() or "'" in text:
        return ""
    return f": write '{text}' for the string"


def _pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """A mapping's own pairs, then those it merges in with `<<` (which they override)."""
    own = [(key, value) for key, value in node.value if key.tag != f"{_TAG}merge"]
    for key, value in node.value:
        if key.tag != f"{_TAG}merge":
            continue
        merged = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for item in merged:
            if isinstance(item, yaml.MappingNode):
                own += _pairs(item)
    return own


def _node_at(root: yaml.Node, path: Path) -> yaml.Node | None:
    node: yaml.Node | None = root
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next(
                (
                    value
                    for key, value in _pairs(node)
                    if isinstance(key, yaml.ScalarNode) and key.value == part
                ),
                None,
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if 0 <= part < len(node.value) else None
        else:
            return None
    return node


def non_json(document: YamlDocument, path: Path, what: str) -> list[str]:
    """Problem lines, `file:line: key.path: message`, for what under `path` JSON cannot
    hold though YAML can: keys that are not strings (`2024-01-01:`, `1:`, `null:`,
    `true:`, `.inf:`), and dates, binary data, sets, ordered mappings and infinite or
    NaN numbers. `what` names the setting in the messages."""
    found: list[str] = []
    root = document.root
    start = _node_at(root, path) if root is not None else None

    def report(node: yaml.Node, at: Path, message: str) -> None:
        line = node.start_mark.line + 1
        found.append(f"{document.name}:{line}: {format_path(at)}: {message}")

    def walk(node: yaml.Node, at: Path) -> None:
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _JSON_SCALARS:
                shown = _shown(node.value)
                message = f"{shown} is {_kind(node)} in YAML, which {what} cannot hold"
                report(node, at, message + _as_string(node))
            elif node.tag == f"{_TAG}float" and not math.isfinite(
                SafeConstructor().construct_yaml_float(node)
            ):
                report(node, at, f"{_shown(node.value)} is not a number JSON can hold")
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != f"{_TAG}seq":
                report(node, at, f"this is {_kind(node)}, which {what} cannot hold")
                return
            for index, item in enumerate(node.value):
                walk(item, (*at, index))
        elif isinstance(node, yaml.MappingNode):
            if node.tag != f"{_TAG}map":
                report(node, at, f"this is {_kind(node)}, which {what} cannot hold")
                return
            for key, value in _pairs(node):
                if not isinstance(key, yaml.ScalarNode):
                    continue
                if key.tag != f"{_TAG}str":
                    message = f"the key {_shown(key.value)} is {_kind(key)} in YAML"
                    message += f", but the keys of {what} are strings"
                    report(key, (*at, key.value), message + _as_string(key))
                walk(value, (*at, key.value))

    if start is not None:
        walk(start, path)
    return found


class Reference(str):
    """A value written as nothing but one `${VAR}` reference, after substitution. Where a
    number or a boolean is expected, it is read as YAML reads a plain scalar, so
    `batch_size: ${BATCH:-10}` is the number 10."""

    __slots__ = ()

    def scalar(self) -> Any:
        """The YAML scalar this text is (a number, a boolean or null), else the text."""
        try:
            value = yaml.safe_load(str(self))
        except yaml.YAMLError:
            return str(self)
        return value if value is None or isinstance(value, int | float) else str(self)


def interpolate(document: YamlDocument, environ: Mapping[str, str] | None = None) -> None:
    """Replace `${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset)
    in every string value; `$$` is a literal `$`. Unset variables without a default are
    reported with their location; their values are never echoed."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def substitute(text: str, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, operator, default = match.group(1), match.group(2), match.group(3)
            value = env.get(name)
            if operator == ":-" and not value:
                return default or ""
            if operator == "-" and value is None:
                return default or ""
            if value is None:
                hint = f"write ${{{name}:-default}} to give a default"
                message = f"environment variable {name} is not set ({hint})"
                problems.append(document.problem(path, message))
                return ""
            return value

        if "$" not in text:
            return text
        substituted = _REFERENCE.sub(replace, text)
        whole = _REFERENCE.fullmatch(text)
        return Reference(substituted) if whole and whole.group(0) != "$$" else substituted

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, str):
            return substitute(value, path)
        if isinstance(value, dict):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        return value

    document.data = walk(document.data, ())
    if problems:
        raise ConfigError(problems)

"""Reading a CloudFormation / SAM template or a serverless.yml: YAML (or JSON, which is
YAML) with CloudFormation's short forms (`!Ref X`, `!GetAtt A.B`, `!Sub ...`, ...) turned
into their long forms, and the line of every key kept for messages.

Only the safe loader composes the text; tags are read by this module, never by PyYAML's
constructors, so no tag can build an object. Scalars YAML 1.1 makes dates, bytes or
infinities stay the text written, as CloudFormation reads them. The size, nesting and
alias expansion of the document are bounded as for a config file
(bridge/config/yamlbounds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from math import isfinite
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from bridge.config.yamlbounds import check_expansion
from bridge.importing.notes import Location, TemplateError

MAX_TEMPLATE_BYTES = 5 * 1024 * 1024

# Short form -> long form. `!GetAtt A.B` is the one that changes shape (a list).
SHORT_FORMS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!Base64": "Fn::Base64",
    "!Cidr": "Fn::Cidr",
    "!FindInMap": "Fn::FindInMap",
    "!GetAtt": "Fn::GetAtt",
    "!GetAZs": "Fn::GetAZs",
    "!ImportValue": "Fn::ImportValue",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!Sub": "Fn::Sub",
    "!Transform": "Fn::Transform",
    "!And": "Fn::And",
    "!Equals": "Fn::Equals",
    "!If": "Fn::If",
    "!Not": "Fn::Not",
    "!Or": "Fn::Or",
    "!Length": "Fn::Length",
    "!ToJsonString": "Fn::ToJsonString",
}


@dataclass
class Template:
    """A template's data, its file, and the line of each key path."""

    path: Path
    data: dict[str, Any]
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, location: Location) -> int:
        for end in range(len(location), -1, -1):
            line = self.lines.get(location[:end])
            if line is not None:
                return line
        return 1

    @property
    def folder(self) -> Path:
        return self.path.parent


def load_template(path: Path) -> Template:
    """Read and parse a template; TemplateError (one line, with file and line) otherwise."""
    name = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise TemplateError(f"{name}: cannot read the template: {exc.strerror or exc}") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"{name}: the template is larger than 5 MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TemplateError(f"{name}:{line}: not UTF-8 text") from None
    return parse_template(text, path)


def parse_template(text: str, path: Path) -> Template:
    name = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise TemplateError(f"{name}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"{name}:1: invalid YAML: {exc}") from None
    except RecursionError:
        raise TemplateError(f"{name}:1: invalid YAML: nested too deeply") from None
    if root is None:
        raise TemplateError(f"{name}:1: the template is empty")
    try:
        check_expansion(root, name)
    except Exception as exc:  # ConfigError: same one-line shape
        raise TemplateError(str(exc)) from None
    template = Template(path, {})
    data = _Converter(template).convert(root, ())
    if not isinstance(data, dict):
        raise TemplateError(f"{name}:1: the template must be a mapping at its top")
    template.data = data
    return template


class _Converter:
    def __init__(self, template: Template) -> None:
        self.template = template
        self.scalars = SafeConstructor()

    def _fail(self, node: yaml.Node, message: str) -> TemplateError:
        return TemplateError(f"{self.template.path}:{node.start_mark.line + 1}: {message}")

    def convert(self, node: yaml.Node, location: Location) -> Any:
        self.template.lines.setdefault(location, node.start_mark.line + 1)
        tag = node.tag or ""
        if tag in SHORT_FORMS:
            return self._short_form(node, SHORT_FORMS[tag], location)
        if tag.startswith("!") and not tag.startswith("!!"):
            raise self._fail(node, f"unknown tag {tag}")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, location)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*location, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        try:
            value = self.scalars.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            raise self._fail(node, f"{node.value!r} cannot be read") from None
        if isinstance(value, date | bytes) or (isinstance(value, float) and not isfinite(value)):
            # CloudFormation reads a template's scalars as text: YAML 1.1's dates, binary
            # and infinities stay what was written (JSON holds none of them).
            return str(node.value)
        return value

    def _mapping(self, node: yaml.MappingNode, location: Location) -> dict[str, Any]:
        try:
            self.scalars.flatten_mapping(node)
        except yaml.YAMLError as exc:
            raise self._fail(node, f"invalid merge key: {exc}") from None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail(key_node, "a key must be a plain value")
            key = str(key_node.value)
            if key in result:
                raise self._fail(key_node, f"duplicate key {key!r}")
            self.template.lines[(*location, key)] = key_node.start_mark.line + 1
            result[key] = self.convert(value_node, (*location, key))
        return result

    def _short_form(self, node: yaml.Node, long_form: str, location: Location) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = str(node.value)
            if long_form == "Fn::GetAtt":
                logical_id, dot, attribute = value.partition(".")
                if not dot:
                    raise self._fail(node, f"!GetAtt {value!r}: write it as Resource.Attribute")
                value = [logical_id, attribute]
            elif long_form == "Fn::GetAZs" and value == "":
                value = ""
        elif isinstance(node, yaml.SequenceNode):
            value = [self.convert(item, (*location, i)) for i, item in enumerate(node.value)]
        else:
            assert isinstance(node, yaml.MappingNode)
            value = self._mapping(node, location)
        return {long_form: value}

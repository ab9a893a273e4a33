"""The Serverless Framework's `${...}` variables: `${self:path}`, `${opt:stage}`,
`${opt:region}`, `${sls:stage}`, `${env:NAME}`, `${aws:region}`, `${aws:accountId}`,
fallbacks (`${opt:stage, self:provider.stage, 'dev'}`) and nesting
(`${self:custom.${opt:stage}.table}`, innermost first).

Resolution is bounded: a `self:` reference that leads back to itself is an error naming
the cycle; more than MAX_STEPS replacements in one value, or a string longer than
MAX_STRING_CHARS, is an error too. A value that is one variable alone keeps the type of
what it refers to (a mapping, a list, a number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.importing.notes import Location, TemplateError

MAX_STEPS = 10_000
MAX_STRING_CHARS = 1_000_000
MAX_DEPTH = 64
_TOKEN = re.compile(r"\$\{|\}")
# `source:...`, `fn(...)`, a quoted text or a number; `${AWS::Region}`, `${Param}` and
# `${Res.Attr}` are Fn::Sub's.
_SERVERLESS_VARIABLE = re.compile(r"\s*([A-Za-z]+:(?!:)|[A-Za-z]+\(|'|\"|-?\d)")
_KEPT = re.compile("\x00(\\d+)\x00")
UNSUPPORTED_SOURCES = ("file(", "ssm:", "cf:", "s3:", "param:", "strToBool(", "sls:instanceId")


@dataclass
class Variables:
    """Resolves the variables of one serverless.yml (`document` is the whole file)."""

    document: dict[str, Any]
    options: dict[str, str]
    environ: dict[str, str]
    aws: dict[str, str]
    error: Callable[[Location, str], TemplateError]
    _resolving: list[str] = field(default_factory=list)
    _done: dict[str, Any] = field(default_factory=dict)
    _steps: int = 0

    def resolve(self, value: Any, location: Location, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(location, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            return {
                key: self.resolve(item, (*location, key), depth + 1) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.resolve(item, (*location, i), depth + 1) for i, item in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return self._string(value, location, depth)
        return value

    def _string(self, text: str, location: Location, depth: int) -> Any:
        """One pass: a `${` opens a frame, a `}` closes the innermost open one (the
        leftmost innermost variable first, as nesting needs), and a variable's text is
        read next, before the rest, so the `${...}` it holds are resolved too."""
        kept: list[str] = []  # `${AWS::Region}` and the like belong to Fn::Sub: left as they are
        size = len(text)
        frames: list[list[str]] = [[]]  # the text read; then the inside of each open `${`
        chunks = [(text, 0)]  # what is left to read, from the end
        while chunks:
            chunk, start = chunks.pop()
            if chunk.startswith("{", start) and frames[-1] and frames[-1][-1] == "$":
                frames[-1].pop()  # a `$` just before this `{` makes a `${` with it
                frames.append([])
                start += 1
            while found := _TOKEN.search(chunk, start):
                _add(frames[-1], chunk, start, found.start())
                start = found.end()
                if found.group() == "${":
                    frames.append([])
                    continue
                if len(frames) == 1:
                    frames[0].append("}")
                    continue
                expression = "".join(frames.pop())
                self._steps += 1
                if self._steps > MAX_STEPS:
                    raise self.error(location, "the variables take too many steps to resolve")
                if not _SERVERLESS_VARIABLE.match(expression):
                    frames[-1].append(f"\x00{len(kept)}\x00")
                    size += len(frames[-1][-1]) - len(expression) - 3
                    kept.append("${" + expression + "}")
                    continue
                value = self._variable(expression, location, depth)
                if len(frames) == 1 and not frames[0] and start == len(chunk) and not chunks:
                    if isinstance(value, str) and "${" in value:  # the whole text: again
                        size, chunks = len(value), [(value, 0)]
                        break
                    return value
                if isinstance(value, dict | list) or value is None:
                    raise self.error(
                        location, f"${{{expression}}} is not text and cannot be part of a string"
                    )
                replacement = _text(value)
                size += len(replacement) - len(expression) - 3
                if size > MAX_STRING_CHARS:
                    raise self.error(
                        location, "the resolved string is longer than 1,000,000 characters"
                    )
                chunks += [(chunk, start), (replacement, 0)]
                break
            else:
                _add(frames[-1], chunk, start, len(chunk))
        while len(frames) > 1:  # a `${` never closed is text
            inner = "".join(frames.pop())
            frames[-1].append("${" + inner)
        return _restore("".join(frames[0]), kept)

    def _variable(self, expression: str, location: Location, depth: int) -> Any:
        """The first of the comma-separated sources that has a value."""
        for candidate in _split_sources(expression):
            value = self._source(candidate.strip(), location, depth)
            if value is not None:
                return value
        raise self.error(location, f"${{{expression}}} has no value")

    def _source(self, source: str, location: Location, depth: int) -> Any:
        if len(source) >= 2 and source[0] == source[-1] and source[0] in "'\"":
            return source[1:-1]
        if re.fullmatch(r"-?\d+(\.\d+)?", source):
            return float(source) if "." in source else int(source)
        kind, _, rest = source.partition(":")
        if kind == "self":
            return self._self(rest, location, depth)
        if kind == "opt":
            return self.options.get(rest)
        if kind == "sls" and rest == "stage":
            return self.options.get("stage")
        if kind == "env":
            return self.environ.get(rest)
        if kind == "aws":
            return self.aws.get(rest)
        if source.startswith(UNSUPPORTED_SOURCES):
            return None  # a fallback may follow; else "has no value"
        raise self.error(location, f"${{{source}}}: unknown variable source")

    def _self(self, path: str, location: Location, depth: int) -> Any:
        if path in self._done:
            return self._done[path]
        if path in self._resolving:
            cycle = " -> ".join([*self._resolving[self._resolving.index(path) :], path])
            raise self.error(location, f"the variables refer to each other in a cycle: {cycle}")
        value: Any = self.document
        keys = [key for key in path.split(".") if key] if path else []
        for key in keys:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        self._resolving.append(path)
        try:
            resolved = self.resolve(value, tuple(keys), depth + 1)
        finally:
            self._resolving.pop()
        self._done[path] = resolved
        return resolved


def _split_sources(expression: str) -> list[str]:
    """`opt:stage, self:provider.stage, 'dev'`: commas outside quotes and parentheses."""
    parts: list[str] = []
    current = ""
    quote = ""
    depth = 0
    for char in expression:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return parts


def _add(frame: list[str], chunk: str, start: int, end: int) -> None:
    """chunk[start:end] to a frame; a `$` at its end apart, so that a `{` read next (from
    a variable's text) can make a `${` with it."""
    if end > start and chunk[end - 1] == "$":
        if end - 1 > start:
            frame.append(chunk[start : end - 1])
        frame.append("$")
    elif end > start:
        frame.append(chunk[start:end])


def _restore(text: str, kept: list[str]) -> str:
    return _KEPT.sub(lambda found: kept[int(found.group(1))], text) if kept else text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

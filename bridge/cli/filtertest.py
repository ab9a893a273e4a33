"""`lambda-bridge filter-test`: try filter patterns on events offline, one pattern or a
JSON Lines file of cases, with the same engine and per-source rules as a running mapping.

Without a source, the event is matched as a plain JSON document (EventBridge
semantics). With one, the event is a single record exactly as Lambda hands it to the
function for that source, and the source's data-key rules apply (esm-reference.md 11.2,
11.4): an SQS `body` holding JSON is matched as JSON, Kinesis `data` and Kafka `value`
are base64-decoded first.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from bridge.codec import JSONDecodeError, dumps_text, loads
from bridge.filtering.criteria import DataKey, FilterSet, compile_filter
from bridge.filtering.patterns import (
    MAX_PATTERN_DEPTH,
    MAX_PATTERN_LENGTH,
    PatternError,
    compile_pattern,
)

EXIT_INVALID = 2


class UnknownSource(LookupError):
    pass


def _data_keys() -> dict[str, DataKey | None]:
    from bridge.config.registry import registered

    return {name: config.filter_data_key for name, config in registered("sources").items()}


def _data_key(source: str | None, known: dict[str, DataKey | None]) -> DataKey | None:
    if source is None:
        return None
    if source not in known:
        raise UnknownSource(f"unknown source {source!r} (known: {', '.join(sorted(known))})")
    return known[source]


@functools.lru_cache(maxsize=4096)
def _compiled(pattern_json: str, data_key: DataKey | None) -> tuple[FilterSet, list[str]]:
    """Case files repeat their patterns: each is compiled once per run."""
    compiled, warnings = compile_filter(loads(pattern_json), data_key)
    return FilterSet([compiled], data_key), warnings


def evaluate(
    pattern: Any, event: Any, source: str | None, known: dict[str, DataKey | None]
) -> tuple[bool, list[str]]:
    """(match, warnings); raises PatternError or UnknownSource."""
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN_LENGTH:
            compile_pattern(pattern)  # raises, with the reason
        try:
            pattern = loads(pattern)
        except JSONDecodeError as exc:
            raise PatternError(f"Filter pattern is not valid JSON: {exc}") from None
    if not isinstance(pattern, dict):
        raise PatternError("Filter pattern must be a JSON object")
    data_key = _data_key(source, known)
    try:
        pattern_json = dumps_text(pattern)
    except TypeError:  # orjson's nesting limit, far beyond the pattern's own
        raise PatternError(
            f"Pattern is too deep: more than {MAX_PATTERN_DEPTH} nested levels"
        ) from None
    filters, warnings = _compiled(pattern_json, data_key)
    if not isinstance(event, dict):
        return False, warnings
    if data_key is None:
        return filters.filters[0].pattern.matches(event), warnings
    return filters.matches_document(event), warnings


def run_single(pattern_text: str, event_text: str, source: str | None) -> int:
    known = _data_keys()
    try:
        event = loads(event_text)
    except JSONDecodeError as exc:
        print(f"error: the event is not JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        matched, warnings = evaluate(pattern_text, event, source, known)
    except (PatternError, UnknownSource) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("true" if matched else "false")
    return 0


class BadCase(ValueError):
    """A line of a cases file that is not a case; the message says why."""


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def _case(line: bytes) -> tuple[Any, Any, str | None]:
    """(pattern, event, source) of one line of a cases file; raises BadCase."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadCase(
            f"not UTF-8 text (byte 0x{line[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        case = loads(text)
    except JSONDecodeError as exc:
        raise BadCase(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(case, dict):
        raise BadCase(f"must be a JSON object {{pattern, event, source?}}, not {_json_type(case)}")
    missing = [key for key in ("pattern", "event") if key not in case]
    if missing:
        raise BadCase(f"{' and '.join(missing)} missing (a case is {{pattern, event, source?}})")
    source = case.get("source")
    if source is not None and not isinstance(source, str):
        raise BadCase(f"source must be a string, not {_json_type(source)}")
    return case["pattern"], case["event"], source


def _answers(
    lines: Iterable[bytes], known: dict[str, DataKey | None]
) -> Iterator[tuple[dict[str, Any], bool]]:
    """(answer, whether the line was not a case) for every non-blank line. The answer is
    `match`, the pattern's rejection reason, or `line N: ` and why the line is no case."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pattern, event, source = _case(line)
            matched, _ = evaluate(pattern, event, source, known)
        except (BadCase, UnknownSource) as exc:
            yield {"error": f"line {number}: {exc}"}, True
        except PatternError as exc:
            yield {"error": str(exc)}, False
        else:
            yield {"match": matched}, False


def run_cases(path: str, out: TextIO = sys.stdout) -> int:
    """Answer every case of a JSON Lines file. Exit 0 when every line was a case (its
    pattern matched, did not, or was rejected), 2 when some line was not."""
    known = _data_keys()
    invalid = 0
    try:
        with sys.stdin.buffer if path == "-" else open(path, "rb") as stream:
            for answer, not_a_case in _answers(stream, known):
                invalid += not_a_case
                out.write(dumps_text(answer) + "\n")
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    if invalid:
        shown = "standard input" if path == "-" else path
        print(f"error: {invalid} of the lines in {shown} are not cases", file=sys.stderr)
        return EXIT_INVALID
    return 0

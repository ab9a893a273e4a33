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
from bridge.filtering import DataKey, FilterSet, compile_filter
from bridge.patterns import MAX_PATTERN_LENGTH, PatternError, compile_pattern

EXIT_INVALID = 2


class UnknownSource(LookupError):
    pass


def _data_keys() -> dict[str, DataKey | None]:
    from bridge.plugins import registered

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
    filters, warnings = _compiled(dumps_text(pattern), data_key)
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


def _answers(lines: Iterable[str], known: dict[str, DataKey | None]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = loads(line)
        except JSONDecodeError as exc:
            yield {"error": f"line {number}: not JSON: {exc}"}
            continue
        if not isinstance(case, dict) or "pattern" not in case or "event" not in case:
            yield {"error": f"line {number}: needs an object with pattern and event"}
            continue
        try:
            matched, _ = evaluate(case["pattern"], case["event"], case.get("source"), known)
        except (PatternError, UnknownSource) as exc:
            yield {"error": str(exc)}
            continue
        yield {"match": matched}


def run_cases(path: str, out: TextIO = sys.stdout) -> int:
    known = _data_keys()
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    with stream:
        out.writelines(dumps_text(answer) + "\n" for answer in _answers(stream, known))
    return 0

"""Lambda event filtering on a mapping's records (esm-reference.md 11).

A mapping's `filter_criteria` holds up to five patterns (ten with `limits`), OR-ed: a
record is delivered if any pattern matches it, and otherwise settled at once without
reaching the function (deleted from SQS, checkpointed past on streams, 11.5).

Patterns are matched against the record exactly as the function would receive it,
except for the source's *data key* (11.2): SQS `body`, Kinesis `data`, DynamoDB
`dynamodb`, Kafka `value`. Its payload is decoded first (base64, then UTF-8) and read
as JSON when it is JSON, and the pattern's part under that key is matched against the
result. Whether a JSON pattern part meets a plain-text payload, or the other way
round, is settled by the source's rule (11.4): SQS, Kinesis and DynamoDB drop the
record; Kafka matches the rest of the pattern (the metadata) only. The payload is
decoded only for patterns that look into it, once per record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bridge.filtering.patterns import (
    LAMBDA_UNDOCUMENTED,
    Pattern,
    PatternError,
    compile_part,
    compile_pattern,
)
from bridge.records import Record

# Lambda's quota of filters per mapping, raised as far as it can be (11.1; the default is 5).
MAX_FILTERS_PER_MAPPING = 10

_MISSING = object()


@dataclass(frozen=True)
class DataKey:
    """Where a source's payload sits in its records and how it is encoded (11.2, 11.4).

    `strict`: a pattern whose data part is JSON while the payload is not (or the other
    way round) cannot match (SQS, Kinesis, DynamoDB); otherwise only the pattern's other
    fields are matched (Kafka). `json_only`: a pattern may not give a plain-text data
    part (AWS rejects it for Kinesis and DynamoDB).
    """

    name: str
    path: tuple[str, ...]
    encoding: Literal["json-text", "base64", "object"]
    strict: bool = True
    json_only: bool = False


SQS_BODY = DataKey("body", ("body",), "json-text")
KINESIS_DATA = DataKey("data", ("kinesis", "data"), "base64", json_only=True)
DYNAMODB_RECORD = DataKey("dynamodb", ("dynamodb",), "object", json_only=True)
KAFKA_VALUE = DataKey("value", ("value",), "base64", strict=False)
# Amazon MQ's `data`, and the NATS source's, modelled on it.
MQ_DATA = DataKey("data", ("data",), "base64", strict=False)


class _Decoded:
    """A record's payload, decoded once: JSON (a parsed document) or plain text."""

    __slots__ = ("is_json", "value")

    def __init__(self, is_json: bool, value: Any) -> None:
        self.is_json = is_json
        self.value = value


def _parsed(text: str) -> _Decoded:
    try:
        return _Decoded(True, orjson.loads(text))
    except orjson.JSONDecodeError:
        return _Decoded(False, text)


def _decoder(data_key: DataKey) -> Callable[[dict[str, Any]], _Decoded | None]:
    """Reads the payload under `data_key` from a record; None if the record has none, or
    it is not text."""
    *parents, name = data_key.path
    encoding = data_key.encoding

    def decode(record: dict[str, Any]) -> _Decoded | None:
        holder: Any = record
        for step in parents:
            holder = holder.get(step) if type(holder) is dict else None
        raw = holder.get(name, _MISSING) if type(holder) is dict else _MISSING
        if raw is _MISSING:
            return None
        if encoding == "object":
            return _Decoded(True, raw)
        if type(raw) is not str:
            return None
        if encoding == "json-text":
            return _parsed(raw)
        try:
            return _parsed(base64.b64decode(raw, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            return None

    return decode


@dataclass(frozen=True)
class _Filter:
    pattern: Pattern
    # None: the pattern does not look into the payload; "json" or "text": how it does.
    data_part: Literal["json", "text"] | None
    # The pattern split in two: its rule for the payload, tested on the decoded value,
    # and the rest, tested on the record (None: nothing else to test). No data test:
    # the data key sits inside a top-level $or, so the whole pattern is matched on the
    # record with the payload decoded in place.
    data_test: Callable[[Any], bool] | None
    metadata_only: Pattern | None


def _generate(
    filters: Sequence[_Filter], data_key: DataKey | None
) -> Callable[[dict[str, Any]], bool]:
    """One function testing a record against every filter in turn, generated so that a
    record costs no call per filter beyond the filter's own tests. The payload is
    decoded at most once, when the first filter that looks into it is reached."""
    names: dict[str, Any] = {"M": _MISSING}
    lines = ["def matches(r):", "    p = M"]
    for index, item in enumerate(filters):
        names[f"f{index}"] = item.pattern.matches
        if item.data_part is None or data_key is None:
            lines.append(f"    if f{index}(r): return True")
            continue
        names["decode"] = _decoder(data_key)
        rest = ""
        if item.metadata_only is not None:
            names[f"r{index}"] = item.metadata_only.matches
            rest = f" and r{index}(r)"
        if item.data_test is None:
            test = f"f{index}({{**r, {data_key.name!r}: p.value}})"
        else:
            names[f"d{index}"] = item.data_test
            test = f"d{index}(p.value){rest}"
        want_json = item.data_part == "json"
        lines += [
            "    if p is M: p = decode(r)",
            f"    if p is not None and p.is_json is {want_json}:",
            f"        if {test}: return True",
        ]
        if not data_key.strict:
            # A payload of the other kind: the rest of the pattern decides (11.4).
            lines.append(f"    elif {rest[5:] or 'True'}: return True")
    lines.append("    return False")
    exec(compile("\n".join(lines), "<filter set>", "exec"), names)
    matches: Callable[[dict[str, Any]], bool] = names["matches"]
    return matches


class FilterSet:
    """The compiled filters of one mapping. `matches(record)` is the lanes' test;
    `filtered_out` counts the records it turned away."""

    def __init__(self, filters: Sequence[_Filter], data_key: DataKey | None) -> None:
        self.filters = list(filters)
        self.data_key = data_key
        self.filtered_out = 0
        # True if any filter matches a record as Lambda hands it over.
        self.matches_document = _generate(self.filters, data_key)

    def matches(self, record: Record) -> bool:
        if self.matches_document(record.payload):
            return True
        self.filtered_out += 1
        return False


def compile_filter(
    pattern: str | dict[str, Any], data_key: DataKey | None
) -> tuple[_Filter, list[str]]:
    """One pattern, checked as AWS checks it for this source: (the filter, warnings).
    Raises PatternError with the reason."""
    compiled = compile_pattern(pattern)
    warnings = []
    undocumented = sorted(compiled.operators & LAMBDA_UNDOCUMENTED)
    if undocumented:
        warnings.append(
            f"uses {', '.join(undocumented)}, which EventBridge supports but Lambda's "
            "filtering documentation does not list: AWS may reject this pattern"
        )
    if data_key is None or data_key.name not in compiled.keys:
        return _Filter(compiled, None, None, None), warnings
    part = compiled.part(data_key.name)
    if part is None:
        # Only inside a top-level $or: on a mismatch (Kafka) the record as it is.
        return _Filter(compiled, "json", None, compiled), warnings
    rest = compiled.without(data_key.name)
    if isinstance(part, list):
        if data_key.json_only:
            raise PatternError(
                f"the {data_key.name!r} part must be a JSON object pattern: "
                f"{data_key.name} is matched as JSON for this source"
            )
        return _Filter(compiled, "text", compile_part(part), rest), warnings
    return _Filter(compiled, "json", compile_part(part), rest), warnings


def build_filter_set(
    patterns: Sequence[str | dict[str, Any]], data_key: DataKey | None
) -> FilterSet:
    """Compile already-validated patterns (see `filter_problems`)."""
    return FilterSet([compile_filter(pattern, data_key)[0] for pattern in patterns], data_key)


Located = list[tuple[tuple[str | int, ...], str]]


def filter_problems(
    patterns: Sequence[str | dict[str, Any]], data_key: DataKey | None, limit: int, mapping: str
) -> tuple[Located, Located]:
    """Config problems and warnings of a mapping's filters, with paths under
    `filter_criteria`."""
    problems: Located = []
    warnings: Located = []
    if len(patterns) > limit:
        problems.append(
            (
                ("filters",),
                f"{len(patterns)} filters, but a mapping may have at most {limit} "
                f"(limits.filters_per_mapping; AWS's quota can be raised to "
                f"{MAX_FILTERS_PER_MAPPING})",
            )
        )
    for index, pattern in enumerate(patterns):
        where = f"filter {index + 1} of mapping {mapping!r}"
        try:
            _, found = compile_filter(pattern, data_key)
        except PatternError as error:
            problems.append(
                (("filters", index, "pattern"), f"invalid filter pattern ({where}): {error}")
            )
            continue
        warnings += [(("filters", index, "pattern"), f"{where}: {warning}") for warning in found]
    return problems, warnings

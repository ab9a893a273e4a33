"""The pattern engine, operator by operator, with the edge cases AWS's validated behaviour
pins down (esm-reference.md 11.3) and the reasons it gives for rejecting a pattern."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.filtering.patterns import MAX_PATTERN_LENGTH, PatternError, compile_pattern

ORDER = {
    "kind": "order",
    "total": 250,
    "ratio": 0.5,
    "paid": True,
    "coupon": None,
    "note": "",
    "customer": {"name": "Ada Lovelace", "tier": "GOLD", "ip": "10.1.2.3"},
    "tags": ["new", "priority"],
    "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    "file": "reports/2026/q3.csv",
}


def matches(pattern: dict[str, Any] | str, event: dict[str, Any] = ORDER) -> bool:
    return compile_pattern(pattern).matches(event)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    # exact values
    ("string", {"kind": ["order"]}, True),
    ("string is case sensitive", {"kind": ["Order"]}, False),
    ("one of several values", {"kind": ["refund", "order"]}, True),
    ("number", {"total": [250]}, True),
    ("number equals by value", {"total": [250.0]}, True),
    ("number never equals its string", {"total": ["250"]}, False),
    ("string never equals a number", {"kind": [0]}, False),
    ("boolean", {"paid": [True]}, True),
    ("boolean is not the number 1", {"paid": [1]}, False),
    ("null", {"coupon": [None]}, True),
    ("null does not match a missing field", {"missing": [None]}, False),
    ("empty string", {"note": [""]}, True),
    ("empty string does not match null", {"coupon": [""]}, False),
    ("missing field", {"missing": ["x"]}, False),
    # nesting and AND
    ("nested object", {"customer": {"tier": ["GOLD"]}}, True),
    ("all fields must match", {"kind": ["order"], "customer": {"tier": ["SILVER"]}}, False),
    ("rule on an object never matches", {"customer": ["Ada Lovelace"]}, False),
    ("nested rule on a scalar never matches", {"kind": {"x": ["order"]}}, False),
    # arrays in the event
    ("any array element", {"tags": ["priority"]}, True),
    ("no array element", {"tags": ["old"]}, False),
    ("array of objects: one element", {"lines": {"sku": ["B-7"], "qty": [1]}}, True),
    ("array of objects: fields from two elements", {"lines": {"sku": ["B-7"], "qty": [2]}}, False),
    # prefix / suffix
    ("prefix", {"file": [{"prefix": "reports/"}]}, True),
    ("prefix mismatch", {"file": [{"prefix": "Reports/"}]}, False),
    ("prefix ignoring case", {"file": [{"prefix": {"equals-ignore-case": "REPORTS/"}}]}, True),
    ("prefix on a number", {"total": [{"prefix": "2"}]}, False),
    ("suffix", {"file": [{"suffix": ".csv"}]}, True),
    ("suffix mismatch", {"file": [{"suffix": ".CSV"}]}, False),
    ("suffix ignoring case", {"file": [{"suffix": {"equals-ignore-case": ".CSV"}}]}, True),
    # equals-ignore-case
    ("equals-ignore-case", {"customer": {"tier": [{"equals-ignore-case": "gold"}]}}, True),
    (
        "equals-ignore-case is whole value",
        {"customer": {"tier": [{"equals-ignore-case": "gol"}]}},
        False,
    ),
    # anything-but
    ("anything-but value", {"kind": [{"anything-but": "refund"}]}, True),
    ("anything-but excluded value", {"kind": [{"anything-but": "order"}]}, False),
    ("anything-but list", {"kind": [{"anything-but": ["refund", "order"]}]}, False),
    ("anything-but numbers", {"total": [{"anything-but": [100, 250]}]}, False),
    ("anything-but number vs string", {"total": [{"anything-but": ["250"]}]}, True),
    ("anything-but matches null", {"coupon": [{"anything-but": "X"}]}, True),
    ("anything-but needs the field", {"missing": [{"anything-but": "X"}]}, False),
    ("anything-but on arrays: any element", {"tags": [{"anything-but": "new"}]}, True),
    (
        "anything-but on arrays: all excluded",
        {"tags": [{"anything-but": ["new", "priority"]}]},
        False,
    ),
    ("anything-but prefix", {"file": [{"anything-but": {"prefix": "tmp/"}}]}, True),
    ("anything-but prefix excluded", {"file": [{"anything-but": {"prefix": "reports/"}}]}, False),
    ("anything-but suffix list", {"file": [{"anything-but": {"suffix": [".txt", ".csv"]}}]}, False),
    (
        "anything-but ignoring case",
        {"kind": [{"anything-but": {"equals-ignore-case": ["ORDER"]}}]},
        False,
    ),
    ("anything-but wildcard", {"file": [{"anything-but": {"wildcard": "*/2025/*"}}]}, True),
    # numeric
    ("numeric range", {"total": [{"numeric": [">", 100, "<=", 250]}]}, True),
    ("numeric open upper", {"total": [{"numeric": ["<", 250]}]}, False),
    ("numeric equals a float", {"ratio": [{"numeric": ["=", 0.5]}]}, True),
    ("numeric ignores strings", {"kind": [{"numeric": [">", 0]}]}, False),
    ("numeric ignores booleans", {"paid": [{"numeric": [">", 0]}]}, False),
    ("numeric ignores null", {"coupon": [{"numeric": [">", 0]}]}, False),
    # exists
    ("exists", {"kind": [{"exists": True}]}, True),
    ("exists on null", {"coupon": [{"exists": True}]}, True),
    ("exists on an object is false", {"customer": [{"exists": True}]}, False),
    ("exists on a missing field", {"missing": [{"exists": True}]}, False),
    ("does not exist", {"missing": [{"exists": False}]}, True),
    ("does not exist, but does", {"kind": [{"exists": False}]}, False),
    ("does not exist below a missing parent", {"nowhere": {"deep": [{"exists": False}]}}, True),
    ("does not exist below a scalar", {"kind": {"deep": [{"exists": False}]}}, True),
    ("exists or a value", {"missing": [{"exists": False}, "x"]}, True),
    # wildcard and cidr
    ("wildcard", {"file": [{"wildcard": "reports/*/q?.csv"}]}, False),
    ("wildcard star", {"file": [{"wildcard": "reports/*.csv"}]}, True),
    ("wildcard escaped star", {"file": [{"wildcard": "reports\\*"}]}, False),
    ("cidr v4", {"customer": {"ip": [{"cidr": "10.0.0.0/8"}]}}, True),
    ("cidr v4 outside", {"customer": {"ip": [{"cidr": "10.2.0.0/16"}]}}, False),
    ("cidr on a non-address", {"kind": [{"cidr": "10.0.0.0/8"}]}, False),
    # $or
    ("$or", {"$or": [{"kind": ["refund"]}, {"total": [{"numeric": [">", 200]}]}]}, True),
    ("$or: no branch", {"$or": [{"kind": ["refund"]}, {"paid": [False]}]}, False),
    ("$or nested", {"customer": {"$or": [{"tier": ["GOLD"]}, {"name": ["x"]}]}}, True),
    ("$or and a field", {"kind": ["refund"], "$or": [{"paid": [True]}, {"note": [""]}]}, False),
    # paths joined with dots, as EventBridge flattens them
    ("dotted pattern key", {"customer.tier": ["GOLD"]}, True),
    ("dotted event key", {"a": {"b": ["c"]}}, False),
]


@pytest.mark.parametrize(("name", "pattern", "expected"), CASES, ids=[c[0] for c in CASES])
def test_operator(name: str, pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern) is expected


def test_a_dotted_event_key_matches_a_nested_pattern() -> None:
    assert matches({"a": {"b": ["c"]}}, {"a.b": "c"})
    assert matches({"a": {"b": {"c": [1]}}}, {"a.b": {"c": 1}})


def test_nested_arrays_are_flattened() -> None:
    assert matches({"grid": [4]}, {"grid": [[1, 2], [3, [4]]]})
    assert not matches({"grid": [{"exists": True}]}, {"grid": []})
    assert matches({"grid": [{"exists": False}]}, {"grid": []})


def test_duplicate_keys_in_a_pattern_string_keep_the_last() -> None:
    assert matches('{"kind": ["refund"], "kind": ["order"]}')


def test_a_pattern_string_and_object_compile_alike() -> None:
    pattern = {"customer": {"tier": [{"prefix": "GO"}]}}
    assert compile_pattern(json.dumps(pattern)).matches(ORDER) is compile_pattern(pattern).matches(
        ORDER
    )


def test_keys_parts_and_operators() -> None:
    compiled = compile_pattern(
        {"body": {"a": [{"prefix": "x"}]}, "$or": [{"m": ["1"]}, {"n": [{"exists": True}]}]}
    )
    assert compiled.keys == {"body", "m", "n"}
    assert compiled.part("body") == {"a": [{"prefix": "x"}]}
    assert compiled.part("m") is None
    rest = compiled.without("body")
    assert rest is not None and rest.keys == {"m", "n"}
    assert compiled.operators == {"prefix", "equals", "exists", "$or"}
    assert compile_pattern({"body": ["x"]}).without("body") is None
    ops = compile_pattern(
        {"a": [{"anything-but": {"suffix": ".x"}}, {"suffix": {"equals-ignore-case": "y"}}]}
    )
    assert ops.operators == {
        "anything-but",
        "anything-but/suffix",
        "suffix",
        "suffix/equals-ignore-case",
    }


REJECTED: list[tuple[Any, str]] = [
    ("not json", "not valid JSON"),
    ('["a"]', "must be a JSON object"),
    ({}, "Empty objects are not allowed"),
    ({"a": []}, "Empty arrays are not allowed"),
    ({"a": "x"}, '"a" must be an object or an array'),
    ({"a": 5}, '"a" must be an object or an array'),
    ({"a": [["x"]]}, "Match value must be String, number, true, false, or null"),
    ({"a": [{"prefix": 5}]}, "prefix match pattern must be a string"),
    ({"a": [{"suffix": None}]}, "suffix match pattern must be a string"),
    ({"a": [{"prefix": {"equals-ignore-case": 1}}]}, "prefix match pattern must be a string"),
    ({"a": [{"equals-ignore-case": ["x"]}]}, "equals-ignore-case match pattern must be a string"),
    (
        {"a": [{"anything-but": None}]},
        "Value of anything-but must be an array or single string/number value.",
    ),
    (
        {"a": [{"anything-but": True}]},
        "Value of anything-but must be an array or single string/number value.",
    ),
    (
        {"a": [{"anything-but": ["x", None]}]},
        "Inside anything but list, start|null|boolean is not supported.",
    ),
    ({"a": [{"anything-but": []}]}, "Empty arrays are not allowed"),
    ({"a": [{"anything-but": {"prefix": ""}}]}, "Null prefix/suffix not allowed"),
    ({"a": [{"anything-but": {"suffix": [1]}}]}, "prefix/suffix match pattern must be a string"),
    (
        {"a": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]},
        "Value of anything-but must be",
    ),
    ({"a": [{"numeric": 5}]}, "Value of numeric must be an array."),
    ({"a": [{"numeric": [">", "5"]}]}, "Value of > must be numeric"),
    ({"a": [{"numeric": ["!=", 5]}]}, "Unrecognized numeric range operator: !="),
    ({"a": [{"numeric": [">", 1, ">", 2]}]}, "Bad numeric range"),
    ({"a": [{"numeric": ["=", 1, "<", 2]}]}, "Bad numeric range"),
    ({"a": [{"numeric": [">"]}]}, "operator, number pairs"),
    ({"a": [{"exists": "yes"}]}, "exists match pattern must be either true or false."),
    ({"a": [{"NUMERIC": [">", 1]}]}, "Unrecognized match type NUMERIC"),
    ({"a": [{"prefix": "x", "suffix": "y"}]}, "exactly one operator"),
    ({"a": [{"wildcard": ["x*"]}]}, "wildcard match pattern must be a string"),
    ({"a": [{"wildcard": "a**b"}]}, "Consecutive wildcard characters at pos 2"),
    ({"a": [{"wildcard": "*a*b*c*d*e*"}]}, "Rule is too complex"),
    ({"a": [{"cidr": "10.0.0.0"}]}, "Malformed CIDR, one '/' required"),
    ({"a": [{"cidr": "10.0.x.0/8"}]}, "Nonstandard IP address: 10.0.x.0"),
    ({"a": [{"cidr": "10.0.0.0/99"}]}, "bad mask bits"),
    ({"$or": [{"a": ["x"]}]}, "at least 2 objects"),
    ({"$or": {"a": ["x"]}}, "at least 2 objects"),
    ({"a": ["x" * MAX_PATTERN_LENGTH]}, "the limit is 4096"),
]


@pytest.mark.parametrize(("pattern", "reason"), REJECTED, ids=[r[1][:40] for r in REJECTED])
def test_rejected_with_the_reason(pattern: Any, reason: str) -> None:
    with pytest.raises(PatternError) as raised:
        compile_pattern(pattern)
    assert reason in str(raised.value)


def test_too_deep_is_rejected_but_deep_enough_is_fine() -> None:
    def nested(depth: int) -> dict[str, Any]:
        pattern: dict[str, Any] = {"leaf": ["x"]}
        for _ in range(depth - 1):
            pattern = {"n": pattern}
        return pattern

    assert compile_pattern(nested(32))
    with pytest.raises(PatternError, match="too deep"):
        compile_pattern(nested(33))

"""No record content can stall the event loop through a filter: every operator matches in
time linear in the record (esm-reference.md 11.3). Wildcards that made a backtracking
regex take seconds on a few kilobytes (`*x*x*.csv`) match hundreds of kilobytes in about
the time of one `str.find` over them, and give exactly the regex's answers."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from bridge.filtering.patterns import PatternError, compile_pattern
from tests.support import REPO

# A match may take this many times one `str.find` over the same value (best of a few
# runs each), plus a floor for timer noise, and never more than the absolute bound.
RATIO = 50
FLOOR_SECONDS = 0.01
BOUND_SECONDS = 0.5
# A child still running after this has hit the backtracking this test guards against.
CHILD_TIMEOUT = 30.0

# The child times the match and a control in one process, so both see the same load.
TIMER = textwrap.dedent(
    """
    import json, sys, time
    from bridge.filtering.patterns import compile_pattern

    parts, value = json.loads(sys.stdin.read())
    document = {"f": value}

    def best(action):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
        return min(times)

    control = best(lambda: value.find("\\x00\\x01"))
    timings = []
    for part in parts:
        pattern = compile_pattern({"f": [part]})
        match = best(lambda: pattern.matches(document))
        result = pattern.matches(document)
        timings.append({"part": part, "match": match, "control": control, "result": result})
    print(json.dumps(timings))
    """
)


def timed(parts: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    """How long each part takes on `value` (best of five), beside one `str.find`."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", TIMER],
            input=json.dumps([parts, value]),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{parts} on {len(value):,} characters ran past {CHILD_TIMEOUT:.0f} s")
    assert result.returncode == 0, result.stderr
    timings: list[dict[str, Any]] = json.loads(result.stdout)
    return timings


def assert_linear(timing: dict[str, Any], ratio: int = RATIO) -> None:
    limit = min(ratio * timing["control"] + FLOOR_SECONDS, BOUND_SECONDS)
    assert timing["match"] <= limit, (
        f"{timing['part']} took {timing['match']:.4f} s; "
        f"one str.find over the same value took {timing['control']:.6f} s"
    )


KB200 = 200_000

ATTACKS = {
    "the reported pattern, 3 kB": ("*x*x*.csv", "x" * 3_000, False),
    "the reported pattern, 200 kB": ("*x*x*.csv", "x" * KB200, False),
    "four wildcards before a missing b, 20 kB": ("*a*a*a*a*b", "a" * 20_000, False),
    "four wildcards before a missing b, 200 kB": ("*a*a*a*a*b", "a" * KB200, False),
    "a middle piece that is never found": ("*a*a*a*ab*c", "a" * KB200 + "c", False),
    "a long middle piece almost everywhere": ("*" + "a" * 50 + "b*c", "a" * KB200 + "c", False),
    "periodic pieces": ("*ab*ab*ab*abc*d", "ab" * (KB200 // 2) + "d", False),
    "a match at the very end": ("*a*a*a*ab*", "a" * KB200 + "b", True),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_wildcards_match_in_linear_time(name: str) -> None:
    pattern, value, expected = ATTACKS[name]
    plain, negated = timed([{"wildcard": pattern}, {"anything-but": {"wildcard": pattern}}], value)
    for timing in (plain, negated):
        assert_linear(timing)
    assert plain["result"] is expected
    assert negated["result"] is not expected


OTHER_OPERATORS: list[dict[str, Any]] = [
    {"prefix": "a" * 100 + "b"},
    {"suffix": "b" + "a" * 100},
    {"prefix": {"equals-ignore-case": "A" * 100 + "B"}},
    {"suffix": {"equals-ignore-case": "B" + "A" * 100}},
    {"equals-ignore-case": "A" * 1_000},
    {"anything-but": ["a" * 1_000, "b"]},
    {"anything-but": {"prefix": "a" * 100 + "b"}},
    {"anything-but": {"suffix": ["b", "ab"]}},
    {"anything-but": {"equals-ignore-case": ["A" * 100]}},
    {"numeric": [">", 0, "<", 10]},
    {"exists": True},
    {"cidr": "10.0.0.0/8"},
    {"cidr": "fe80::/10"},
]

ADVERSARIAL_VALUES = {
    "one letter": "a" * KB200,
    "dots and digits": "1." * (KB200 // 2),
    "colons": ":" * KB200,
    "hextets": "1:" * (KB200 // 2),
    "a scope id": "fe80::1%" + "a" * KB200,
    "digits": "1" * KB200,
}


@pytest.mark.parametrize("value_name", list(ADVERSARIAL_VALUES))
def test_every_other_operator_is_linear(value_name: str) -> None:
    # These may also lower-case or hash the value: a looser ratio.
    for timing in timed(OTHER_OPERATORS, ADVERSARIAL_VALUES[value_name]):
        assert_linear(timing, 4 * RATIO)


def test_deeply_nested_arrays_do_not_exhaust_the_stack() -> None:
    """JSON parsers accept about a thousand levels; arrays are flattened without recursion."""
    depth = 5_000
    leaves: Any = "x"
    objects: Any = {"a": 1}
    for _ in range(depth):
        leaves, objects = [leaves], [objects]
    assert compile_pattern({"f": ["x"]}).matches({"f": leaves})
    assert compile_pattern({"f": [{"wildcard": "*x"}]}).matches({"f": leaves})
    assert compile_pattern({"f": {"a": [1]}}).matches({"f": objects})
    assert not compile_pattern({"f": {"a": [2]}}).matches({"f": objects})


def wildcard_matches(pattern: str, value: str) -> bool:
    return compile_pattern({"f": [{"wildcard": pattern}]}).matches({"f": value})


def reference_regex(pattern: str) -> re.Pattern[str]:
    """The wildcard as a backtracking regex, as it used to be compiled: the semantics
    the linear matcher must keep."""
    parts: list[str] = []
    stars = 0
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "*\\":
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "*":
            if index + 1 < len(pattern) and pattern[index + 1] == "*":
                raise ValueError(f"Consecutive wildcard characters at pos {index + 1}")
            stars += 1
            parts.append(".*")
        else:
            parts.append(re.escape(char))
        index += 1
    if stars > 5:
        raise ValueError(
            "Rule is too complex - try using fewer wildcard characters or fewer repeating "
            "character sequences after a wildcard character"
        )
    return re.compile("".join(parts), re.DOTALL)


def test_the_linear_matcher_answers_as_the_regex_did() -> None:
    """Random patterns and values over `ab*\\` and a line break: the same matches and the
    same rejections."""
    rng = random.Random(20261106)
    alphabet = "ab*\\\n"
    compared = rejected = matched = 0
    for _ in range(3_000):
        pattern = "".join(rng.choices(alphabet, k=rng.randint(0, 9)))
        try:
            regex = reference_regex(pattern)
        except ValueError as error:
            with pytest.raises(PatternError) as raised:
                compile_pattern({"f": [{"wildcard": pattern}]})
            assert str(raised.value) == str(error), pattern
            rejected += 1
            continue
        compiled = compile_pattern({"f": [{"wildcard": pattern}]})
        for _ in range(8):
            if rng.random() < 0.5:
                value = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
            else:
                fill = ["".join(rng.choices(alphabet, k=rng.randint(0, 3))) for _ in pattern]
                value = "".join(fill[i] if c == "*" else c for i, c in enumerate(pattern))
            expected = regex.fullmatch(value) is not None
            assert compiled.matches({"f": value}) is expected, (pattern, value)
            compared += 1
            matched += expected
    assert compared > 10_000 and rejected > 100 and matched > 1_000, (compared, rejected, matched)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("ab*ba", "aba", False),
        ("*ab*ba*", "aba", False),
        ("*ab*ba*", "abba", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("\\\\*", "\\abc", True),
        ("\\a*", "\\abc", True),
        ("*.csv", "a\nb.csv", True),
    ],
)
def test_wildcard_examples(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_matches(pattern, value) is expected
    assert (reference_regex(pattern).fullmatch(value) is not None) is expected

"""`lambda-bridge filter-test --cases`: every line of a cases file gets its own answer,
whatever is wrong with the lines before it, and the exit status says whether some line
was not a case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config.registry import registered

pytestmark = pytest.mark.e2e

CASES = [
    b'{"pattern": "{}", "event": {}, "source": 5}',
    b'{"pattern": {"a": [1]}, "event": {"a": 1}}',
    b"not json",
    b"[1, 2]",
    b'{"pattern": {"a": [1]}}',
    b'{"pattern": {"a": [1]}, "event": {}, "source": "carrier-pigeon"}',
    b'{"pattern": {"a": [1]}, "event": {"a": "caf\xe9"}}',
    b"",
    b'{"pattern": {}, "event": {}}',
    b'{"pattern": ' + b'{"a": ' * 200 + b"[1]" + b"}" * 200 + b', "event": {}}',
    b'{"pattern": {"body": {"n": [{"numeric": [">", 1]}]}}, "event": {"body": "{\\"n\\": 2}"}, "source": "sqs"}',
]


def filter_test(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "filter-test", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_every_line_is_answered_and_bad_lines_say_why(tmp_path: Path) -> None:
    """A source that is not a string, a line that is not JSON, not an object, without
    `event`, with an unknown source or with bytes that are not UTF-8 each answer
    `line N: reason`; a rejected pattern answers AWS's reason; the lines after them are
    still matched. Exit 2 because some lines were not cases; no traceback."""
    cases = tmp_path / "cases.jsonl"
    cases.write_bytes(b"\n".join(CASES) + b"\n")
    result = filter_test("--cases", str(cases))
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers == [
        {"error": "line 1: source must be a string, not a number"},
        {"match": True},
        {"error": "line 3: not JSON: invalid literal, expected 'null' at column 1"},
        {"error": "line 4: must be a JSON object {pattern, event, source?}, not an array"},
        {"error": "line 5: event missing (a case is {pattern, event, source?})"},
        {
            "error": "line 6: unknown source 'carrier-pigeon' (known: "
            f"{', '.join(sorted(registered('sources')))})"
        },
        {"error": "line 7: not UTF-8 text (byte 0xe9 at offset 43)"},
        {"error": "Empty objects are not allowed"},
        {"error": "Pattern is too deep: more than 32 nested levels"},
        {"match": True},
    ]
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        f"error: 6 of the lines in {cases} are not cases"
    ]


def test_only_rejected_patterns_exit_0_from_stdin() -> None:
    """A rejected pattern is an answer, not bad input: a file of well-formed cases exits 0,
    read from standard input too."""
    stdin = b'{"pattern": {}, "event": {}}\n{"pattern": {"a": [1]}, "event": {"a": 2}}\n'
    result = filter_test("--cases", "-", stdin=stdin)
    assert result.stdout.decode().splitlines() == [
        '{"error":"Empty objects are not allowed"}',
        '{"match":false}',
    ]
    assert (result.returncode, result.stderr) == (0, b"")


@pytest.mark.parametrize("name", ["missing.jsonl", "."])
def test_a_cases_file_that_cannot_be_read_is_one_line(tmp_path: Path, name: str) -> None:
    """A missing file or a folder: one error line, exit 2."""
    path = tmp_path / name
    result = filter_test("--cases", str(path))
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"error: cannot read {path}: ")
    assert (result.returncode, result.stdout) == (2, b"")

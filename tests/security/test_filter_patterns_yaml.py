"""A filter pattern written in YAML holds only what JSON can (esm-reference.md 11.1): a key
YAML reads as a date, a number, null or a boolean, and a date, binary, set or infinite
value, is a config error with the file, the line and the key path, reported by
`lambda-bridge validate` as one line and never as a traceback, where it used to crash
validate or pass it and then fail on every record."""

from __future__ import annotations

import contextlib
import datetime
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.filtering.patterns import PatternError, compile_pattern

pytestmark = pytest.mark.e2e

HEAD = """\
state_dir: ./state
functions:
  f: {invoker: subprocess, command: ["true"]}
mappings:
  - name: orders
    function: f
    source: {type: sqs, queue_url: "http://127.0.0.1:1/000000000000/orders"}
    filter_criteria:
      filters:
        - pattern:
            body:
"""
# The first line of the pattern's own body, after HEAD.
LINE = HEAD.count("\n") + 1
AT = "mappings[0].filter_criteria.filters[0].pattern"


def validate(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """`lambda-bridge validate bridge.yaml`, run in this process (the CLI's own `main`):
    what it prints and its exit status. One test runs the real command as well."""
    (tmp_path / "bridge.yaml").write_text(config)
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(tmp_path),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        status = main(["validate", "bridge.yaml"])
    return subprocess.CompletedProcess(["validate"], status, out.getvalue(), err.getvalue())


def validate_in_a_process(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bridge.yaml").write_text(config)
    script = Path(sys.executable).with_name("lambda-bridge")
    command = [str(script)] if script.exists() else [shutil.which("lambda-bridge") or ""]
    if not command[0]:
        command = [sys.executable, "-m", "bridge"]
    return subprocess.run(
        [*command, "validate", "bridge.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def only_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


BAD_KEYS = {
    "a date": ("2024-01-01", "a date"),
    "infinity": (".inf", "a number"),
    "not a number": (".nan", "a number"),
    "an integer": ("1", "a number"),
    "a float": ("2.5", "a number"),
    "a hexadecimal integer": ("0x1F", "a number"),
    "null": ("null", "null"),
    "a tilde": ("~", "null"),
    "true": ("true", "a boolean"),
    "YAML 1.1's on": ("on", "a boolean"),
    "binary": ("!!binary aGVsbG8=", "binary data"),
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_a_key_that_is_not_a_string_is_one_line(tmp_path: Path, name: str) -> None:
    key, kind = BAD_KEYS[name]
    config = HEAD + f'              status: ["paid"]\n              {key}: ["x"]\n'
    line = only_line(validate(tmp_path, config))
    written = key.removeprefix("!!binary ")
    assert line.startswith(f"error: bridge.yaml:{LINE + 1}: {AT}.body.{written}: "), line
    assert f"the key {written} is {kind} in YAML" in line, line
    assert "keys of a filter pattern are strings" in line, line


def test_the_command_answers_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The same as the real command, in its own process."""
    config = HEAD + '              status: ["paid"]\n              2024-01-01: ["x"]\n'
    line = only_line(validate_in_a_process(tmp_path, config))
    assert line.startswith(f"error: bridge.yaml:{LINE + 1}: {AT}.body.2024-01-01: "), line


def test_a_top_level_key_that_is_not_a_string_is_one_line(tmp_path: Path) -> None:
    """pydantic sees these first (a pattern is `dict[str, Any]`); only one line is shown."""
    config = HEAD.replace("            body:\n", "            2024-01-01: [x]\n")
    line = only_line(validate(tmp_path, config))
    assert line.startswith(f"error: bridge.yaml:{LINE - 1}: {AT}.2024-01-01: the key 2024-01-01")


def test_a_key_in_an_or_branch_and_a_merged_key_are_found(tmp_path: Path) -> None:
    config = HEAD.replace(
        "            body:\n",
        "            $or:\n"
        "              - {a: [x]}\n"
        "              - {true: [y]}\n"
        "        - pattern: {<<: {1: [z]}, b: [y]}\n",
    )
    result = validate(tmp_path, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    assert output.splitlines() == [
        f"error: bridge.yaml:{LINE + 1}: {AT}.$or[1].true: the key true is a boolean in YAML, "
        "but the keys of a filter pattern are strings: write 'true' for the string",
        f"error: bridge.yaml:{LINE + 2}: mappings[0].filter_criteria.filters[1].pattern.1: "
        "the key 1 is a number in YAML, but the keys of a filter pattern are strings: "
        "write '1' for the string",
    ]


BAD_VALUES = {
    "a date": ("[2024-01-01]", "[0]", "2024-01-01 is a date in YAML"),
    "a timestamp": ("[2024-01-01T10:00:00Z]", "[0]", "2024-01-01T10:00:00Z is a date in YAML"),
    "binary": ("[!!binary aGVsbG8=]", "[0]", "aGVsbG8= is binary data in YAML"),
    "a set": ("!!set {a, b}", "", "this is a set"),
    "an ordered map": ("!!omap [a: 1]", "", "this is an ordered mapping"),
    "infinity": ("[{numeric: ['<', .inf]}]", "[0].numeric[1]", ".inf is not a number JSON"),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_a_value_json_cannot_hold_is_one_line(tmp_path: Path, name: str) -> None:
    value, where, message = BAD_VALUES[name]
    config = HEAD + f"              status: {value}\n"
    line = only_line(validate(tmp_path, config))
    assert line.startswith(f"error: bridge.yaml:{LINE}: {AT}.body.status{where}: {message}"), line


def test_a_bad_pattern_and_another_problem_are_both_reported(tmp_path: Path) -> None:
    config = HEAD + '              1: ["x"]\n    batch_size: lots\n'
    result = validate(tmp_path, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    assert [line.split(": ")[2] for line in output.splitlines()] == [
        f"{AT}.body.1",
        "mappings[0].batch_size",
    ]


def test_quoted_keys_and_json_values_still_pass(tmp_path: Path) -> None:
    config = HEAD + (
        "              status: [paid, '2024-01-01', 1, 2.5, true, null, '']\n"
        "              '2024-01-01': [x]\n"
        "              '1': [{numeric: ['>', 0, '<=', 1.5e+3]}]\n"
        "              'null': [{exists: true}]\n"
        "              'on': [{prefix: a}]\n"
        "            attributes: {ApproximateReceiveCount: [{anything-but: '1'}]}\n"
        '        - pattern: \'{"body": {"total": [{"numeric": [">", 100]}]}}\'\n'
    )
    result = validate(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bridge.yaml: valid" in result.stdout


@pytest.mark.parametrize(
    "pattern",
    [
        {"body": {1: ["x"]}},
        {None: ["x"]},
        {"body": [datetime.date(2024, 1, 1)]},
        {"body": {datetime.date(2024, 1, 1): ["x"]}},
        {"body": [{"numeric": [">", float("inf")]}]},
        {"body": {"a": [b"x"]}},
    ],
)
def test_the_engine_rejects_what_json_cannot_hold(pattern: dict[object, object]) -> None:
    """Patterns given as objects from elsewhere: a PatternError, not a TypeError."""
    with pytest.raises(PatternError):
        compile_pattern(pattern)  # type: ignore[arg-type]

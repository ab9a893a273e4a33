"""Every command given bad input answers with one clear line per problem and an exit
status that says what happened, never a traceback. Each case runs `python -m bridge` as
a process in a folder of its own."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

HANDLER = b"def handler(event, context):\n    return event\n"
CONFIG = b"""\
state_dir: ./state
http: {listen: "127.0.0.1:0"}
functions:
  f: {invoker: python, handler: handler.py:handler}
mappings:
  - {name: inbox, function: f, source: {type: files, path: ./inbox}}
"""
BOMB = b"".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n".encode()
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def config_with(**functions: str) -> bytes:
    lines = "".join(f"  {name}: {{{spec}}}\n" for name, spec in functions.items())
    return CONFIG.replace(b"functions:\n", b"functions:\n" + lines.encode())


@dataclass
class Case:
    args: list[str]
    # What stderr says: one entry per line, the start of that line (and, after a `…`, its
    # end: what lies between depends on the test's folder).
    stderr: list[str]
    status: int = 2
    files: dict[str, bytes] = field(default_factory=dict)
    stdin: bytes = b""


CASES = {
    # the command line itself
    "no-command": Case([], ["error: the following arguments are required: COMMAND"]),
    "unknown-command": Case(["launch"], ["error: argument COMMAND: invalid choice: 'launch'"]),
    "bad-option-value": Case(
        ["generate-event", "sqs", "--records", "many"],
        ["error: argument --records: invalid int value: 'many'"],
    ),
    "unknown-option": Case(["schema", "--pretty"], ["error: unrecognized arguments: --pretty"]),
    # config files
    "config-missing": Case(
        ["validate", "absent.yaml"],
        ["error: absent.yaml: cannot read the config file: No such file or directory"],
    ),
    "config-is-a-folder": Case(
        ["run", "--config", "."], ["error: .: cannot read the config file: Is a directory"]
    ),
    "config-not-utf8": Case(
        ["run", "--config", "bridge.yaml"],
        ["error: bridge.yaml:7: not UTF-8 text (byte 0xe9 at offset 196)"],
        files={"bridge.yaml": CONFIG + b"# caf\xe9\n"},
    ),
    "config-alias-bomb-validate": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:8: invalid YAML: the aliases of this anchor expand the document"],
        files={"bridge.yaml": b"a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB},
    ),
    "config-alias-bomb-run": Case(
        ["run", "--config", "bridge.yaml"],
        ["error: bridge.yaml:8: invalid YAML: the aliases of this anchor expand the document"],
        files={"bridge.yaml": b"a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB},
    ),
    "config-is-a-list": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:1: the config file must be a mapping of settings"],
        files={"bridge.yaml": b"- functions\n"},
    ),
    "config-is-empty": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:1: functions: required key is missing"],
        files={"bridge.yaml": b""},
    ),
    "config-with-tabs": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:2: invalid YAML: found character '\\t' that cannot start any token"],
        files={"bridge.yaml": b"functions:\n\tf: {}\n"},
    ),
    "config-bool-as-number": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:6: mappings[0].batch_size: should be an integer, not a boolean"],
        files={"bridge.yaml": CONFIG.replace(b"function: f,", b"function: f, batch_size: true,")},
    ),
    "state-dir-is-a-file-validate": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:1: state_dir: 'state' is not a folder"],
        files={"bridge.yaml": CONFIG, "state": b"a file"},
    ),
    "state-dir-is-a-file-run": Case(
        ["run", "--config", "bridge.yaml"],
        ["error: bridge.yaml:1: state_dir: 'state' is not a folder"],
        files={"bridge.yaml": CONFIG, "state": b"a file"},
    ),
    "state-dir-unwritable": Case(
        ["validate", "bridge.yaml"],
        [
            "error: bridge.yaml:1: state_dir: '/proc/self/lambda-bridge' cannot be created: "
            "'/proc/self' is not writable"
        ],
        files={"bridge.yaml": CONFIG.replace(b"./state", b"/proc/self/lambda-bridge")},
    ),
    "destination-path-is-a-file": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:8: destinations.d.path: 'taken' is not a folder"],
        files={
            "bridge.yaml": CONFIG + b"destinations:\n  d: {type: file, path: ./taken}\n",
            "taken": b"a file",
        },
    ),
    "handler-is-a-folder": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:4: functions.g.handler: handler file '…/pkg' is a folder"],
        files={"bridge.yaml": config_with(g="invoker: python, handler: ./pkg:handler")},
    ),
    "http-url-with-no-port": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:4: functions.g.url: is not a URL: Port out of range 0-65535"],
        files={"bridge.yaml": config_with(g='invoker: http, url: "http://127.0.0.1:99999/"')},
    ),
    "http-header-with-line-break": Case(
        ["validate", "bridge.yaml"],
        ["error: bridge.yaml:4: functions.g.headers.X-Id: a header value cannot hold a line break"],
        files={
            "bridge.yaml": config_with(
                g='invoker: http, url: "http://127.0.0.1:9/", headers: {X-Id: "a\\nb"}'
            )
        },
    ),
    # invoke
    "invoke-unknown-function": Case(
        ["invoke", "nope", "--config", "bridge.yaml"],
        ["error: no function named 'nope' (known: f)"],
        files={"bridge.yaml": CONFIG},
    ),
    "invoke-event-not-json": Case(
        ["invoke", "f", "--config", "bridge.yaml", "--event", "event.json"],
        ["error: the event in event.json is not JSON: "],
        files={"bridge.yaml": CONFIG, "event.json": b"{'single': 'quotes'}"},
    ),
    "invoke-event-not-utf8": Case(
        ["invoke", "f", "--config", "bridge.yaml", "--event", "event.json"],
        ["error: the event in event.json is not UTF-8 text (byte 0xff at offset 9)"],
        files={"bridge.yaml": CONFIG, "event.json": b'{"name": \xff}'},
    ),
    "invoke-event-empty": Case(
        ["invoke", "f", "--config", "bridge.yaml", "--event", "-"],
        ["error: the event in standard input is empty"],
        files={"bridge.yaml": CONFIG},
    ),
    "invoke-event-missing": Case(
        ["invoke", "f", "--config", "bridge.yaml", "--event", "absent.json"],
        ["error: cannot read the event from absent.json: No such file or directory"],
        files={"bridge.yaml": CONFIG},
    ),
    "invoke-event-is-a-folder": Case(
        ["invoke", "f", "--config", "bridge.yaml", "--event", "."],
        ["error: cannot read the event from .: Is a directory"],
        files={"bridge.yaml": CONFIG},
    ),
    "invoke-handler-syntax-error": Case(
        ["invoke", "g", "--config", "bridge.yaml"],
        ["error: function 'g': cannot load handler 'broken.py:handler': SyntaxError: "],
        files={
            "bridge.yaml": config_with(g="invoker: python, handler: broken.py:handler"),
            "broken.py": b"def handler(event, context):\n    return (\n",
        },
    ),
    "invoke-handler-exits-on-import": Case(
        ["invoke", "g", "--config", "bridge.yaml"],
        ["error: function 'g': cannot load handler 'exits.py:handler': the module exited"],
        files={
            "bridge.yaml": config_with(g="invoker: python, handler: exits.py:handler"),
            "exits.py": b"import sys\nsys.exit(4)\n",
        },
    ),
    "invoke-handler-interrupts-on-import": Case(
        ["invoke", "g", "--config", "bridge.yaml"],
        ["error: function 'g': cannot load handler 'stops.py:handler': KeyboardInterrupt"],
        files={
            "bridge.yaml": config_with(g="invoker: python, handler: stops.py:handler"),
            "stops.py": b"raise KeyboardInterrupt\n",
        },
    ),
    "invoke-missing-function-in-module": Case(
        ["invoke", "g", "--config", "bridge.yaml"],
        ["error: function 'g': cannot load handler 'handler.py:absent': AttributeError: "],
        files={"bridge.yaml": config_with(g="invoker: python, handler: handler.py:absent")},
    ),
    # other commands
    "generate-event-unknown-type": Case(
        ["generate-event", "carrier-pigeon"], ["error: unknown event type 'carrier-pigeon'"]
    ),
    "generate-event-no-records": Case(
        ["generate-event", "sqs", "--records", "0"],
        ["error: --records must be between 1 and 10000"],
    ),
    "filter-test-pattern-without-event": Case(
        ["filter-test", "--pattern", "{}"], ["error: --pattern needs --event"]
    ),
    "filter-test-bad-pattern": Case(
        ["filter-test", "--pattern", "{", "--event", "{}"],
        ["error: Filter pattern is not valid JSON: "],
    ),
    "filter-test-bad-case-line": Case(
        ["filter-test", "--cases", "cases.jsonl"],
        ["error: 1 of the lines in cases.jsonl are not cases"],
        files={"cases.jsonl": b'{"pattern": {}, "event": {}, "source": 5}\n'},
    ),
    "reset-unknown-mapping": Case(
        ["reset-checkpoints", "--config", "bridge.yaml", "outbox"],
        ["error: no mapping named 'outbox' in bridge.yaml"],
        files={"bridge.yaml": CONFIG},
    ),
    "reset-corrupt-checkpoints": Case(
        ["reset-checkpoints", "--config", "bridge.yaml", "inbox"],
        [
            "error: checkpoint store 'state/checkpoints.sqlite3': cannot open: file is not a database"
        ],
        files={"bridge.yaml": CONFIG, "state/checkpoints.sqlite3": b"not sqlite" * 100},
    ),
    "validate-unit-missing": Case(
        ["validate", "bridge.yaml", "--unit", "absent.service"],
        ["error: absent.service: cannot read: No such file or directory"],
        files={"bridge.yaml": CONFIG},
    ),
    "validate-compose-not-yaml": Case(
        ["validate", "bridge.yaml", "--compose", "compose.yaml"],
        ["error: compose.yaml:2: not YAML: "],
        files={"bridge.yaml": CONFIG, "compose.yaml": b"services: [\n"},
    ),
    "validate-stop-timeout-nan": Case(
        ["validate", "bridge.yaml", "--stop-timeout", "nan"],
        ["error: --stop-timeout must be a number of seconds, 0 or more"],
        files={"bridge.yaml": CONFIG},
    ),
    "status-non-http-url": Case(
        ["status", "--url", "file:///etc/passwd"],
        ["error: --url must be http://host:port or https://host:port, not 'file:///etc/passwd'"],
    ),
    "reload-interval-negative": Case(
        ["status", "--interval", "-1", "--url", "http://127.0.0.1:9"],
        ["error: --interval must be between 0 and 60 seconds"],
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_per_problem(tmp_path: Path, case: Case) -> None:
    """The command exits with the case's status, stderr has exactly the expected lines,
    each starting `error:`, and there is no traceback."""
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (tmp_path / "handler.py").write_bytes(HANDLER)
    (tmp_path / "pkg").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "bridge", *case.args],
        cwd=tmp_path,
        input=case.stdin,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == len(case.stderr), stderr
    for line, expected in zip(lines, case.stderr, strict=True):
        start, _, end = expected.partition("…")
        assert line.startswith(start) and line.endswith(end), (line, expected)
    assert result.returncode == case.status, stderr


def run_json(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--config", "bridge.yaml", "--log-format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_checkpoint_store_that_cannot_be_opened_stops_run_with_one_line(
    tmp_path: Path,
) -> None:
    """`run` whose SQLite checkpoint file is not a database logs one daemon.start_failed
    line naming the file and exits 2."""
    (tmp_path / "handler.py").write_bytes(HANDLER)
    (tmp_path / "bridge.yaml").write_bytes(CONFIG)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "checkpoints.sqlite3").write_bytes(b"not sqlite" * 100)
    result = run_json(tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [failure] = result.stderr.splitlines()
    assert "daemon.start_failed" in failure
    assert "checkpoint store 'state/checkpoints.sqlite3': cannot open: file is not a database" in (
        failure
    )


def test_a_handler_exiting_on_import_stops_run_with_one_line(tmp_path: Path) -> None:
    """`run` with a handler module that calls sys.exit() while being imported logs one
    daemon.start_failed line and exits 2, reading nothing."""
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(4)\n")
    (tmp_path / "bridge.yaml").write_bytes(
        CONFIG.replace(b"handler.py:handler", b"exits.py:handler")
    )
    result = run_json(tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [failure] = [line for line in result.stderr.splitlines() if "daemon.start_failed" in line]
    assert "the module exited while being imported (exit status 4)" in failure

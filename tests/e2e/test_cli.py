"""The command line as a user meets it: the zero-setup default, bad input, python -m bridge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
from aws_lambda_powertools.utilities.parser.models import S3Model

from tests.support import REPO, DaemonProcess, read_jsonl, wait_for


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_run_without_config_uses_the_bundled_example(tmp_path: Path) -> None:
    """`lambda-bridge run` with no config watches ./inbox with the example handler, which
    prints each record and fails files named *fail* into ./failed after its retries."""
    daemon = DaemonProcess(None, tmp_path, env={"LAMBDA_BRIDGE_API_LISTEN": "127.0.0.1:0"})
    daemon.start()
    try:
        daemon.wait_ready()
        [listening] = daemon.wait_for_log("api.listening")
        lambda_api = boto3.client(
            "lambda",
            endpoint_url=f"http://{listening['address']}",
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        answer = lambda_api.invoke(FunctionName="hello", Payload=b'{"Records": []}')
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        (tmp_path / "inbox" / "hello.txt").write_text("hello")
        (tmp_path / "inbox" / "please-fail.txt").write_text("oops")
        wait_for(lambda: "s3://inbox/hello.txt" in daemon.stdout, what="handler output")
        [failure] = wait_for(
            lambda: read_jsonl(tmp_path / "failed" / "inbox.jsonl"),
            timeout=30,
            what="failure record",
        )
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_invalid_config_exits_2_with_file_line_and_key(tmp_path: Path) -> None:
    """run and validate refuse a bad config before doing anything, naming file, line and key;
    references (handler files) are checked once the file's shape is valid."""
    config = tmp_path / "bad.yaml"
    config.write_text("functions:\n  f: {invoker: python, handler: h.py:handler, timeout: 2000}\n")
    for command in (["run", "--config", str(config)], ["validate", str(config)]):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert (
            f"{config}:2: functions.f.timeout: Input should be less than or equal to 900"
            in result.stderr
        )
    config.write_text("functions:\n  f: {invoker: python, handler: h.py:handler}\n")
    result = run_cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        f"{config}:2: functions.f.handler: handler file '{tmp_path / 'h.py'}' does not exist"
        in result.stderr
    )


def test_handler_that_fails_to_import_stops_the_start(tmp_path: Path) -> None:
    """A handler with a syntax error is reported by name and nothing is read."""
    (tmp_path / "broken.py").write_text("def handler(event, context):\n    return (\n")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "waiting.txt").write_text("not to be consumed")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "state_dir: ./state\n"
        "functions:\n  f: {invoker: python, handler: broken.py:handler}\n"
        "mappings:\n  - {name: m, function: f, source: {type: files, path: ./inbox}}\n"
    )
    result = run_cli("run", "--config", str(config), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 2
    [failure] = [
        json.loads(line) for line in result.stderr.splitlines() if '"daemon.start_failed"' in line
    ]
    assert "cannot load handler 'broken.py:handler'" in failure["error"]
    assert "SyntaxError" in failure["error"]


def test_generate_event_files_is_a_valid_s3_event(tmp_path: Path) -> None:
    """generate-event files prints an event that the strict S3 model accepts."""
    result = run_cli("generate-event", "files", "--records", "3", cwd=tmp_path)
    assert result.returncode == 0
    event = json.loads(result.stdout)
    S3Model.model_validate(event)
    assert len(event["Records"]) == 3


def test_readme_test_command_is_what_ci_runs() -> None:
    """.ci/run runs the README's test command exactly."""
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(line.strip() for line in ci.splitlines() if "python -m pytest" in line)
    assert f"\n{command}\n" in readme

"""The `runtime` invoker end to end: function packages run by real `lambda-bridge invoke`
and `lambda-bridge run` processes, in execution environments behind the Runtime API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runtime_support import invoke, response, write
from tests.exposition import samples
from tests.support import REPO, DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

PYTHON_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

# A provided.al2023 bootstrap: curl speaking the Runtime API, answering with what the
# environment looks like from inside.
ENV_BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
while true; do
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  REQUEST_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d: -f2 | tr -d '[:space:]')"
  DEADLINE="$(grep -i '^Lambda-Runtime-Deadline-Ms:' "$HEADERS" | cut -d: -f2 | tr -d '[:space:]')"
  ARN="$(grep -i '^Lambda-Runtime-Invoked-Function-Arn:' "$HEADERS" | cut -d' ' -f2 | tr -d '[:space:]')"
  env > "$TMPDIR/env.txt"
  python3 -c 'import json,os,sys; print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "event": json.loads(sys.argv[1]), "deadline": sys.argv[2], "arn": sys.argv[3], "request_id": sys.argv[4]}))' \
    "$EVENT" "$DEADLINE" "$ARN" "$REQUEST_ID" > "$TMPDIR/out.json"
  echo "answering $REQUEST_ID"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" --data-binary "@$TMPDIR/out.json"
done
"""

INIT_ERROR_BOOTSTRAP = r"""#!/bin/sh
curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \
  -H 'Lambda-Runtime-Function-Error-Type: Custom.ConfigMissing' \
  -d '{"errorType": "Custom.ConfigMissing", "errorMessage": "no config"}'
exit 1
"""

# A Python handler whose behaviour the file name picks: sleep-* runs past the timeout,
# crash-* ends the process, slow-* holds the environment a while; each call is recorded.
HANDLER = r"""
import json, os, time
from helper import RECORD_TO

def handler(event, context):
    key = event["Records"][0]["s3"]["object"]["key"]
    running = os.path.join(os.path.dirname(RECORD_TO), "running")
    os.makedirs(running, exist_ok=True)
    marker = os.path.join(running, context.aws_request_id)
    open(marker, "w").close()
    busy = len(os.listdir(running))
    print(f"handling {key}")
    try:
        if key.startswith("sleep"):
            time.sleep(30)
        if key.startswith("crash"):
            os._exit(3)
        if key.startswith("slow"):
            time.sleep(0.5)
    finally:
        os.remove(marker)
    with open(RECORD_TO, "a") as out:
        out.write(json.dumps({"key": key, "pid": os.getpid(), "busy": busy,
                              "request_id": context.aws_request_id}) + "\n")
    return {"ok": key}
"""


def test_provided_bootstrap_sees_lambdas_environment(tmp_path: Path) -> None:
    """A provided.al2023 shell bootstrap using curl gets the event with Lambda's headers
    and runs with Lambda's variables, the package as its working folder, a TMPDIR of its
    own, the function's own variables, and nothing else of the daemon's environment."""
    write(tmp_path / "fn" / "bootstrap", ENV_BOOTSTRAP, executable=True)
    config = write(
        tmp_path / "bridge.yaml",
        """\
state_dir: ./state
functions:
  shell:
    invoker: runtime
    runtime: provided.al2023
    handler: my.handler
    code: ./fn
    memory_size: 256
    timeout: 7
    environment: {STAGE: test}
mappings: []
""",
    )
    status, output = invoke(tmp_path, config, "shell", '{"n": 1}')
    assert status == 0, output
    seen = response(output)
    env = seen["env"]
    # The package is taken as a copy under state_dir/runtime (a folder too), so an
    # environment never writes into the source.
    task_root = env["LAMBDA_TASK_ROOT"]
    assert Path(task_root).parent == (tmp_path / "state" / "runtime" / "code").resolve()
    assert (Path(task_root) / "bootstrap").read_bytes() == (
        tmp_path / "fn" / "bootstrap"
    ).read_bytes()
    assert seen["event"] == {"n": 1}
    assert seen["cwd"] == task_root
    assert seen["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:shell"
    assert int(seen["deadline"]) > 0
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] == "my.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "shell"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/shell"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_provided.al2023"
    assert env["STAGE"] == "test"
    assert env["TMPDIR"].startswith(str(tmp_path / "state" / "runtime"))
    assert "DAEMON_SECRET" not in env
    assert not (Path(env["TMPDIR"])).exists(), "the environment's /tmp is removed at SHUTDOWN"


def test_python_handler_with_a_layer(tmp_path: Path) -> None:
    """The example Python function runs unmodified through awslambdaric, importing from
    its layer, with Lambda's context object."""
    if PYTHON_RUNTIME != "python3.11":
        pytest.skip("config/runtime.yaml names python3.11")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    status, output = invoke(tmp_path, REPO / "config" / "runtime.yaml", "greeter")
    assert status == 0, output
    seen = response(output)
    assert seen["greeting"] == "hello from greeter's layer"
    assert 0 < seen["remaining_ms"] <= 10_000


def test_init_errors(tmp_path: Path) -> None:
    """A handler that cannot be imported answers with awslambdaric's init error; a
    bootstrap that reports /init/error answers with what it reported."""
    write(tmp_path / "py" / "app.py", "import not_installed_anywhere\n")
    write(tmp_path / "fn" / "bootstrap", INIT_ERROR_BOOTSTRAP, executable=True)
    config = write(
        tmp_path / "bridge.yaml",
        f"""\
state_dir: ./state
functions:
  broken-python:
    invoker: runtime
    runtime: {PYTHON_RUNTIME}
    handler: app.handler
    code: ./py
  broken-shell:
    invoker: runtime
    runtime: provided
    code: ./fn
mappings: []
""",
    )
    status, output = invoke(tmp_path, config, "broken-python")
    assert status != 0, output
    assert response(output)["errorType"] == "Runtime.ImportModuleError"
    status, output = invoke(tmp_path, config, "broken-shell")
    assert status != 0, output
    assert response(output) == {"errorType": "Custom.ConfigMissing", "errorMessage": "no config"}


def daemon_config(tmp_path: Path, function_extra: str, mapping_extra: str = "") -> Path:
    write(tmp_path / "py" / "app.py", HANDLER)
    write(tmp_path / "py" / "helper.py", f"RECORD_TO = {str(tmp_path / 'calls.jsonl')!r}\n")
    (tmp_path / "inbox").mkdir()
    return write(
        tmp_path / "bridge.yaml",
        f"""\
state_dir: ./state
drain_timeout_seconds: 5
functions:
  fn:
    invoker: runtime
    runtime: {PYTHON_RUNTIME}
    handler: app.handler
    code: ./py
{function_extra}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: inbox
    function: fn
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
    maximum_retry_attempts: 0
    destination_config: {{on_failure: {{destination: failed}}}}
{mapping_extra}
""",
    )


def drop(tmp_path: Path, name: str) -> None:
    (tmp_path / "inbox" / name).write_text("{}")


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp_path / "calls.jsonl")


def failures(tmp_path: Path) -> list[dict[str, Any]]:
    return [record for path in (tmp_path / "failed").glob("*.jsonl") for record in read_jsonl(path)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lifecycle_in_the_daemon(tmp_path: Path) -> None:
    """Consecutive calls reuse a warm environment (same process); a timeout kills the
    environment and the next call gets a fresh one; so does a crash. Each invocation's
    log is framed by START, END and REPORT, with Init Duration on cold starts only."""
    config = daemon_config(tmp_path, "    timeout: 2")
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        drop(tmp_path, "a.json")
        wait_for(lambda: len(calls(tmp_path)) == 1, what="the first call")
        drop(tmp_path, "b.json")
        wait_for(lambda: len(calls(tmp_path)) == 2, what="the second call")
        first, second = calls(tmp_path)
        assert first["pid"] == second["pid"], "a warm environment is reused"

        drop(tmp_path, "sleep.json")
        wait_for(lambda: failures(tmp_path), timeout=30, what="the timed-out call's failure")
        assert not alive(first["pid"]), "a timeout ends the environment's processes"
        drop(tmp_path, "c.json")
        wait_for(lambda: len(calls(tmp_path)) == 3, what="the call after the timeout")
        third = calls(tmp_path)[2]
        assert third["pid"] != first["pid"], "a fresh environment after a timeout"

        drop(tmp_path, "crash.json")
        wait_for(lambda: len(failures(tmp_path)) == 2, timeout=30, what="the crash's failure")
        drop(tmp_path, "d.json")
        wait_for(lambda: len(calls(tmp_path)) == 4, what="the call after the crash")
        assert calls(tmp_path)[3]["pid"] != third["pid"], "a fresh environment after a crash"

        lines = [entry["line"] for entry in daemon.events("function.log", function="fn")]
        request = first["request_id"]
        assert f"START RequestId: {request} Version: $LATEST" in lines
        assert f"END RequestId: {request}" in lines
        assert "handling a.json" in lines
        reports = [line for line in lines if line.startswith("REPORT RequestId: ")]
        first_report = next(line for line in reports if request in line)
        second_report = next(line for line in reports if second["request_id"] in line)
        assert "Init Duration:" in first_report and "Init Duration:" not in second_report
        for field in ("Duration:", "Billed Duration:", "Memory Size: 128 MB", "Max Memory Used:"):
            assert field in first_report
        [timeout] = daemon.wait_for_log("batch.failed", error_type="Sandbox.Timedout")
        assert timeout["error_message"].endswith("Task timed out after 2.00 seconds")
        [crash] = daemon.wait_for_log("batch.failed", error_type="Runtime.ExitError")
        assert crash["error_message"].endswith("Runtime exited with error: exit status 3")
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_reserved_concurrency_bounds_environments(tmp_path: Path) -> None:
    """With reserved_concurrency 2, six files delivered at once run in at most two
    environments, never more than two invocations at a time; a provisioned environment
    is up before the daemon is ready."""
    config = daemon_config(
        tmp_path, "    reserved_concurrency: 2\n    provisioned_concurrency: 1\n    timeout: 10"
    )
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        assert daemon.events("runtime.environment_started", function="fn")
        for index in range(6):
            drop(tmp_path, f"slow-{index}.json")
        wait_for(lambda: len(calls(tmp_path)) == 6, timeout=30, what="six calls")
        done = calls(tmp_path)
        assert len({call["pid"] for call in done}) <= 2
        # Bounded, and used: the six files (independent partitions) ran two at a time.
        assert max(call["busy"] for call in done) == 2
        # The callers that found both environments busy waited in the pool, which
        # counted them as throttles (no queue in front of it hides them).
        status, metrics = daemon.admin("/metrics")
        assert status == 200
        [throttles] = [
            sample.value
            for sample in samples(metrics)
            if sample.name == "lambda_bridge_runtime_throttles_total"
        ]
        assert throttles >= 1, throttles
        assert daemon.stop() == 0
    finally:
        daemon.kill()

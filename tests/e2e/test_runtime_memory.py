"""The `runtime` invoker's memory_size and metrics, end to end: a function that allocates
past 128 MB ends its environment with Runtime.OutOfMemory (under a memory cgroup where the
host allows one, else under the resident-memory watch) and the next call gets a fresh
environment; the daemon's /metrics shows what the function's environments went through."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.runtime.memory import MODE_VARIABLE, cgroup_parent
from tests.e2e.runtime_support import write
from tests.exposition import per_mapping
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

PYTHON_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

# hog-* allocates (and touches) 8 MB at a time, far past 128 MB; anything else answers.
HANDLER = r"""
import json, os, time
from helper import RECORD_TO

def handler(event, context):
    key = event["Records"][0]["s3"]["object"]["key"]
    with open(RECORD_TO, "a") as out:
        out.write(json.dumps({"key": key, "pid": os.getpid()}) + "\n")
    if key.startswith("hog"):
        chunks = []
        for _ in range(256):
            chunks.append(b"x" * (8 << 20))
            time.sleep(0.005)
        return {"survived": len(chunks)}
    return {"ok": key}
"""


def config(tmp_path: Path, handler: str = HANDLER) -> Path:
    write(tmp_path / "py" / "app.py", handler)
    write(tmp_path / "py" / "helper.py", f"RECORD_TO = {str(tmp_path / 'calls.jsonl')!r}\n")
    (tmp_path / "inbox").mkdir()
    return write(
        tmp_path / "bridge.yaml",
        f"""\
state_dir: ./state
drain_timeout_seconds: 5
functions:
  hungry:
    invoker: runtime
    runtime: {PYTHON_RUNTIME}
    handler: app.handler
    code: ./py
    memory_size: 128
    timeout: 20
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: inbox
    function: hungry
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
    maximum_retry_attempts: 0
    destination_config: {{on_failure: {{destination: failed}}}}
""",
    )


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp_path / "calls.jsonl")


def failures(tmp_path: Path) -> list[dict[str, Any]]:
    return [record for path in (tmp_path / "failed").glob("*.jsonl") for record in read_jsonl(path)]


def runtime_metrics(daemon: DaemonProcess) -> dict[str, float]:
    status, body = daemon.admin("/metrics")
    assert status == 200
    return {
        name: value for name, value in per_mapping(body)[""].items() if name.startswith("runtime_")
    }


@pytest.mark.parametrize("mode", ["cgroup", "rss"])
def test_out_of_memory_ends_the_environment(tmp_path: Path, mode: str) -> None:
    """A handler allocating past memory_size is Runtime.OutOfMemory in Lambda's words, its
    environment's processes are gone, and the next call runs in a fresh environment; the
    REPORT line and /metrics show the memory used and the out-of-memory end."""
    if mode == "cgroup" and cgroup_parent() is None:
        pytest.skip("this host lets the daemon make no memory cgroup")
    daemon = DaemonProcess(config(tmp_path), tmp_path, env={MODE_VARIABLE: mode}).start()
    assert daemon.process is not None
    pid = daemon.process.pid
    try:
        daemon.wait_ready()
        (tmp_path / "inbox" / "a.json").write_text("{}")
        wait_for(lambda: len(calls(tmp_path)) == 1, what="the first call")
        (tmp_path / "inbox" / "hog.json").write_text("{}")
        wait_for(lambda: failures(tmp_path), timeout=30, what="the out-of-memory failure")
        [oom] = daemon.wait_for_log("batch.failed", error_type="Runtime.OutOfMemory")
        started = daemon.events("runtime.environment_started", function="hungry")
        assert {event["memory_watch"] for event in started} == {mode}
        assert oom["error_message"].endswith("Error: Runtime exited with error: signal: killed")
        (tmp_path / "inbox" / "b.json").write_text("{}")
        wait_for(lambda: len(calls(tmp_path)) == 3, what="the call after the end")
        first, hog, after = calls(tmp_path)
        assert hog["pid"] == first["pid"], "the hog ran warm in the first environment"
        assert after["pid"] != hog["pid"], "a fresh environment after the out-of-memory end"

        lines = [entry["line"] for entry in daemon.events("function.log", function="hungry")]
        reports = [line for line in lines if line.startswith("REPORT RequestId: ")]
        used = [int(line.split("Max Memory Used: ")[1].split(" MB")[0]) for line in reports]
        assert all(megabytes > 0 for megabytes in used), reports

        metrics = runtime_metrics(daemon)
        assert metrics["runtime_out_of_memory_total"] == 1
        assert metrics["runtime_cold_starts_total"] == 2
        assert metrics["runtime_timeouts_total"] == 0
        assert metrics["runtime_init_duration_seconds_count"] == 2
        assert metrics["runtime_environments"] == 1  # summed over states: one idle
        assert metrics["runtime_concurrent_executions"] == 0
        assert metrics["runtime_max_memory_used_bytes"] >= 100 * 1024 * 1024
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    # No memory cgroup is left behind once the daemon has stopped.
    parent = cgroup_parent()
    if parent is not None:
        assert not [p for p in parent[0].glob("lambda-bridge-*") if f"-{pid}-" in p.name]


# An extension holding 56 MB (resident) from before it registers; it records its events.
BALLAST = r"""#!{python}
import json, os, urllib.request
BALLAST = b"x" * (56 << 20)
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
body = json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}).encode()
request = urllib.request.Request(API + "/register", body, {{"Lambda-Extension-Name": "ballast"}})
with urllib.request.urlopen(request) as response:
    headers = {{"Lambda-Extension-Identifier": response.headers["Lambda-Extension-Identifier"]}}
while True:
    with urllib.request.urlopen(urllib.request.Request(API + "/event/next", None, headers)) as r:
        event = json.load(r)
    with open({record_to!r}, "a") as out:
        out.write(json.dumps(event) + "\n")
    if event["eventType"] == "SHUTDOWN":
        break
"""

# 72 MB: within 128 MB alone, past it with the extension's 56 MB counted.
HALF_HOG = r"""
import time

def handler(event, context):
    chunks = [b"x" * (8 << 20) for _ in range(9)]
    time.sleep(1.0)
    return {"held": len(chunks)}
"""


@pytest.mark.parametrize("mode", ["cgroup", "rss"])
def test_an_extensions_memory_counts(tmp_path: Path, mode: str) -> None:
    """The extension's memory counts toward memory_size: a handler using 72 MB next to an
    extension holding 56 MB is Runtime.OutOfMemory (watch: the group's resident sum;
    cgroup: the extension is in it), and the extension gets SHUTDOWN (failure)."""
    if mode == "cgroup" and cgroup_parent() is None:
        pytest.skip("this host lets the daemon make no memory cgroup")
    record_to = tmp_path / "events.jsonl"
    ballast = BALLAST.format(python=sys.executable, record_to=str(record_to))
    write(tmp_path / "py" / "extensions" / "ballast", ballast).chmod(0o755)
    daemon = DaemonProcess(config(tmp_path, HALF_HOG), tmp_path, env={MODE_VARIABLE: mode}).start()
    try:
        daemon.wait_ready()
        (tmp_path / "inbox" / "a.json").write_text("{}")
        wait_for(lambda: failures(tmp_path), timeout=20, what="the out-of-memory failure")
        [oom] = daemon.wait_for_log("batch.failed", error_type="Runtime.OutOfMemory")
        assert oom["error_message"].endswith("Error: Runtime exited with error: signal: killed")
        [started] = daemon.events("runtime.environment_started", function="hungry")
        assert started["memory_watch"] == mode
        if mode == "rss":  # (the cgroup's OOM killer may have ended the extension itself)
            wait_for(lambda: "SHUTDOWN" in record_to.read_text(), what="SHUTDOWN")
            invoke, shutdown = (json.loads(line) for line in record_to.read_text().splitlines())
            assert invoke["eventType"] == "INVOKE"
            assert shutdown["shutdownReason"] == "failure"
        assert daemon.stop() == 0
    finally:
        daemon.kill()

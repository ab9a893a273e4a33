"""The admin endpoint of a running daemon: metrics and health while records flow, the
bearer token, readiness of a mapping that cannot connect, the status command, and the
notify protocol spoken to a fake systemd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import kafka_helpers as kafka
from tests.e2e.conftest import Workspace
from tests.exposition import per_mapping, value
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

FILTER_AND_RETRIES = """\
    maximum_retry_attempts: 1
    filter_criteria:
      filters:
        - pattern: '{"s3": {"object": {"key": [{"suffix": ".csv"}]}}}'
"""


def metrics_of(daemon: DaemonProcess, token: str | None = None) -> dict[str, float]:
    status, body = daemon.admin("/metrics", token=token)
    assert status == 200
    return dict(per_mapping(body)["inbox"])


def calls(workspace: Workspace, phase: str) -> list[dict[str, object]]:
    return [call for call in read_jsonl(workspace.record_file) if call["phase"] == phase]


def test_metrics_count_what_the_function_saw(workspace: Workspace) -> None:
    """Counters and histograms agree with what the handler recorded: invocations, records
    per invocation, successes, the failed record's two attempts, the filtered file."""
    daemon = workspace.daemon(workspace.write_config(mapping_extra=FILTER_AND_RETRIES)).wait_ready()
    for name in ("a.csv", "b.csv", "skip.txt"):
        (workspace.inbox / name).write_text(name)
    wait_for(
        lambda: (
            sorted(k for c in calls(workspace, "done") for k in c["keys"]) == ["a.csv", "b.csv"]
        ),
        what="the good files",
    )
    (workspace.inbox / "fail.csv").write_text("x")
    wait_for(lambda: any(workspace.failed.glob("*")), what="the failure record")

    def settled() -> dict[str, float]:
        found = metrics_of(daemon)
        return found if found["on_failure_destination_delivered_events_total"] == 1 else {}

    found = wait_for(settled, what="the destination counted")
    started = calls(workspace, "start")
    assert found["invocations_total"] == len(started)
    assert found["invoked_events_total"] == sum(len(call["keys"]) for call in started)  # type: ignore[arg-type]
    assert found["batch_size_count"] == len(started)
    assert found["invoke_duration_seconds_count"] == len(started)
    assert found["polled_events_total"] == 4
    assert found["filtered_out_events_total"] == 1
    assert found["succeeded_events_total"] == 2
    assert found["failed_invoke_events_total"] == 2
    assert found["retries_total"] == 1
    assert found["dropped_events_total"] == 0
    assert found["in_flight_batches"] == 0
    assert found["iterator_age_seconds"] >= 0
    status, body = daemon.admin("/metrics")
    assert value(body, "lambda_bridge_mapping_state", mapping="inbox", state="Enabled") == 1
    assert "# TYPE lambda_bridge_invoke_duration_seconds histogram" in body
    status, body = daemon.admin("/readyz")
    assert status == 200
    [mapping] = json.loads(body)["mappings"]
    assert mapping == {
        "name": "inbox",
        "State": "Enabled",
        "StateReason": "",
        "LastProcessingResult": "PROBLEM: Function call failed",
    }
    status, body = daemon.admin("/status")
    assert status == 200
    document = json.loads(body)
    assert (document["ready"], document["stopping"]) == (True, False)
    assert document["checkpoint_write_failures"] == 0
    [entry] = document["mappings"]
    assert (entry["name"], entry["state"], entry["reason"]) == ("inbox", "Enabled", "")
    assert entry["last_processing_result"] == "PROBLEM: Function call failed"
    assert entry["iterator_age_seconds"] >= 0 and entry["offset_lag"] == {}
    # The same counters as /metrics, named without the prefix and the _total suffix.
    counters = {f"{name}_total": count for name, count in entry["counters"].items()}
    assert counters == {
        name: count
        for name, count in found.items()
        if name.endswith("_total") and name != "failures_total"
    }
    assert entry["in_flight_batches"] == 0


def test_readiness_waits_for_every_enabled_mapping(workspace: Workspace) -> None:
    """A mapping whose broker is unreachable keeps the daemon not ready (503) and says
    why, while the process is alive and its other mapping works."""
    extra = """\
  - name: orders
    function: recorder
    source: {type: redis-streams, url: "redis://127.0.0.1:1/0", streams: [orders], group: g, starting_position: TRIM_HORIZON}
  - name: paused
    function: recorder
    enabled: false
    source: {type: files, path: ./paused, create_path: true}
"""
    config = workspace.write_config()
    config.write_text(config.read_text() + extra)
    daemon = workspace.daemon(config).wait_ready()
    assert daemon.admin("/healthz") == (200, '{"status": "alive"}')

    def not_ready() -> dict[str, object] | None:
        status, body = daemon.admin("/readyz")
        answer = json.loads(body)
        states = {m["name"]: m for m in answer["mappings"]}
        return answer if status == 503 and states["orders"]["StateReason"] else None

    answer = wait_for(not_ready, what="orders reported Connecting with its reason")
    states = {m["name"]: m for m in answer["mappings"]}  # type: ignore[union-attr]
    assert states["inbox"]["State"] == "Enabled"
    assert states["paused"]["State"] == "Disabled"
    assert states["orders"]["State"] == "Connecting"
    assert (
        "127.0.0.1:1" in states["orders"]["StateReason"]
        or "onnect" in states["orders"]["StateReason"]
    )
    (workspace.inbox / "a.csv").write_text("a")
    wait_for(lambda: calls(workspace, "done"), what="the working mapping delivers")


def test_a_token_guards_everything_but_liveness(workspace: Workspace) -> None:
    secret = "s3cret-token-for-tests"
    daemon = workspace.daemon(
        workspace.write_config(top_extra='http: {listen: "127.0.0.1:0", token: "${ADMIN_TOKEN}"}'),
        ADMIN_TOKEN=secret,
    ).wait_ready()
    assert daemon.admin("/healthz")[0] == 200
    for path in ("/readyz", "/metrics", "/status"):
        assert daemon.admin(path)[0] == 401
        assert daemon.admin(path, token="wrong")[0] == 401
        assert daemon.admin(path, token=secret)[0] == 200
    assert daemon.admin("/reload", method="POST")[0] == 401
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "status",
            "--url",
            daemon.admin_url(),
            "--token",
            secret,
            "--interval",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert daemon.stop() == 0
    assert not any(secret in line for line in daemon.raw_stderr)


def test_the_status_command_shows_each_mapping(workspace: Workspace) -> None:
    """`status --config` finds a daemon listening on a free port through state_dir."""
    config = workspace.write_config(mapping_extra=FILTER_AND_RETRIES)
    daemon = workspace.daemon(config).wait_ready()
    for n in range(3):
        (workspace.inbox / f"{n}.csv").write_text("x")
    wait_for(lambda: len(calls(workspace, "done")) >= 1, what="a delivery")
    env = {**os.environ, "LAMBDA_BRIDGE_HTTP_LISTEN": "127.0.0.1:0"}
    shown = subprocess.run(
        [sys.executable, "-m", "bridge", "status", "--config", str(config), "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workspace.root,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "daemon: ready"
    assert lines[1].split() == [
        "MAPPING",
        "STATE",
        "LAG",
        "POLLED/S",
        "INVOKED/S",
        "FAILED",
        "TO",
        "DLQ",
        "FILTERED",
        "LAST",
        "RESULT",
    ]
    row = lines[2].split()
    assert row[:2] == ["inbox", "Enabled"]
    assert row[-1] == "OK"
    assert daemon.stop() == 0


def test_catching_up_a_full_folder_is_reported(workspace: Workspace) -> None:
    for n in range(2500):
        (workspace.inbox / f"{n:05}.csv").write_text("x")
    daemon = workspace.daemon(workspace.write_config(mapping_extra="    batch_size: 1000\n"))
    [caught_up] = daemon.wait_for_log("files.caught_up", timeout=60)
    assert caught_up["files"] == 2500
    wait_for(
        lambda: sum(len(c["keys"]) for c in calls(workspace, "done")) == 2500,
        timeout=60,
        what="every file",
    )  # type: ignore[arg-type]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path may not fit.
    folder = tempfile.mkdtemp(prefix="lb-notify-", dir="/tmp")
    path = os.path.join(folder, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(20)
    yield receiver, path
    receiver.close()
    shutil.rmtree(folder, ignore_errors=True)


def next_message(receiver: socket.socket, wanted: str) -> list[str]:
    """Datagrams until one holds `wanted`; returns its lines."""
    while True:
        lines = receiver.recv(4096).decode().splitlines()
        if wanted in lines:
            return lines


def test_the_daemon_speaks_the_notify_protocol(
    workspace: Workspace, notify_socket: tuple[socket.socket, str]
) -> None:
    receiver, path = notify_socket
    daemon = workspace.daemon(workspace.write_config(), NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    ready = next_message(receiver, "READY=1")
    assert any(line.startswith("STATUS=1 mappings") for line in ready)
    assert f"MAINPID={daemon.process.pid}" in ready  # type: ignore[union-attr]
    next_message(receiver, "WATCHDOG=1")
    next_message(receiver, "WATCHDOG=1")
    # The status line follows the mapping from Connecting to Enabled.
    assert "STATUS=1 mappings: 1 Connecting" in ready
    next_message(receiver, "STATUS=1 mappings: 1 Enabled")
    daemon.signal(signal.SIGHUP)
    reloading = next_message(receiver, "RELOADING=1")
    assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
    next_message(receiver, "READY=1")
    daemon.signal(signal.SIGTERM)
    next_message(receiver, "STOPPING=1")
    assert daemon.wait() == 0


SLOW_KAFKA_HANDLER = """
import time


def handler(event, context):
    time.sleep(0.3)
"""


def test_kafka_offset_lag_falls_to_zero(tmp_path: Path, kafka_bootstrap: str) -> None:
    """OffsetLag per partition: the records between what the mapping has settled and the
    partition's end, reported while a backlog is worked off."""
    topic, group = kafka.unique("lag"), kafka.unique("group")
    kafka.create_topic(kafka_bootstrap, topic, 1)
    kafka.produce(kafka_bootstrap, topic, [(0, {"n": n}) for n in range(20)])
    (tmp_path / "slow.py").write_text(SLOW_KAFKA_HANDLER)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""\
state_dir: ./state
functions:
  slow: {{invoker: python, handler: slow.py:handler}}
mappings:
  - name: orders
    function: slow
    batch_size: 2
    source: {{type: kafka, bootstrap_servers: {kafka_bootstrap}, topics: [{topic}], consumer_group_id: {group}, starting_position: TRIM_HORIZON}}
"""
    )
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        partition = f"{topic}-0"

        def lag() -> float | None:
            return value(
                daemon.admin("/metrics")[1],
                "lambda_bridge_offset_lag",
                mapping="orders",
                partition=partition,
            )

        backlog = wait_for(
            lambda: (value := lag()) is not None and value > 0 and value, what="a positive lag"
        )
        assert 0 < backlog < 20
        wait_for(lambda: lag() == 0, timeout=30, what="the backlog worked off")
        assert daemon.stop() == 0
    finally:
        daemon.kill()

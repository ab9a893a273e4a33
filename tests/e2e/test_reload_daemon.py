"""Reloading a running daemon's config: added mappings start, removed ones stop, changed
ones restart without losing the batch they had in flight, unchanged ones are left alone,
and an invalid config is rejected while the running one stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


def folder_mapping(name: str, extra: str = "") -> str:
    return f"""\
  - name: {name}
    function: recorder
    source: {{type: files, path: ./{name}, create_path: true, stable_after_seconds: 0.1}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{extra}"""


def write(workspace: Workspace, *mappings: str) -> Path:
    path = workspace.root / "bridge.yaml"
    path.write_text(
        """\
state_dir: ./state
drain_timeout_seconds: 15
functions:
  recorder: {invoker: python, handler: handler.py:handler, timeout: 10}
mappings:
"""
        + "".join(mappings)
    )
    return path


def delivered(workspace: Workspace) -> list[str]:
    return sorted(
        key
        for call in read_jsonl(workspace.record_file)
        if call["phase"] == "done"
        for key in call["keys"]  # type: ignore[union-attr]
    )


def drop(workspace: Workspace, folder: str, name: str) -> None:
    target = workspace.root / folder
    target.mkdir(exist_ok=True)
    (target / name).write_text(name)


def reload_cli(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "reload", "--url", daemon.admin_url()],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_remove_change_and_keep_mappings_without_losing_records(workspace: Workspace) -> None:
    config = write(
        workspace, folder_mapping("alpha"), folder_mapping("beta"), folder_mapping("gamma")
    )
    daemon = workspace.daemon(config, SLOW_SECONDS="2").wait_ready(mappings=3)
    for folder in ("alpha", "beta", "gamma"):
        drop(workspace, folder, f"{folder}-1")
    wait_for(
        lambda: delivered(workspace) == ["alpha-1", "beta-1", "gamma-1"], what="the first files"
    )
    # alpha has a batch in flight when it is changed.
    drop(workspace, "alpha", "alpha-slow")
    wait_for(
        lambda: any("alpha-slow" in c["keys"] for c in read_jsonl(workspace.record_file)),
        what="the slow batch started",
    )  # type: ignore[operator]
    write(
        workspace,
        folder_mapping("alpha", "    batch_size: 5\n"),
        folder_mapping("gamma"),
        folder_mapping("delta"),
    )
    answer = reload_cli(daemon)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines() == [
        "started: delta",
        "stopped: beta",
        "restarted: alpha",
        "unchanged: gamma",
    ]
    for folder in ("alpha", "beta", "gamma", "delta"):
        drop(workspace, folder, f"{folder}-2")
    expected = ["alpha-1", "alpha-2", "alpha-slow", "beta-1", "delta-2", "gamma-1", "gamma-2"]
    wait_for(
        lambda: set(expected) <= set(delivered(workspace)), what="every file of a running mapping"
    )
    time.sleep(1.0)  # beta-2 would have been seen by now if beta still ran
    assert "beta-2" not in delivered(workspace)
    assert daemon.events("mapping.stopped", mapping="beta")
    # gamma was not touched: one start only.
    assert len(daemon.events("mapping.started", mapping="gamma")) == 1
    assert len(daemon.events("mapping.started", mapping="alpha")) == 2
    assert daemon.stop() == 0


def test_an_invalid_config_is_rejected_and_the_running_one_stays(workspace: Workspace) -> None:
    config = write(workspace, folder_mapping("alpha"))
    daemon = workspace.daemon(config).wait_ready()
    config.write_text(config.read_text() + "    batch_size: not-a-number\n")
    answer = reload_cli(daemon)
    assert answer.returncode == 2
    assert "bridge.yaml:" in answer.stderr and "batch_size" in answer.stderr
    assert "the running config stays" in answer.stderr
    # A change only a restart applies is rejected too.
    write(workspace, folder_mapping("alpha")).write_text(
        config.read_text()
        .replace("batch_size: not-a-number\n", "")
        .replace("state_dir: ./state", "state_dir: ./elsewhere")
    )
    answer = reload_cli(daemon)
    assert answer.returncode == 2 and "state_dir" in answer.stderr
    drop(workspace, "alpha", "after")
    wait_for(lambda: delivered(workspace) == ["after"], what="the running mapping still delivers")
    assert len(daemon.events("reload.rejected")) == 2
    assert len(daemon.events("mapping.started")) == 1
    assert daemon.stop() == 0


def test_sighup_reloads(workspace: Workspace) -> None:
    config = write(workspace, folder_mapping("alpha"))
    daemon = workspace.daemon(config).wait_ready()
    write(workspace, folder_mapping("alpha"), folder_mapping("beta"))
    daemon.signal(signal.SIGHUP)
    [applied] = daemon.wait_for_log("reload.applied")
    assert applied["started"] == ["beta"] and applied["unchanged"] == ["alpha"]
    drop(workspace, "beta", "b")
    wait_for(lambda: delivered(workspace) == ["b"], what="the added mapping delivers")
    assert daemon.stop() == 0


def test_invoke_runs_a_function_once(workspace: Workspace, tmp_path: Path) -> None:
    config = write(workspace, folder_mapping("alpha"))
    event = subprocess.run(
        [sys.executable, "-m", "bridge", "generate-event", "files"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "event.json").write_text(event)
    env = {**os.environ, "RECORD_TO": str(workspace.record_file)}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "invoke",
            "recorder",
            "--config",
            str(config),
            "--event",
            str(tmp_path / "event.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workspace.root,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    assert "duration: " in ran.stdout and '"batchItemFailures": []' in ran.stdout
    assert "function error" not in ran.stdout
    [call] = read_jsonl(workspace.record_file)[:1]
    assert call["phase"] == "start"
    failing = event.replace('"key": "', '"key": "fail-', 1)
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "invoke",
            "recorder",
            "--config",
            str(config),
            "--event",
            "-",
        ],
        input=failing,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workspace.root,
        env=env,
    )
    assert failed.returncode == 1
    assert "function error: Unhandled" in failed.stdout
    assert '"errorType": "ValueError"' in failed.stdout

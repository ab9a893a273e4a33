"""`lambda-bridge invoke --invocation-type/--log-type/--url`: here, and through a running
daemon's Lambda API (signed with the config's credentials when it listens beyond loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_api_invoke import start

pytestmark = pytest.mark.e2e


def cli(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "invoke", "--config", str(root / "bridge.yaml"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_invoke_here_with_the_log_tail_and_dry_run(tmp_path: Path) -> None:
    daemon, _url = start(tmp_path, '{listen: "127.0.0.1:0"}')
    daemon.kill()  # only its files are wanted: these invocations need no daemon
    ran = cli(tmp_path, "talker", "--log-type", "Tail")
    assert ran.returncode == 0, ran.stderr
    log = ran.stdout.split("log (last 4 KB):\n", 1)[1]
    assert "handling the event" in log and "REPORT RequestId:" in log
    python = cli(tmp_path, "echo", "--log-type", "Tail")
    assert python.returncode == 0 and "(this function's invoker keeps no log)" in python.stdout
    dry = cli(tmp_path, "echo", "--invocation-type", "DryRun")
    assert dry.returncode == 0 and "dry run: echo would be invoked" in dry.stdout
    assert "response:" not in dry.stdout


def test_invoke_through_a_daemon_beyond_loopback_is_signed(tmp_path: Path) -> None:
    secret = "cli-secret-0123456789"
    api = (
        '{listen: "0.0.0.0:0", credentials: '
        "{access_key_id: AKIDBRIDGE, secret_access_key: '${API_SECRET}'}}"
    )
    daemon, url = start(tmp_path, api, API_SECRET=secret)
    try:
        ran = cli(tmp_path, "echo", "--url", url, env={"API_SECRET": secret})
        assert ran.returncode == 0, ran.stderr
        assert "executed version: $LATEST" in ran.stdout
        assert '"echo": {}' in ran.stdout
        failed = cli(tmp_path, "echo", "--url", url, "--event", "-", env={"API_SECRET": secret})
        assert failed.returncode == 2  # stdin was empty: refused before any request
        wrong = cli(tmp_path, "echo", "--url", url, env={"API_SECRET": "not-it"})
        assert wrong.returncode == 2
        assert wrong.stderr.startswith("error: InvalidSignatureException (403)")
        assert len(wrong.stderr.strip().splitlines()) == 1
        tail = cli(
            tmp_path, "talker", "--url", url, "--log-type", "Tail", env={"API_SECRET": secret}
        )
        assert tail.returncode == 0 and "handling the event" in tail.stdout
    finally:
        daemon.stop()
    assert secret not in "".join(daemon.raw_stderr) + daemon.stdout


def test_event_needs_a_daemon_api(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "bridge.yaml").write_text(
        "functions:\n  echo: {invoker: python, handler: handler.py:handler}\n"
    )
    ran = cli(tmp_path, "echo", "--invocation-type", "Event")
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: the config has no api: section")
    unreachable = cli(tmp_path, "echo", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot reach the daemon's API" in unreachable.stderr

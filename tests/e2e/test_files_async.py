"""The files source behaves like S3 invoking Lambda, through `lambda-bridge run`: files
are independent of each other, each event holds one record, and a failing event is
retried twice and then sent to the on-failure destination (esm-reference.md 1.10, 12)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


def test_a_file_that_always_fails_does_not_delay_a_file_dropped_after_it(
    workspace: Workspace,
) -> None:
    """With the default settings, a file whose handler fails slowly (2 s per attempt) is
    tried three times and its record written to the destination; a file dropped after it
    is delivered meanwhile, on its own, long before the failing one is given up."""
    config = workspace.write_config()
    daemon = workspace.daemon(config, SLOW_SECONDS="2").wait_ready()
    (workspace.inbox / "slow-fail.txt").write_text("x")
    wait_for(lambda: read_jsonl(workspace.record_file), what="the failing file's first attempt")
    (workspace.inbox / "good.txt").write_text("y")

    def done() -> list[list[str]]:
        return [
            call["keys"] for call in read_jsonl(workspace.record_file) if call["phase"] == "done"
        ]

    wait_for(lambda: done() == [["good.txt"]], what="the good file")
    delivered_at = time.monotonic()
    failure_file = workspace.failed / "inbox.jsonl"
    [failure] = wait_for(lambda: read_jsonl(failure_file), timeout=30, what="the failure record")
    assert time.monotonic() - delivered_at > 2, "the good file waited for the failing one"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["FilesBatchInfo"]["keys"] == ["slow-fail.txt"]
    starts = [
        call["keys"] for call in read_jsonl(workspace.record_file) if call["phase"] == "start"
    ]
    assert starts.count(["slow-fail.txt"]) == 3
    assert all(len(keys) == 1 for keys in starts)
    assert daemon.stop() == 0


RECORDING_SLEEPER = """
import json, os, time
from urllib.parse import unquote_plus


def handler(event, context):
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in event["Records"]]
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps({"keys": keys, "at": time.time(), "remaining": context.get_remaining_time_in_millis()}) + "\\n")
    time.sleep(1.5)
"""


def test_with_reserved_concurrency_nothing_runs_after_it_was_given_up(tmp_path: Path) -> None:
    """reserved_concurrency 1 and a handler slower than its 1 s timeout: each attempt's
    time runs from when it starts (never spent waiting for the worker the timed-out one
    still holds), and no attempt runs after the record was written to the destination."""
    (tmp_path / "handler.py").write_text(RECORDING_SLEEPER)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        """\
state_dir: ./state
functions:
  slow: {invoker: python, handler: handler.py:handler, timeout: 1, reserved_concurrency: 1}
destinations:
  failed: {type: file, path: ./failed}
mappings:
  - name: inbox
    function: slow
    source: {type: files, path: ./inbox, stable_after_seconds: 0.2}
    maximum_retry_attempts: 1
    retry_backoff: {initial_seconds: 0.05, max_seconds: 0.1}
    destination_config: {on_failure: {destination: failed}}
"""
    )
    record_file = tmp_path / "calls.jsonl"
    daemon = DaemonProcess(config, tmp_path, env={"RECORD_TO": str(record_file)}).start()
    try:
        daemon.wait_ready()
        (tmp_path / "inbox" / "big.csv").write_text("x")
        [failure] = wait_for(
            lambda: read_jsonl(tmp_path / "failed" / "inbox.jsonl"),
            timeout=30,
            what="the failure record",
        )
        given_up = datetime.fromisoformat(failure["timestamp"].replace("Z", "+00:00")).timestamp()
        time.sleep(2.0)  # longer than the timed-out handler keeps the worker
        starts = read_jsonl(record_file)
        assert failure["requestContext"]["approximateInvokeCount"] == 2
        assert len(starts) == 2, starts
        assert all(start["at"] <= given_up for start in starts)
        assert all(start["remaining"] > 900 for start in starts)
        assert daemon.stop() == 0
    finally:
        daemon.kill()

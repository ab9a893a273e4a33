"""The files source behaves like S3 invoking Lambda, through `lambda-bridge run`: files
are independent of each other, each event holds one record, and a failing event is
retried twice and then sent to the on-failure destination (esm-reference.md 1.10, 12)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Workspace
from tests.support import read_jsonl, wait_for

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

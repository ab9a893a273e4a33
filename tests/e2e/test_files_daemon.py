"""lambda-bridge run as a process, with the files source and a recording Python handler."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from aws_lambda_powertools.utilities.parser.models import S3Model

from tests.e2e.conftest import Workspace
from tests.support import read_jsonl, wait_for


def delivered_keys(workspace: Workspace, phase: str = "done") -> list[str]:
    return [
        key
        for call in read_jsonl(workspace.record_file)
        if call["phase"] == phase
        for key in call["keys"]
    ]


def started_events(workspace: Workspace) -> list[dict[str, Any]]:
    return [call["event"] for call in read_jsonl(workspace.record_file) if call["phase"] == "start"]


def drop(workspace: Workspace, *names: str, content: str = "data") -> None:
    for name in names:
        path = workspace.inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{content} {name}")


def test_dropped_files_reach_the_handler_as_s3_batches(workspace: Workspace) -> None:
    """Files become S3 event notification records, batched up to batch_size, each event
    valid against the strict S3 model of aws-lambda-powertools."""
    config = workspace.write_config(
        mapping_extra="    batch_size: 3\n    maximum_batching_window_in_seconds: 1\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    names = [f"file-{index}.txt" for index in range(7)] + ["sub dir/report 1.csv"]
    drop(workspace, *names)
    wait_for(lambda: sorted(delivered_keys(workspace)) == sorted(names), what="all files delivered")
    events = started_events(workspace)
    for event in events:
        S3Model.model_validate(event)
        assert 1 <= len(event["Records"]) <= 3
    keys = [record["s3"]["object"]["key"] for event in events for record in event["Records"]]
    assert "sub+dir/report+1.csv" in keys
    assert daemon.stop() == 0
    assert daemon.events("daemon.stopped")


def test_failing_file_lands_in_the_destination_after_the_retries(workspace: Workspace) -> None:
    """With bisect and two retries a failing file is invoked three times on its own, then
    its failure record (with the event as payload) is written; the other files succeed."""
    config = workspace.write_config(
        mapping_extra="    maximum_retry_attempts: 2\n    bisect_batch_on_function_error: true\n    maximum_batching_window_in_seconds: 1\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    drop(workspace, "ok-1.txt", "please-fail.txt", "ok-2.txt")
    failures_file = workspace.failed / "inbox.jsonl"
    [failure] = wait_for(lambda: read_jsonl(failures_file), what="failure record")
    wait_for(
        lambda: sorted(delivered_keys(workspace)) == ["ok-1.txt", "ok-2.txt"],
        what="good files delivered",
    )
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert [record["s3"]["object"]["key"] for record in failure["payload"]["Records"]] == [
        "please-fail.txt"
    ]
    alone = [
        event
        for event in started_events(workspace)
        if [r["s3"]["object"]["key"] for r in event["Records"]] == ["please-fail.txt"]
    ]
    assert len(alone) == 3
    assert daemon.stop() == 0


def test_partial_batch_response_retries_from_the_first_failed_item(workspace: Workspace) -> None:
    """ReportBatchItemFailures: records before the first reported one are done; the rest
    is retried; when retries run out only the remaining records are discarded."""
    config = workspace.write_config(
        mapping_extra="    function_response_types: [ReportBatchItemFailures]\n    maximum_retry_attempts: 1\n    maximum_batching_window_in_seconds: 2\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    drop(workspace, "a.txt")
    time.sleep(0.05)
    drop(workspace, "b-partial.txt")
    failures_file = workspace.failed / "inbox.jsonl"
    [failure] = wait_for(lambda: read_jsonl(failures_file), what="failure record")
    assert failure["responseContext"]["functionError"] is None
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert [record["s3"]["object"]["key"] for record in failure["payload"]["Records"]] == [
        "b-partial.txt"
    ]
    assert daemon.stop() == 0


def test_sigterm_mid_batch_drains_and_restart_loses_nothing(workspace: Workspace) -> None:
    """SIGTERM while a batch is running: the batch finishes, checkpoints are saved, the
    daemon exits 0; after a restart every file has been delivered."""
    config = workspace.write_config(mapping_extra="    batch_size: 2\n")
    daemon = workspace.daemon(config).wait_ready()
    drop(workspace, "slow-1.txt")
    wait_for(lambda: started_events(workspace), what="slow batch started")
    drop(workspace, "later-1.txt", "later-2.txt", "later-3.txt")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert "slow-1.txt" in delivered_keys(workspace)
    second = workspace.daemon(config).wait_ready()
    wait_for(
        lambda: (
            {"slow-1.txt", "later-1.txt", "later-2.txt", "later-3.txt"}
            <= set(delivered_keys(workspace))
        ),
        what="all files after restart",
    )
    assert delivered_keys(workspace).count("slow-1.txt") == 1
    assert second.stop() == 0


def test_changes_while_stopped_are_delivered_after_restart(workspace: Workspace) -> None:
    """Created, modified and deleted files are reported after a restart; unchanged files are not."""
    config = workspace.write_config()
    daemon = workspace.daemon(config).wait_ready()
    drop(workspace, "keep.txt", "change.txt", "remove.txt")
    wait_for(lambda: len(delivered_keys(workspace)) == 3, what="first delivery")
    assert daemon.stop() == 0
    workspace.record_file.unlink()
    (workspace.inbox / "change.txt").write_text("changed content, longer than before")
    (workspace.inbox / "remove.txt").unlink()
    drop(workspace, "new.txt")
    second = workspace.daemon(config).wait_ready()
    wait_for(lambda: len(delivered_keys(workspace)) >= 3, what="catch-up delivery")
    time.sleep(1)
    records = [record for event in started_events(workspace) for record in event["Records"]]
    seen = sorted((record["eventName"], record["s3"]["object"]["key"]) for record in records)
    assert seen == [
        ("ObjectCreated:Put", "change.txt"),
        ("ObjectCreated:Put", "new.txt"),
        ("ObjectRemoved:Delete", "remove.txt"),
    ]
    assert second.stop() == 0


def test_kill_9_mid_run_then_restart_loses_nothing(workspace: Workspace) -> None:
    """After kill -9 nothing acknowledged is lost: a restart delivers every file at least once."""
    config = workspace.write_config(mapping_extra="    batch_size: 5\n")
    daemon = workspace.daemon(config).wait_ready()
    names = [f"n-{index:03d}.txt" for index in range(30)] + ["slow-x.txt"]
    drop(workspace, *names)
    wait_for(lambda: started_events(workspace), what="first batch")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.wait()
    second = workspace.daemon(config).wait_ready()
    wait_for(
        lambda: set(names) <= set(delivered_keys(workspace)),
        timeout=30,
        what="every file after restart",
    )
    assert second.stop() == 0


def test_second_signal_exits_at_once(workspace: Workspace) -> None:
    """A second SIGTERM during the drain exits immediately, without waiting for the batch."""
    config = workspace.write_config()
    daemon = workspace.daemon(config, SLOW_SECONDS="30").wait_ready()
    drop(workspace, "slow-forever.txt")
    wait_for(lambda: started_events(workspace), what="slow batch started")
    daemon.signal(signal.SIGTERM)
    daemon.wait_for_log("daemon.stopping")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5

"""Failures nobody saw, seen: a checkpoint store that cannot write, an on-failure
destination that cannot be reached or refuses for good, and acknowledgements the broker
refuses, each through `lambda-bridge run` against the real thing. Each shows in the
mapping's state and StateReason, makes /readyz answer 503, is counted in
`lambda_bridge_failures_total` (or the store's counter), and loses nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.e2e import aws_helpers as aws
from tests.e2e import redis_helpers as rd
from tests.e2e.conftest import Workspace
from tests.exposition import per_mapping, value
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e


def readiness(daemon: DaemonProcess) -> tuple[int, dict[str, Any]]:
    status, body = daemon.admin("/readyz")
    return status, json.loads(body)


def mapping_state(
    daemon: DaemonProcess, state: str, reason_part: str = ""
) -> dict[str, Any] | None:
    status, body = readiness(daemon)
    [mapping] = body["mappings"]
    if mapping["State"] == state and reason_part in mapping["StateReason"]:
        assert status == (200 if state in ("Enabled", "Disabled") else 503)
        return mapping
    return None


def delivered_keys(workspace: Workspace) -> list[str]:
    return [
        key
        for call in read_jsonl(workspace.record_file)
        if call["phase"] == "done"
        for key in call["keys"]
    ]


def test_a_checkpoint_store_that_cannot_write_is_reported_and_catches_up(
    workspace: Workspace,
) -> None:
    """With the SQLite file locked by another process, checkpoints cannot be written:
    the mapping goes on delivering but is Degraded with the reason and /readyz says 503;
    the store's failures are counted. Once the lock is gone the staged positions are
    written, the mapping is Enabled again, and a restart does not deliver again."""
    config = workspace.write_config(
        top_extra="checkpoint_store: {type: sqlite, flush_interval_seconds: 0.1}"
    )
    daemon = workspace.daemon(config).wait_ready()
    (workspace.inbox / "a.txt").write_text("a")
    wait_for(lambda: delivered_keys(workspace) == ["a.txt"], what="a.txt")
    locker = sqlite3.connect(workspace.root / "state" / "checkpoints.sqlite3", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        (workspace.inbox / "b.txt").write_text("b")
        wait_for(lambda: delivered_keys(workspace) == ["a.txt", "b.txt"], what="b.txt")
        found = wait_for(
            lambda: mapping_state(daemon, "Degraded", "database is locked"),
            timeout=30,
            what="Degraded",
        )
        assert found["StateReason"].startswith("checkpoint store: cannot write checkpoints to ")
        written = value(
            daemon.admin("/metrics")[1], "lambda_bridge_checkpoint_write_failures_total"
        )
        assert written is not None and written >= 1
        assert daemon.events("checkpoints.write_failed")
    finally:
        locker.rollback()
        locker.close()
    wait_for(lambda: mapping_state(daemon, "Enabled"), timeout=60, what="Enabled again")
    daemon.wait_for_log("checkpoints.write_recovered")
    daemon.kill()
    again = workspace.daemon(config).wait_ready()
    # Both files are known from the checkpoints: nothing to examine, nothing delivered.
    time.sleep(1.5)
    assert delivered_keys(workspace) == ["a.txt", "b.txt"]
    assert again.stop() == 0


def sqs_destination_config(workspace: Workspace, queue_url: str, endpoint: str) -> Path:
    path = workspace.write_config(mapping_extra="    maximum_retry_attempts: 0")
    text = path.read_text().replace(
        "  failed: {type: file, path: ./failed}",
        f"  failed: {{type: sqs, queue_url: '{queue_url}', endpoint_url: '{endpoint}'}}",
    )
    path.write_text(text)
    return path


def test_a_destination_out_of_reach_degrades_the_mapping_then_one_gone_fails_it(
    workspace: Workspace, aws_endpoint: str
) -> None:
    """An SQS on-failure destination that cannot be reached: the failure record is retried
    with backoff, the mapping Degraded with the reason meanwhile, and written once SQS is
    back. A destination queue that was deleted refuses for good: the mapping fails with
    the reason instead of retrying in silence, and the record is not settled (a restart
    tries it again)."""
    queue_url, _ = aws.new_queue(aws_endpoint)
    moto_port = int(aws_endpoint.rsplit(":", 1)[1])
    proxy = services.FlakyProxy(moto_port).start()
    try:
        config = sqs_destination_config(workspace, queue_url, f"http://127.0.0.1:{proxy.port}")
        daemon = workspace.daemon(config).wait_ready()
        proxy.cut()
        (workspace.inbox / "fail-1.txt").write_text("1")
        found = wait_for(
            lambda: mapping_state(daemon, "Degraded", "destination: "), timeout=30, what="Degraded"
        )
        assert "SendMessage failed" in found["StateReason"]
        proxy.restore()
        wait_for(lambda: mapping_state(daemon, "Enabled"), timeout=30, what="Enabled again")
        [written] = wait_for(lambda: aws.drain(aws_endpoint, queue_url), what="the failure record")
        assert written["requestContext"]["condition"] == "RetryAttemptsExhausted"
        failures = per_mapping(daemon.admin("/metrics")[1])["inbox"]["failures_total"]
        assert failures >= 1

        aws.client("sqs", aws_endpoint).delete_queue(QueueUrl=queue_url)
        (workspace.inbox / "fail-2.txt").write_text("2")
        found = wait_for(
            lambda: mapping_state(daemon, "Failed", "queue does not exist"),
            timeout=30,
            what="Failed",
        )
        assert daemon.events("destination.failed", permanent=True)
        assert daemon.stop() == 0
        checkpoints = sqlite3.connect(workspace.root / "state" / "checkpoints.sqlite3")
        saved = {row[0] for row in checkpoints.execute("SELECT partition FROM checkpoints")}
        checkpoints.close()
        assert "fail-1.txt" in saved and "fail-2.txt" not in saved
    finally:
        proxy.close()


def test_acknowledgements_refused_for_good_fail_the_mapping_visibly(
    tmp_path: Path, redis_url: str
) -> None:
    """A Redis user allowed to read a stream but not to XACK: the entry is delivered, its
    acknowledgement is refused (NOPERM), and the mapping fails with that reason (it
    does not restart for ever, and the entry stays pending for the next try)."""
    admin = rd.client(redis_url)
    user, password = rd.unique("reader"), "secret-pw"
    stream, group = rd.unique("orders"), rd.unique("group")
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-xack"
    )
    try:
        url = redis_url.replace("redis://", f"redis://{user}:{password}@", 1)
        (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"""\
state_dir: ./state
functions:
  noop: {{invoker: python, handler: handler.py:handler}}
mappings:
  - name: orders
    function: noop
    source: {{type: redis-streams, url: '{url}', streams: [{stream}], group: {group}, starting_position: TRIM_HORIZON, block_seconds: 0.2}}
"""
        )
        daemon = DaemonProcess(config, tmp_path).start()
        try:
            daemon.wait_ready()
            rd.add(redis_url, stream, [{"n": 1}])
            found = wait_for(
                lambda: mapping_state(daemon, "Failed", "no permissions to run the 'xack' command"),
                timeout=30,
                what="Failed",
            )
            assert password not in found["StateReason"]
            pending = admin.xpending(stream, group)
            assert pending["pending"] == 1
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()

"""lambda-bridge run as a process on a folder, when it is killed with an event in flight
and when file names are not UTF-8: nothing is lost, nothing stalls."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.e2e.conftest import Workspace
from tests.support import read_jsonl, wait_for

# The SQLite checkpoint store flushes every 0.5 s; the touch is looked at within 0.2 s.
PAST_A_FLUSH_SECONDS = 1.5


def calls(workspace: Workspace, phase: str) -> list[dict[str, object]]:
    return [call for call in read_jsonl(workspace.record_file) if call["phase"] == phase]


def event_keys(workspace: Workspace) -> list[str]:
    """The keys exactly as the events carried them (URL-encoded), one per delivery."""
    return [
        record["s3"]["object"]["key"]
        for call in calls(workspace, "start")
        for record in call["event"]["Records"]  # type: ignore[index]
    ]


def done_keys(workspace: Workspace) -> list[str]:
    return [key for call in calls(workspace, "done") for key in call["keys"]]  # type: ignore[attr-defined]


def make(inbox: Path, raw: bytes, content: bytes = b"data") -> Path:
    path = Path(os.fsdecode(os.fsencode(inbox) + b"/" + raw))
    path.write_bytes(content)
    return path


def test_touch_during_a_slow_invocation_then_kill_9_redelivers_the_create(
    workspace: Workspace,
) -> None:
    """A file's create event is in flight (slow handler); the file is touched, keeping its
    content; the checkpoint store flushes; kill -9. After a restart the create event is
    delivered: the touch did not checkpoint the file past its unsettled event."""
    config = workspace.write_config()
    daemon = workspace.daemon(config, SLOW_SECONDS="30").wait_ready()
    path = make(workspace.inbox, b"slow-touched.txt")
    wait_for(lambda: "slow-touched.txt" in event_keys(workspace), what="invocation started")
    past = time.time_ns() - 100 * 10**9
    os.utime(path, ns=(past, past))
    # Nothing is observable by design (the touch saves nothing): wait past a flush.
    time.sleep(PAST_A_FLUSH_SECONDS)
    daemon.kill()
    assert done_keys(workspace) == []
    second = workspace.daemon(config, SLOW_SECONDS="0").wait_ready()
    wait_for(lambda: done_keys(workspace) == ["slow-touched.txt"], what="create redelivered")
    assert second.stop() == 0


def test_names_that_are_not_utf8_are_delivered_and_not_again_after_restart(
    workspace: Workspace,
) -> None:
    """Files named with bytes that are not UTF-8 reach the handler with their key
    URL-encoded from those bytes, one that fails lands in the destination with its key
    shown, the mapping stays Enabled, and a restart delivers none of them again."""
    config = workspace.write_config(
        mapping_extra="    batch_size: 1\n    maximum_retry_attempts: 0\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    make(workspace.inbox, b"bad-\xff\xfe.txt")
    make(workspace.inbox, b"good.txt")
    make(workspace.inbox, b"fail-\xff.txt")
    failures_file = workspace.failed / "inbox.jsonl"
    [failure] = wait_for(lambda: read_jsonl(failures_file), what="failure record")
    wait_for(lambda: len(done_keys(workspace)) == 2, what="the other two delivered")
    assert sorted(event_keys(workspace)) == ["bad-%FF%FE.txt", "fail-%FF.txt", "good.txt"]
    assert failure["FilesBatchInfo"]["keys"] == ["fail-\\xff.txt"]
    [failed_record] = failure["payload"]["Records"]
    assert failed_record["s3"]["object"]["key"] == "fail-%FF.txt"
    status, body = daemon.admin("/readyz")
    assert status == 200
    assert [mapping["State"] for mapping in json.loads(body)["mappings"]] == ["Enabled"]
    assert not daemon.events("mapping.source_failed")
    assert daemon.stop() == 0

    second = workspace.daemon(config).wait_ready()
    make(workspace.inbox, b"after-restart.txt")
    wait_for(lambda: "after-restart.txt" in done_keys(workspace), what="a new file")
    assert sorted(event_keys(workspace)) == [
        "after-restart.txt",
        "bad-%FF%FE.txt",
        "fail-%FF.txt",
        "good.txt",
    ]
    assert len(read_jsonl(failures_file)) == 1
    assert second.stop() == 0

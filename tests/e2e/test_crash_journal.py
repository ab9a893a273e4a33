"""A python handler that ends the daemon's process cannot put it into a crash loop: the
invocation it was in is in the journal, and when its records come again after the
restart that counts as a failed attempt (Runtime.ExitError), so the usual retry and
on-failure destination rules end it. Restarts are done by the test, as systemd's
Restart=on-failure would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import redis_helpers as rd
from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = pytest.mark.e2e

EXITING_HANDLER = '''
"""Records each record; ends the whole process (os._exit) for *exit* ones, takes a
second for *slow* ones."""
import json, os, time
from urllib.parse import unquote_plus

LOG = os.environ["RECORD_TO"]


def names(event):
    for record in event["Records"]:
        if "s3" in record:
            yield unquote_plus(record["s3"]["object"]["key"])
        else:
            yield json.loads(record["redis"]["fields"]["body"])["name"]


def handler(event, context):
    found = list(names(event))
    with open(LOG, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "names": found}) + "\\n")
    if any("exit" in name for name in found):
        os._exit(3)
    if any("slow" in name for name in found):
        time.sleep(1)
    with open(LOG, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "done": found}) + "\\n")
'''


def run_until(
    start: Callable[[], DaemonProcess], done: Callable[[], Any], limit: int = 6
) -> list[int]:
    """Start the daemon again each time it exits, until `done()`; the exit codes seen."""
    codes: list[int] = []
    daemon = start()
    try:
        while not done():
            process = daemon.process
            assert process is not None
            if process.poll() is None:
                wait_for(
                    lambda process=process: done() or process.poll() is not None,  # type: ignore[misc]
                    timeout=30,
                    what="an exit or the end",
                )
                continue
            codes.append(daemon.wait())
            assert len(codes) <= limit, f"still crashing after {codes}"
            daemon = start()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    return codes


def test_a_handler_that_exits_the_process_ends_in_the_destination(workspace: Workspace) -> None:
    """A file whose handler ends the process: three runs die in it (the first attempt and
    two retries, the files default), the fourth counts the third crash, gives the event up
    to the on-failure destination as RetryAttemptsExhausted with Runtime.ExitError, and
    goes on. A slow file whose invocation ran beside it each time was a bystander: it is
    delivered again without counting attempts, and succeeds."""
    (workspace.root / "handler.py").write_text(EXITING_HANDLER)
    config = workspace.write_config()
    (workspace.inbox / "exit-now.txt").write_text("x")
    (workspace.inbox / "slow-fine.txt").write_text("y")
    failures = workspace.failed / "inbox.jsonl"
    codes = run_until(lambda: workspace.daemon(config).wait_ready(), lambda: read_jsonl(failures))
    assert codes == [3, 3, 3]
    [failure] = read_jsonl(failures)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["FilesBatchInfo"]["keys"] == ["exit-now.txt"]
    calls = read_jsonl(workspace.record_file)
    assert sum(call.get("names") == ["exit-now.txt"] for call in calls) == 3
    wait_for(
        lambda: (
            ["slow-fine.txt"] in [call.get("done") for call in read_jsonl(workspace.record_file)]
        ),
        what="the slow file",
    )
    last = workspace.daemons[-1]
    [counted] = last.events("invocation.crashed")
    assert counted["ended_the_process"] is True
    assert last.events("batch.crashed_before")
    bystanders = [
        event for daemon in workspace.daemons for event in daemon.events("invocation.interrupted")
    ]
    assert bystanders, "the slow file never ran beside the exiting one"


def test_a_crash_loop_on_a_redis_stream_ends_and_the_stream_goes_on(
    tmp_path: Path, redis_url: str
) -> None:
    """The same on an ordered stream with retries set to 1: the entry that ends the process
    is tried twice, then given up with its failure record; later entries are delivered."""
    (tmp_path / "handler.py").write_text(EXITING_HANDLER)
    record_file = tmp_path / "calls.jsonl"
    stream, group = rd.unique("orders"), rd.unique("group")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""\
state_dir: ./state
functions:
  f: {{invoker: python, handler: handler.py:handler}}
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: orders
    function: f
    source: {{type: redis-streams, url: '{redis_url}', streams: [{stream}], group: {group}, starting_position: TRIM_HORIZON, block_seconds: 0.2, claim_idle_after_seconds: 0.2, lease_ttl_seconds: 1}}
    batch_size: 1
    maximum_retry_attempts: 1
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.1}}
    destination_config: {{on_failure: {{destination: failed}}}}
"""
    )
    rd.add(redis_url, stream, [{"name": "a"}, {"name": "exit-b"}, {"name": "c"}])
    failures = tmp_path / "failed" / "orders.jsonl"
    daemons: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path, env={"RECORD_TO": str(record_file)}).start()
        daemons.append(daemon)
        return daemon.wait_ready()

    def finished() -> bool:
        return bool(read_jsonl(failures)) and ["c"] in [
            call.get("names") for call in read_jsonl(record_file)
        ]

    codes = run_until(start, finished)
    assert codes == [3, 3]
    [failure] = read_jsonl(failures)
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    payload = failure["payload"]["Records"][0]["redis"]["fields"]["body"]
    assert json.loads(payload) == {"name": "exit-b"}
    names = [call["names"] for call in read_jsonl(record_file) if "names" in call]
    assert names.count(["exit-b"]) == 2 and names.count(["c"]) == 1

"""A Python handler that raises what is not an Exception cannot take the daemon down."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Workspace
from tests.support import read_jsonl, wait_for

pytestmark = pytest.mark.e2e

INTERRUPTING_HANDLER = """
import json, os

LOG = os.environ["RECORD_TO"]


{prefix}def handler(event, context):
    keys = [r["s3"]["object"]["key"] for r in event["Records"]]
    with open(LOG, "a") as out:
        out.write(json.dumps({{"keys": keys}}) + "\\n")
    if any("interrupt" in key for key in keys):
        raise KeyboardInterrupt("raised by the handler")
    return None
"""


@pytest.mark.parametrize("prefix", ["", "async "], ids=["sync", "async"])
def test_keyboard_interrupt_from_a_handler_is_a_function_error(
    workspace: Workspace, prefix: str
) -> None:
    """KeyboardInterrupt raised by a handler (on a worker thread or on the loop) fails the
    batch like any error: it is retried `maximum_retry_attempts` times, its failure record
    reaches the destination, other files are still delivered, and the daemon stops
    cleanly with no traceback in its log."""
    (workspace.root / "handler.py").write_text(INTERRUPTING_HANDLER.format(prefix=prefix))
    config = workspace.write_config(
        mapping_extra="    maximum_retry_attempts: 1\n    bisect_batch_on_function_error: true\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    (workspace.inbox / "interrupt.txt").write_text("stop")
    [failure] = wait_for(
        lambda: read_jsonl(workspace.failed / "inbox.jsonl"), what="the failure record"
    )
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responseContext"]["functionError"] == "Unhandled"
    [record] = failure["payload"]["Records"]
    assert record["s3"]["object"]["key"] == "interrupt.txt"
    (workspace.inbox / "after.txt").write_text("fine")
    wait_for(
        lambda: any(call["keys"] == ["after.txt"] for call in read_jsonl(workspace.record_file)),
        what="the next file delivered",
    )
    interrupted = [c for c in read_jsonl(workspace.record_file) if c["keys"] == ["interrupt.txt"]]
    assert len(interrupted) == 2
    assert daemon.stop() == 0
    assert "Traceback" not in "".join(daemon.raw_stderr)

"""Extensions of the `runtime` invoker end to end: a real `lambda-bridge run` daemon runs a
package whose `extensions/recorder` (a shell script using curl) registers with the
Extensions API and records each event it gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.runtime_support import write
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
while true; do
  curl -sS -D "$HEADERS" -o /dev/null "$API/invocation/next"
  REQUEST_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d: -f2 | tr -d '[:space:]')"
  echo "answering $REQUEST_ID"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d '{"ok": true}'
done
"""

# Registers for INVOKE and SHUTDOWN, appends each event to $RECORD_TO, and holds each
# invocation until the test creates $HOLD_DIR/release.
RECORDER = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
HEADERS="$(mktemp)"
curl -sS -D "$HEADERS" -o "$HOLD_DIR/registered.json" -X POST "$API/register" \
  -H 'Lambda-Extension-Name: recorder' -d '{"events": ["INVOKE", "SHUTDOWN"]}'
ID="$(grep -i '^Lambda-Extension-Identifier:' "$HEADERS" | cut -d: -f2 | tr -d '[:space:]')"
while true; do
  EVENT="$(curl -sS -H "Lambda-Extension-Identifier: $ID" "$API/event/next")"
  echo "$EVENT" >> "$RECORD_TO"
  case "$EVENT" in *SHUTDOWN*) exit 0 ;; esac
  touch "$HOLD_DIR/holding"
  while [ ! -e "$HOLD_DIR/release" ]; do sleep 0.05; done
  rm -f "$HOLD_DIR/release" "$HOLD_DIR/holding"
done
"""


def recorded(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_an_extension_gets_invoke_and_shutdown(tmp_path: Path) -> None:
    """The extension registers before the runtime starts and gets the INVOKE event with the
    invocation's request id; the invocation is over (END) only once the extension has
    called `next` again; at daemon stop it gets SHUTDOWN (spindown) and exits."""
    write(tmp_path / "fn" / "bootstrap", BOOTSTRAP, executable=True)
    write(tmp_path / "fn" / "extensions" / "recorder", RECORDER, executable=True)
    hold = tmp_path / "hold"
    hold.mkdir()
    (tmp_path / "inbox").mkdir()
    record_to = tmp_path / "events.jsonl"
    config = write(
        tmp_path / "bridge.yaml",
        f"""\
state_dir: ./state
drain_timeout_seconds: 5
functions:
  fn:
    invoker: runtime
    runtime: provided.al2023
    code: ./fn
    timeout: 20
    environment: {{RECORD_TO: {str(record_to)!r}, HOLD_DIR: {str(hold)!r}}}
mappings:
  - name: inbox
    function: fn
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
""",
    )
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        (tmp_path / "inbox" / "a.json").write_text("{}")
        wait_for((hold / "holding").exists, what="the extension holding an INVOKE")
        [invoke] = recorded(record_to)
        assert invoke["eventType"] == "INVOKE"
        request_id = invoke["requestId"]
        assert invoke["invokedFunctionArn"].endswith(":function:fn")
        assert invoke["deadlineMs"] > 0
        assert invoke["tracing"]["type"] == "X-Amzn-Trace-Id"
        registered = json.loads((hold / "registered.json").read_text())
        assert registered == {"functionName": "fn", "functionVersion": "$LATEST", "handler": ""}

        def lines() -> list[str]:
            return [entry["line"] for entry in daemon.events("function.log", function="fn")]

        wait_for(lambda: f"answering {request_id}" in lines(), what="the runtime's answer")
        assert f"END RequestId: {request_id}" not in lines(), "the extension holds it open"
        (hold / "release").touch()
        wait_for(lambda: f"END RequestId: {request_id}" in lines(), what="the invocation's end")

        assert daemon.stop() == 0
        events = recorded(record_to)
        assert [event["eventType"] for event in events] == ["INVOKE", "SHUTDOWN"]
        assert events[1]["shutdownReason"] == "spindown"
        assert events[1]["deadlineMs"] > invoke["deadlineMs"] - 20_000
    finally:
        daemon.kill()

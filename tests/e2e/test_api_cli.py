"""The aws cli, unchanged but for `--endpoint-url`, through the operations of Lambda's API
the other modules drive with boto3: an Event invocation, versions and aliases, the
event-invoke-config operations and a mapping disabled and enabled again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import DaemonProcess, read_jsonl, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("aws") is None, reason="no aws cli installed"),
]

HANDLER = """\
import json, os

def handler(event, context):
    with open("invocations.jsonl", "a") as out:
        out.write(json.dumps({"event": event, "version": context.function_version}) + "\\n")
    return {"version": context.function_version}
"""
CONFIG = """\
state_dir: ./state
aws: {region: us-east-1, account_id: "123456789012"}
api: {listen: "127.0.0.1:0"}
destinations:
  records: {type: file, path: ./records}
functions:
  orders:
    invoker: python
    handler: handler.py:handler
    versions: {"1": {timeout: 5}}
    aliases: {live: {version: "1", description: what customers get}}
    async: {destinations: {on_success: records}}
mappings:
  - name: inbox
    function: orders
    source: {type: files, path: ./inbox, stable_after_seconds: 0.1}
"""


class Cli:
    def __init__(self, endpoint: str, root: Path) -> None:
        self.endpoint, self.root = endpoint, root
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "AKIDANY",
            "AWS_SECRET_ACCESS_KEY": "anything",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def __call__(self, *args: str) -> Any:
        """`aws lambda ARGS --endpoint-url ...`'s JSON answer (None when it prints none)."""
        result = subprocess.run(
            ["aws", "lambda", *args, "--endpoint-url", self.endpoint, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            cwd=self.root,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("api-cli")
    (root / "handler.py").write_text(HANDLER)
    (root / "bridge.yaml").write_text(CONFIG)
    daemon = DaemonProcess(root / "bridge.yaml", root).start()
    [listening] = daemon.wait_for_log("api.listening")
    yield Cli(f"http://{listening['address']}", root)
    daemon.kill()


def test_an_event_invocation_of_an_alias(cli: Cli) -> None:
    version = subprocess.run(["aws", "--version"], capture_output=True, text=True, check=True)
    # Version 2 reads a blob argument as base64 unless told otherwise; version 1 as is.
    v2 = "aws-cli/2" in version.stdout + version.stderr
    blob = ["--cli-binary-format", "raw-in-base64-out"] if v2 else []
    answer = cli(
        "invoke", "--function-name", "orders", "--qualifier", "live", *blob,
        "--invocation-type", "Event", "--payload", '{"cli": 1}', str(cli.root / "out.json"),
    )  # fmt: skip
    assert answer["StatusCode"] == 202

    def recorded() -> list[dict[str, Any]]:
        return read_jsonl(cli.root / "records" / "orders.async.jsonl")

    [record] = wait_for(recorded, 15, what="the on-success record")
    assert record["responseContext"]["executedVersion"] == "1"
    assert record["requestContext"]["functionArn"].endswith(":function:orders:live")


def test_versions_and_aliases(cli: Cli) -> None:
    versions = cli("list-versions-by-function", "--function-name", "orders")["Versions"]
    assert [version["Version"] for version in versions] == ["$LATEST", "1"]
    [alias] = cli("list-aliases", "--function-name", "orders")["Aliases"]
    assert alias["Name"] == "live" and alias["FunctionVersion"] == "1"
    got = cli("get-alias", "--function-name", "orders", "--name", "live")
    assert got["AliasArn"].endswith(":function:orders:live")
    assert got["Description"] == "what customers get"


def test_event_invoke_config(cli: Cli) -> None:
    cli(
        "put-function-event-invoke-config", "--function-name", "orders",
        "--maximum-retry-attempts", "1", "--maximum-event-age-in-seconds", "120",
    )  # fmt: skip
    got = cli("get-function-event-invoke-config", "--function-name", "orders")
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (1, 120)
    cli("delete-function-event-invoke-config", "--function-name", "orders")


def test_a_mapping_disabled_and_enabled_again(cli: Cli) -> None:
    [mapping] = cli("list-event-source-mappings", "--function-name", "orders")[
        "EventSourceMappings"
    ]
    uuid = mapping["UUID"]
    assert cli("update-event-source-mapping", "--uuid", uuid, "--no-enabled")["State"] in (
        "Disabling",
        "Disabled",
    )
    wait_for(
        lambda: cli("get-event-source-mapping", "--uuid", uuid)["State"] == "Disabled",
        15,
        what="the mapping disabled",
    )
    (cli.root / "inbox" / "while-disabled.txt").write_text("waits")
    time.sleep(0.5)
    assert not any(
        "while-disabled.txt" in json.dumps(row)
        for row in read_jsonl(cli.root / "invocations.jsonl")
    )
    cli("update-event-source-mapping", "--uuid", uuid, "--enabled")

    def delivered() -> bool:
        rows = read_jsonl(cli.root / "invocations.jsonl")
        return any("while-disabled.txt" in json.dumps(row) for row in rows)

    wait_for(delivered, 15, what="the file delivered once the mapping is enabled")

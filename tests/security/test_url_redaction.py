"""Credentials in URLs never reach a log line or an error: user info and query values are
shown as `***`, through `lambda-bridge run` and in the messages of client libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.redaction import redact_url, redact_urls_in
from tests import services
from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e


def test_an_http_function_url_with_credentials_is_logged_redacted(tmp_path: Path) -> None:
    """An http function behind a URL with a user, a password and an API key in the query,
    unreachable: every retry is logged, and no log line holds any of the three."""
    port = services.free_port()
    url = f"http://deploy-user:pa55word-secret@127.0.0.1:{port}/invoke?api_key=key-secret&x=1"
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"""\
state_dir: ./state
functions:
  remote: {{invoker: http, url: '{url}', connect_timeout: 0.5}}
mappings:
  - name: inbox
    function: remote
    source: {{type: files, path: ./inbox, stable_after_seconds: 0.1}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.1}}
"""
    )
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        daemon.wait_ready()
        (tmp_path / "inbox" / "a.txt").write_text("a")
        [unavailable, *_] = daemon.wait_for_log("invoke.unavailable", count=3)
        assert f"http://***@127.0.0.1:{port}/invoke?api_key=***&x=***" in unavailable["error"]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    everything = "".join(daemon.raw_stderr) + daemon.stdout
    for secret in ("deploy-user", "pa55word-secret", "key-secret"):
        assert secret not in everything


def test_urls_inside_library_messages_are_redacted() -> None:
    """botocore and aiohttp name the URL they failed on; those messages are redacted
    wherever they are quoted."""
    message = 'Could not connect to the endpoint URL: "https://AKIA:secret@sqs.local:4566/q?X-Amz-Signature=abc"'
    assert (
        redact_urls_in(message)
        == 'Could not connect to the endpoint URL: "https://***@sqs.local:4566/q?X-Amz-Signature=***"'
    )
    assert redact_url("redis://:pw@host:6379/0") == "redis://***@host:6379/0"
    assert redact_url("http://host/path") == "http://host/path"

"""The admin endpoint cannot be used by a web page the operator happens to open: through
DNS rebinding (a foreign Host) it reads nothing, a cross-site form post does not reload
the daemon, and a header of bytes that are not UTF-8 is a 401, never a 500."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import Workspace
from tests.security.admin_support import raw_request
from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

TOKEN = "admin-token-for-request-tests"
EXTRA_MAPPING = """\
  - name: added
    function: recorder
    source: {type: files, path: ./added, create_path: true}
"""
# What a page can make a browser send cross-site without a CORS preflight.
FORM_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
]


def address(daemon: DaemonProcess) -> str:
    return daemon.admin_url().removeprefix("http://")


def reloads(daemon: DaemonProcess) -> int:
    return len(daemon.events("reload.applied")) + len(daemon.events("reload.rejected"))


def test_a_foreign_host_reads_nothing_on_loopback(workspace: Workspace) -> None:
    """Bound to loopback without a token, a request naming another host (what a page
    whose name was rebound to 127.0.0.1 sends) is answered 421 on /readyz, /metrics,
    /status and /reload, with nothing of the daemon in it; /healthz answers any Host. Loopback names
    and addresses, with or without a port, and an HTTP/1.0 request without Host are answered."""
    daemon = workspace.daemon(workspace.write_config()).wait_ready()
    where = address(daemon)
    port = where.rsplit(":", 1)[1]
    json_post = {"Content-Type": "application/json"}
    for host in (f"attacker.example:{port}", "attacker.example", "127.0.0.1.nip.io", "[::2]"):
        for method, path, extra in (
            ("GET", "/readyz", {}),
            ("GET", "/metrics", {}),
            ("GET", "/status", {}),
            ("POST", "/reload", json_post),
        ):
            status, body = raw_request(where, method, path, {"Host": host, **extra})
            assert status == 421, (host, path)
            assert b"inbox" not in body and b"lambda_bridge" not in body
        assert raw_request(where, "GET", "/healthz", {"Host": host}) == (
            200,
            b'{"status": "alive"}',
        )
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        "LOCALHOST",
        f"[::1]:{port}",
        "127.0.0.2",
    ):
        status, body = raw_request(where, "GET", "/readyz", {"Host": host})
        assert status == 200 and json.loads(body)["mappings"][0]["name"] == "inbox", host
    status, body = raw_request(where, "GET", "/metrics", {}, version="1.0")
    assert status == 200 and b"lambda_bridge_polled_events_total" in body
    assert reloads(daemon) == 0
    assert daemon.stop() == 0


def test_a_cross_site_form_post_does_not_reload(workspace: Workspace) -> None:
    """POST /reload with a content type a form can send, or none, is answered 415 and the
    config is not re-read (the mapping added to the file does not start); with
    `Content-Type: application/json`, with `X-Lambda-Bridge`, or from `lambda-bridge
    reload`, it reloads."""
    config = workspace.write_config()
    daemon = workspace.daemon(config).wait_ready()
    where = address(daemon)
    config.write_text(config.read_text() + EXTRA_MAPPING)
    host = {"Host": where}
    for content_type in FORM_TYPES:
        status, body = raw_request(
            where, "POST", "/reload", {**host, "Content-Type": content_type}, b"a=1"
        )
        assert status == 415, content_type
        assert "X-Lambda-Bridge" in json.loads(body)["error"]
    assert raw_request(where, "POST", "/reload", host)[0] == 415
    assert reloads(daemon) == 0
    assert not daemon.events("mapping.started", mapping="added")

    answer = subprocess.run(
        [sys.executable, "-m", "bridge", "reload", "--url", daemon.admin_url()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    assert "started: added" in answer.stdout.splitlines()
    daemon.wait_for_log("mapping.started", mapping="added")
    for extra in ({"Content-Type": "application/json; charset=utf-8"}, {"X-Lambda-Bridge": "1"}):
        status, body = raw_request(where, "POST", "/reload", {**host, **extra})
        assert status == 200 and json.loads(body)["unchanged"] == ["inbox", "added"], extra
    assert daemon.stop() == 0


def test_beyond_loopback_any_host_but_posts_still_need_json(workspace: Workspace) -> None:
    """Listening on every interface (a token is then required), the Host is not checked,
    as the endpoint is reached by whatever name the network gives it; a form post with
    the right token is still refused."""
    config = workspace.write_config(
        top_extra='http: {listen: "0.0.0.0:0", token: "${ADMIN_TOKEN}"}'
    )
    daemon = workspace.daemon(config, ADMIN_TOKEN=TOKEN).wait_ready()
    where = address(daemon)
    authorized = {"Host": "bridge.internal:9090", "Authorization": f"Bearer {TOKEN}"}
    assert raw_request(where, "GET", "/readyz", authorized)[0] == 200
    assert raw_request(where, "GET", "/readyz", {"Host": "bridge.internal"})[0] == 401
    form = {**authorized, "Content-Type": FORM_TYPES[0]}
    assert raw_request(where, "POST", "/reload", form, b"a=1")[0] == 415
    assert reloads(daemon) == 0
    posted = {**authorized, "Content-Type": "application/json"}
    assert raw_request(where, "POST", "/reload", posted, b"{}")[0] == 200
    assert daemon.stop() == 0


def test_an_authorization_header_that_is_not_utf8_is_a_401(workspace: Workspace) -> None:
    """Header bytes that are not UTF-8 in place of the token are a token not accepted:
    401 with its reason, no traceback, and the daemon answers on."""
    config = workspace.write_config(
        top_extra='http: {listen: "127.0.0.1:0", token: "${ADMIN_TOKEN}"}'
    )
    daemon = workspace.daemon(config, ADMIN_TOKEN=TOKEN).wait_ready()
    where = address(daemon)
    for value in (b"Bearer \xff\xfe\xfd", b"\xc3\x28", b"Bearer " + TOKEN.encode() + b"\x80"):
        status, body = raw_request(
            where, "GET", "/metrics", {"Host": where, "Authorization": value}
        )
        assert (status, json.loads(body)) == (401, {"error": "the bearer token is not accepted"})
    status, _ = raw_request(
        where, "GET", "/metrics", {"Host": where, "Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    assert daemon.stop() == 0
    assert not [
        line for line in daemon.raw_stderr if "Traceback" in line or "Error handling" in line
    ]
    assert not [entry for entry in daemon.logs if entry.get("level") == "error"]

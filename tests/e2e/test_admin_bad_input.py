"""Bad input around the admin endpoint: requests it cannot parse, and `status` / `reload`
pointed at the wrong place or given the wrong token. One line each, never a traceback."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

SECRET = "admin-token-for-bad-input-tests"


def raw_request(address: str, data: bytes) -> bytes:
    """Send `data` as it is and return the start of the answer."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        return connection.recv(64)


def admin_command(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture
def daemon(workspace: Workspace) -> DaemonProcess:
    config = workspace.write_config(
        top_extra='http: {listen: "127.0.0.1:0", token: "${ADMIN_TOKEN}"}'
    )
    return workspace.daemon(config, ADMIN_TOKEN=SECRET).wait_ready()


@pytest.fixture
def html_server() -> Iterator[str]:
    """A web server that is not lambda-bridge's: every path is an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_unparseable_requests_get_400_and_one_log_line(daemon: DaemonProcess) -> None:
    """A 100 KB header, a 100 KB path, a malformed request line, an unknown HTTP version
    an unknown method and TLS bytes on the plain port are answered 400; the daemon logs one
    `admin.bad_request` line for each it logs at all, never a traceback or the bytes
    (which may hold a token). A method a path does not take gets 405, and the daemon keeps serving."""
    address = daemon.admin_url().removeprefix("http://")
    big_header = f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
    requests = [
        big_header.encode() + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
    ]
    for request in requests:
        assert raw_request(address, request).startswith(b"HTTP/1.0 400 Bad Request")
    answer = raw_request(address, b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405")
    daemon.wait_for_log("admin.bad_request", count=4)
    assert {entry["problem"] for entry in daemon.events("admin.bad_request")} >= {
        "LineTooLong",
        "BadStatusLine",
    }
    assert daemon.admin("/healthz")[0] == 200
    assert daemon.stop() == 0
    stderr = "".join(daemon.raw_stderr)
    assert "Traceback" not in stderr
    assert SECRET not in stderr and "aaaaaaaa" not in stderr


def test_status_and_reload_tell_a_wrong_token_from_none(daemon: DaemonProcess) -> None:
    """No token: the daemon wants one. A wrong token: it was rejected. Exit 2, one line;
    the endpoint's own answer says which too, without echoing either token."""
    url = daemon.admin_url()
    for command in ("status", "reload"):
        missing = admin_command(command, "--url", url)
        assert missing.returncode == 2
        assert missing.stderr.splitlines() == [
            "error: the daemon wants a bearer token (--token-file or LAMBDA_BRIDGE_HTTP_TOKEN)"
        ]
        wrong = admin_command(command, "--url", url, "--token", "not-the-token")
        assert wrong.returncode == 2
        assert wrong.stderr.splitlines() == [
            "error: the daemon rejected the bearer token (check --token-file, --token, "
            "http.token or LAMBDA_BRIDGE_HTTP_TOKEN)"
        ]
    assert daemon.admin("/readyz") == (401, '{"error": "a bearer token is required"}')
    status, body = daemon.admin("/readyz", token="not-the-token")
    assert (status, body) == (401, '{"error": "the bearer token is not accepted"}')
    assert daemon.stop() == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", ["status", "reload"])
def test_status_and_reload_pointed_at_the_wrong_place(
    command: str, html_server: str, tmp_path: Path
) -> None:
    """Nothing listening, a web page instead of the admin endpoint, a scheme that is not
    http, a URL without a scheme, and a config whose daemon never wrote its address: one
    line each, exit 2, no traceback."""
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "state_dir: ./never-run\nhttp: {listen: '127.0.0.1:0'}\n"
        "functions: {f: {invoker: subprocess, command: [cat]}}\n"
    )
    port = free_port()
    cases = [
        (["--url", f"http://127.0.0.1:{port}"], f"error: cannot reach http://127.0.0.1:{port}/"),
        (["--url", html_server], f"error: {html_server}/"),
        (["--url", "file:///etc/passwd"], "error: --url must be http://host:port or https://"),
        (["--url", "ftp://127.0.0.1:21"], "error: --url must be http://host:port or https://"),
        (["--url", f"127.0.0.1:{port}"], "error: --url must be http://host:port or https://"),
        (["--config", str(config)], "error: no daemon address in "),
    ]
    for args, start in cases:
        result = admin_command(command, *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(start), (args, line)
        assert "Traceback" not in result.stderr
    html = admin_command(command, "--url", html_server)
    assert "answered HTTP 200 with something else than a lambda-bridge admin endpoint" in (
        html.stderr
    )

"""`status` and `reload` take the admin token from a file or the environment, so it need
not be on their command line, where every user of the machine reads it in `ps`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace
from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

TOKEN = "admin-token-for-token-source-tests"


@pytest.fixture
def daemon(workspace: Workspace) -> DaemonProcess:
    config = workspace.write_config(
        top_extra='http: {listen: "127.0.0.1:0", token: "${ADMIN_TOKEN}"}'
    )
    return workspace.daemon(config, ADMIN_TOKEN=TOKEN).wait_ready()


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if key != "LAMBDA_BRIDGE_HTTP_TOKEN"
    }
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
    )


def test_the_token_from_a_file(daemon: DaemonProcess, tmp_path: Path) -> None:
    """`--token-file` holding the token (with its final newline) is accepted by both
    commands; a file with another token is rejected by the daemon, exit 2."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    url = daemon.admin_url()
    reloaded = command("reload", "--url", url, "--token-file", str(token_file))
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.splitlines()[-1] == "unchanged: inbox"
    status = command("status", "--url", url, "--token-file", str(token_file), "--interval", "0")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == "daemon: ready"
    token_file.write_text("another-token\n")
    rejected = command("reload", "--url", url, "--token-file", str(token_file))
    assert rejected.returncode == 2
    assert rejected.stderr.startswith("error: the daemon rejected the bearer token")


def test_the_token_from_the_environment(daemon: DaemonProcess) -> None:
    """LAMBDA_BRIDGE_HTTP_TOKEN is used when no token is given on the command line."""
    url = daemon.admin_url()
    env = {"LAMBDA_BRIDGE_HTTP_TOKEN": TOKEN}
    reloaded = command("reload", "--url", url, env=env)
    assert reloaded.returncode == 0, reloaded.stderr
    status = command("status", "--url", url, "--interval", "0", env=env)
    assert status.returncode == 0, status.stderr


def test_a_token_file_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    """A missing, empty, multi-line, binary or huge token file is one `error:` line naming
    the file, exit 2, before anything is sent; the file's content is never echoed."""
    cases = {
        "missing": None,
        "empty": b"\n",
        "two-lines": b"first-secret-line\nsecond-secret-line\n",
        "binary": b"\xff\xfe-secret",
        "huge": b"x" * 100_000,
    }
    expected = {
        "missing": "cannot read the token file",
        "empty": "is empty",
        "two-lines": "holds more than one line",
        "binary": "is not UTF-8 text",
        "huge": "is larger than 4096 bytes",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        # Port 9 (discard): were anything sent, the error would be that nothing answers.
        result = command("reload", "--url", "http://127.0.0.1:9", "--token-file", str(path))
        assert result.returncode == 2, name
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and str(path) in line and expected[name] in line
        assert "secret" not in line


def test_help_recommends_the_file_or_the_environment() -> None:
    """--help of both commands offers --token-file and warns that --token shows in ps;
    giving both is a usage error."""
    for name in ("status", "reload"):
        shown = command(name, "--help")
        text = " ".join(shown.stdout.split())
        assert "--token-file FILE" in text
        assert "can read it in ps" in text and "LAMBDA_BRIDGE_HTTP_TOKEN" in text
        both = command(name, "--token", "a", "--token-file", "b")
        assert both.returncode == 2
        assert "not allowed with argument" in both.stderr

"""Helpers for end-to-end tests: lambda-bridge as a real process, and polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.services import die_with_parent

REPO = Path(__file__).resolve().parents[1]


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll until `condition()` is truthy; return its value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    # A line still being written (no newline yet) is read next time.
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


class DaemonProcess:
    """`python -m bridge run --config FILE` in `cwd`, with its JSON log lines collected."""

    def __init__(
        self,
        config: Path | None,
        cwd: Path,
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.cwd = cwd
        self.args = [sys.executable, "-m", "bridge", "run", "--log-format", "json"]
        if config is not None:
            self.args += ["--config", str(config)]
        self.args += extra_args or []
        # Each daemon's admin endpoint on a free port, so tests in parallel do not collide.
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LAMBDA_BRIDGE_HTTP_LISTEN": "127.0.0.1:0",
            **(env or {}),
        }
        self.logs: list[dict[str, Any]] = []
        self.raw_stderr: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> DaemonProcess:
        self.stdout_path = self.cwd / f"daemon-stdout-{time.monotonic_ns()}.log"
        self._stdout = self.stdout_path.open("w")
        self.process = subprocess.Popen(
            die_with_parent(self.args),
            cwd=self.cwd,
            env=self.env,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        return self

    def _collect(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.raw_stderr.append(line)
            try:
                self.logs.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            entry
            for entry in list(self.logs)
            if entry.get("event") == name
            and all(entry.get(key) == value for key, value in fields.items())
        ]

    def wait_for_log(
        self, name: str, timeout: float = 20.0, count: int = 1, **fields: Any
    ) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            if (
                self.process is not None
                and self.process.poll() is not None
                and len(self.events(name, **fields)) < count
            ):
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before logging {name}:\n{''.join(self.raw_stderr[-30:])}"
                )
            matches = self.events(name, **fields)
            return matches if len(matches) >= count else None

        return wait_for(found, timeout, what=f"log event {name}")  # type: ignore[no-any-return]

    def wait_ready(self, mappings: int = 1) -> DaemonProcess:
        self.wait_for_log("mapping.started", count=mappings)
        return self

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        self._stdout.close()
        return code

    def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """Stop the daemon at the end of a test; its last log lines are printed, which
        pytest shows when the test failed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait(10)
        print(f"--- last log lines of {' '.join(self.args[2:])}:")
        print("".join(self.raw_stderr[-40:]))

    def admin_url(self) -> str:
        [listening] = self.wait_for_log("admin.listening")
        return f"http://{listening['address']}"

    def admin(self, path: str, *, token: str | None = None, method: str = "GET") -> tuple[int, str]:
        """(status, body) of a request to the daemon's admin endpoint."""
        request = urllib.request.Request(self.admin_url() + path, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""


RECORDING_HANDLER = '''
"""Test handler: records every event, fails for keys named *fail*, sleeps for *slow*,
reports keys named *partial* as failed items."""
import json, os, time
from urllib.parse import unquote_plus

LOG = os.environ["RECORD_TO"]


def handler(event, context):
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in event["Records"]]
    with open(LOG, "a") as out:
        out.write(json.dumps({"phase": "start", "request_id": context.aws_request_id, "keys": keys, "event": event}) + "\\n")
    for key in keys:
        if "slow" in key:
            time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    failed = [r["s3"]["object"]["sequencer"] for r, key in zip(event["Records"], keys) if "partial" in key]
    if any("fail" in key for key in keys):
        raise ValueError("cannot process " + ",".join(k for k in keys if "fail" in k))
    with open(LOG, "a") as out:
        out.write(json.dumps({"phase": "done", "request_id": context.aws_request_id, "keys": keys}) + "\\n")
    return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}
'''

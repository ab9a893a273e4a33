"""`lambda-bridge failures` as a real process, and a handler the tests steer with files."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services import die_with_parent
from tests.support import DaemonProcess, read_jsonl

# Records every event; raises while `<control>/fail` exists; waits while `<control>/block`
# exists (so a test can kill -9 a redrive while an invocation is in flight).
STEERED_HANDLER = """
import json, os, time
from pathlib import Path

CONTROL = Path(os.environ["CONTROL"])


def handler(event, context):
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "event": event}) + "\\n")
    while (CONTROL / "block").exists():
        time.sleep(0.02)
    if (CONTROL / "fail").exists():
        raise ValueError("failing on purpose")
    return {}
"""


@dataclass
class Finished:
    code: int
    out: str
    err: str


class RedriveSpace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.control = root / "control"
        self.control.mkdir()
        self.calls = root / "calls.jsonl"
        (root / "steered.py").write_text(STEERED_HANDLER)
        self.daemons: list[DaemonProcess] = []
        self.env = {**os.environ, "RECORD_TO": str(self.calls), "CONTROL": str(self.control)}

    def set(self, flag: str, on: bool) -> None:
        path = self.control / flag
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def daemon(self, config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env=self.env)
        self.daemons.append(daemon.start())
        return daemon

    def events(self) -> list[dict[str, Any]]:
        return [call["event"] for call in read_jsonl(self.calls)]

    def forget_calls(self) -> None:
        self.calls.unlink(missing_ok=True)

    def command(self, *args: str, config: Path | None = None) -> list[str]:
        argv = [sys.executable, "-m", "bridge", "failures", *args]
        if config is not None:
            argv += ["--config", str(config)]
        return argv

    def run(self, *args: str, config: Path | None = None, timeout: float = 120) -> Finished:
        done = subprocess.run(
            die_with_parent(self.command(*args, config=config)),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Finished(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, config: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            die_with_parent(self.command(*args, config=config)),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def listed_ids(output: str) -> list[str]:
    """The failure ids `failures list` printed, in order."""
    return [line.split()[0] for line in output.splitlines()[1:] if line.strip()]

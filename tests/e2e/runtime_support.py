"""What the `runtime` invoker's end-to-end tests share: writing package files, and
`lambda-bridge invoke` as a process with a secret in its environment that no function
may see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# In the daemon's environment, never in a function's (the tests check).
DAEMON_SECRET = "do-not-pass"
STDIN = ("--event", "-")


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def invoke(
    cwd: Path,
    config: Path | str,
    function: str,
    event: str = "{}",
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Exit status and output of `lambda-bridge invoke --config CONFIG FUNCTION`."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "invoke", "--config", str(config), function, *STDIN],
        cwd=cwd,
        input=event,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DAEMON_SECRET": DAEMON_SECRET, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def response(output: str) -> Any:
    return json.loads(output.split("response:\n", 1)[1])

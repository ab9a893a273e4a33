"""lambda-bridge run as a process on a folder of 20,000 files: while it takes them on,
the event loop stays free, so `/healthz` (and with it the systemd watchdog) answers."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import DaemonProcess, wait_for

FOLDERS = 200
FILES_PER_FOLDER = 100
# The bound for a liveness answer.
HEALTHZ_SECONDS = 0.1

NO_OP_HANDLER = "def handler(event, context):\n    return None\n"

CONFIG = """\
state_dir: ./state
functions:
  noop: {{invoker: python, handler: noop.py:handler, timeout: 10}}
mappings:
  - name: inbox
    function: noop
    source:
      type: files
      path: ./inbox
      stable_after_seconds: 0
      observer: {observer}
"""


def populate(inbox: Path) -> None:
    """FOLDERS sub-folders of FILES_PER_FOLDER empty files, made as fast as the OS allows."""
    for folder_index in range(FOLDERS):
        folder = inbox / f"folder-{folder_index:03d}"
        folder.mkdir(parents=True)
        for file_index in range(FILES_PER_FOLDER):
            os.close(
                os.open(folder / f"file-{file_index:03d}.txt", os.O_CREAT | os.O_WRONLY, 0o644)
            )


def get(url: str) -> tuple[float, dict[str, object]]:
    """How long one GET took, and its JSON body (whatever its status)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    return time.monotonic() - started, json.loads(body)


@pytest.mark.parametrize("observer", ["polling", "auto"])
def test_healthz_answers_quickly_while_a_large_folder_is_taken_on(
    tmp_path: Path, observer: str
) -> None:
    """From the start of the daemon until the folder is caught up, every `/healthz`
    answers within 100 ms, with the polling observer (a snapshot of every file) and with
    the native one (a watch per sub-folder)."""
    populate(tmp_path / "inbox")
    (tmp_path / "noop.py").write_text(NO_OP_HANDLER)
    config = tmp_path / "bridge.yaml"
    config.write_text(CONFIG.format(observer=observer))
    daemon = DaemonProcess(config, tmp_path).start()
    try:
        address_file = tmp_path / "state" / "admin-address"
        address = wait_for(
            lambda: address_file.exists() and address_file.read_text().strip(),
            interval=0.005,
            what="the admin endpoint",
        )
        base = f"http://{address}"
        slowest = 0.0
        catching_up_seen = False
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            took, health = get(f"{base}/healthz")
            assert health == {"status": "alive"}
            slowest = max(slowest, took)
            _, ready = get(f"{base}/readyz")
            [mapping] = ready["mappings"]  # type: ignore[misc]
            if "CatchUp" in mapping:
                catching_up_seen = True
            elif catching_up_seen and mapping["State"] == "Enabled":
                break
            time.sleep(0.01)
        assert catching_up_seen, "the catch-up was never seen in /readyz"
        assert daemon.events("files.caught_up", files=FOLDERS * FILES_PER_FOLDER)
        assert slowest < HEALTHZ_SECONDS, f"/healthz took {slowest:.3f} s"
        assert daemon.stop() == 0
    finally:
        daemon.kill()

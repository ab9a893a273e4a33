from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RECORDING_HANDLER, DaemonProcess


class Workspace:
    """A folder with a recording handler, an inbox and a config writer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox = root / "inbox"
        self.failed = root / "failed"
        self.record_file = root / "calls.jsonl"
        (root / "handler.py").write_text(RECORDING_HANDLER)
        self.inbox.mkdir()
        self.daemons: list[DaemonProcess] = []

    def write_config(
        self, mapping_extra: str = "", source_extra: str = "", top_extra: str = ""
    ) -> Path:
        path = self.root / "bridge.yaml"
        path.write_text(
            f"""\
state_dir: ./state
drain_timeout_seconds: 10
{top_extra}
functions:
  recorder:
    invoker: python
    handler: handler.py:handler
    timeout: 10
destinations:
  failed: {{type: file, path: ./failed}}
mappings:
  - name: inbox
    function: recorder
    source:
      type: files
      path: ./inbox
      stable_after_seconds: 0.2
{source_extra}
    destination_config: {{on_failure: {{destination: failed}}}}
    retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
{mapping_extra}
"""
        )
        return path

    def daemon(self, config: Path | None, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, self.root, env={"RECORD_TO": str(self.record_file), **env})
        self.daemons.append(daemon)
        return daemon.start()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path)
    yield space
    for daemon in space.daemons:
        daemon.kill()

"""What the daemon writes holds whole record payloads: `state_dir`, its SQLite file and
the failure files are created for the daemon's user only (0700 / 0600) whatever the
umask, and a symlink planted where a failure file goes is never followed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace
from tests.e2e.test_files_daemon import delivered_keys
from tests.support import read_jsonl, wait_for


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask a shell outside systemd usually has; the daemon inherits it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.usefixtures("open_umask")
def test_state_and_failure_files_are_private(workspace: Workspace) -> None:
    config = workspace.write_config(mapping_extra="    maximum_retry_attempts: 0\n")
    daemon = workspace.daemon(config).wait_ready()
    (workspace.inbox / "please-fail.txt").write_text("payload")
    failure_file = workspace.failed / "inbox.jsonl"
    wait_for(lambda: read_jsonl(failure_file), what="the failure record")
    assert daemon.stop() == 0

    state_dir = workspace.root / "state"
    assert mode(state_dir) == 0o700
    assert mode(state_dir / "checkpoints.sqlite3") == 0o600
    assert mode(workspace.failed) == 0o700
    assert mode(failure_file) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_failure_file_symlink_is_not_followed(workspace: Workspace) -> None:
    """A symlink at `failed/inbox.jsonl` pointing at another file: the record is not
    appended to that file, and the daemon says it cannot write (a destination that can
    never take a record fails its mapping, so the good file goes first)."""
    target = workspace.root / "someone-elses.txt"
    target.write_text("untouched\n")
    workspace.failed.mkdir()
    os.symlink(target, workspace.failed / "inbox.jsonl")
    config = workspace.write_config(mapping_extra="    maximum_retry_attempts: 0\n")
    daemon = workspace.daemon(config).wait_ready()
    (workspace.inbox / "fine.txt").write_text("payload")
    wait_for(lambda: "fine.txt" in delivered_keys(workspace), what="the good file")
    (workspace.inbox / "please-fail.txt").write_text("payload")
    wait_for(
        lambda: any("cannot write" in line for line in daemon.raw_stderr),
        what="the destination refusing the symlink",
    )
    assert target.read_text() == "untouched\n"
    assert os.path.islink(workspace.failed / "inbox.jsonl")
    daemon.kill()

"""The `files` source never reads outside its folder: not through a symlinked folder the
watcher walks into, not through a folder swapped for a symlink after a file in it was
seen, whatever observer is used. Nothing of the outside file (key, size, MD5) is reported.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from connectors.files.scan import FolderView
from tests.e2e.conftest import Workspace
from tests.e2e.test_files_daemon import delivered_keys, started_events
from tests.support import wait_for

SECRET = b"the secret outside the folder"


def outside_folder(root: Path) -> Path:
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_bytes(SECRET)
    (elsewhere / "x.txt").write_bytes(SECRET)
    return elsewhere


def reported_etags(workspace: Workspace) -> set[str]:
    return {
        record["s3"]["object"].get("eTag", "")
        for event in started_events(workspace)
        for record in event["Records"]
    }


@pytest.mark.parametrize("observer", ["polling", "native"])
def test_symlinked_folder_is_never_entered(workspace: Workspace, observer: str) -> None:
    """`ln -s /elsewhere inbox/e`: the polling observer walks into `e`; neither it nor
    the scans report `e/secret.txt`."""
    elsewhere = outside_folder(workspace.root)
    os.symlink(elsewhere, workspace.inbox / "e")
    config = workspace.write_config(
        source_extra=f"      observer: {observer}\n      poll_interval_seconds: 0.2\n"
        "      rescan_interval_seconds: 0.5\n"
    )
    daemon = workspace.daemon(config).wait_ready()
    os.symlink(elsewhere, workspace.inbox / "late-link")
    (workspace.inbox / "sentinel.txt").write_text("inside")
    wait_for(lambda: "sentinel.txt" in delivered_keys(workspace), what="the file inside")
    # Some rescans (every 0.5 s) and polls (every 0.2 s) later, still only what is inside.
    time.sleep(1.2)
    (workspace.inbox / "sentinel-2.txt").write_text("inside too")
    wait_for(lambda: "sentinel-2.txt" in delivered_keys(workspace), what="the second file")
    assert sorted(delivered_keys(workspace)) == ["sentinel-2.txt", "sentinel.txt"]
    assert hashlib.md5(SECRET).hexdigest() not in reported_etags(workspace)
    assert "secret" not in "".join(daemon.raw_stderr)
    assert daemon.stop() == 0


def test_folder_swapped_for_a_symlink_before_the_file_is_examined(workspace: Workspace) -> None:
    """`d/x.txt` is seen, then `d` is swapped for a symlink to a folder outside that has
    an `x.txt` too, before the file has been still long enough to be examined: the file
    outside is neither hashed nor reported as `d/x.txt`."""
    elsewhere = outside_folder(workspace.root)
    config = (
        workspace.write_config()
        .read_text()
        .replace("stable_after_seconds: 0.2", "stable_after_seconds: 1.5")
    )
    (workspace.root / "bridge.yaml").write_text(config)
    daemon = workspace.daemon(workspace.root / "bridge.yaml").wait_ready()
    folder = workspace.inbox / "d"
    folder.mkdir()
    (folder / "x.txt").write_text("inside")
    os.rename(folder, workspace.root / "moved-out")
    os.symlink(elsewhere, folder)
    (workspace.inbox / "sentinel.txt").write_text("inside")
    wait_for(lambda: "sentinel.txt" in delivered_keys(workspace), what="the file inside")
    # Written after d/x.txt with the same stable_after_seconds: d/x.txt was examined first.
    assert "d/x.txt" not in delivered_keys(workspace)
    assert hashlib.md5(SECRET).hexdigest() not in reported_etags(workspace)
    assert daemon.stop() == 0


def test_every_look_refuses_a_folder_swapped_for_a_symlink(tmp_path: Path) -> None:
    """The race, step by step: after the swap, stat, hash and scan of `d/x.txt` all see
    nothing, where following the path would read the file outside."""
    root = tmp_path / "inbox"
    (root / "d").mkdir(parents=True)
    (root / "d" / "x.txt").write_text("inside")
    elsewhere = outside_folder(tmp_path)
    view = FolderView(root)
    assert set(view.scan().files) == {"d/x.txt"}
    assert view.md5("d/x.txt") == hashlib.md5(b"inside").hexdigest()

    os.rename(root / "d", tmp_path / "moved-out")
    os.symlink(elsewhere, root / "d")

    assert view.stat("d/x.txt") is None
    assert view.md5("d/x.txt") is None
    assert view.scan().files == {}
    assert view.scan(below="d").files == {}
    assert view.key_of(str(root / "d" / "secret.txt")) == "d/secret.txt"
    assert view.stat("d/secret.txt") is None


def test_symlinked_file_escaping_through_a_folder_link_inside(tmp_path: Path) -> None:
    """A symlink to a file is followed only to a regular file inside the folder, reached
    without a symlinked folder on the way; `..` in a key is never looked at."""
    root = tmp_path / "inbox"
    root.mkdir()
    elsewhere = outside_folder(tmp_path)
    (root / "real.txt").write_text("inside")
    os.symlink(root / "real.txt", root / "to-real.txt")
    os.symlink(elsewhere / "secret.txt", root / "to-secret.txt")
    os.symlink(elsewhere, root / "folder-link")
    os.symlink("folder-link/secret.txt", root / "through-folder-link.txt")
    view = FolderView(root)
    assert set(view.scan().files) == {"real.txt", "to-real.txt"}
    assert view.md5("to-real.txt") == hashlib.md5(b"inside").hexdigest()
    for key in ("to-secret.txt", "through-folder-link.txt", "folder-link/secret.txt"):
        assert view.stat(key) is None
        assert view.md5(key) is None
    assert view.stat("../elsewhere/secret.txt") is None
    assert view.md5("../elsewhere/secret.txt") is None

"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a no-op handler.py, made the current one."""
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path

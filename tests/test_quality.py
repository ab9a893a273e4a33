"""The code standards hold: ruff and mypy --strict are clean on bridge/ and connectors/,
import-linter's layering contracts hold, and modules stay small."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

PACKAGES = ["bridge", "connectors"]


def test_ruff_is_clean() -> None:
    """ruff check and ruff format --check pass."""
    for args in (["check", *PACKAGES, "tests"], ["format", "--check", *PACKAGES]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """mypy --strict (configured in pyproject.toml) passes."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the contracts of pyproject.toml, over the packages under root."""
    command = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(command), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_the_layering_contracts_hold() -> None:
    """import-linter's contracts (pyproject.toml) are kept: bridge's sub-packages import only
    the layers below them, its shared modules none of them; the core imports no connector
    and no service SDK; connectors import each other only through the shared packages."""
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contracts_catch_a_core_to_connector_import(tmp_path: Path) -> None:
    """The same contracts over a copy of the tree in which the core imports a connector,
    a connector imports another, config imports the pipeline above it and a shared module
    imports a sub-package: each is reported."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tmp_path / "bridge" / "leak.py").write_text("import connectors.kafka.config\n")
    (tmp_path / "connectors" / "sqs" / "leak.py").write_text("import connectors.kinesis.config\n")
    (tmp_path / "bridge" / "config" / "leak.py").write_text("import bridge.pipeline.dispatch\n")
    with (tmp_path / "bridge" / "codec.py").open("a") as codec:
        codec.write("import bridge.ops.metrics\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "bridge.leak -> connectors.kafka.config" in result.stdout
    assert "connectors.sqs.leak -> connectors.kinesis.config" in result.stdout
    assert "bridge.config.leak -> bridge.pipeline.dispatch" in result.stdout
    assert "bridge.codec -> bridge.ops.metrics" in result.stdout


def test_modules_stay_small() -> None:
    """No module of bridge/ or connectors/ grows past about 400 lines."""
    large = {
        str(path.relative_to(REPO)): count
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 420
    }
    assert large == {}

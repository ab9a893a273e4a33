"""The code standards hold: ruff and mypy --strict are clean on bridge/ and connectors/,
bridge/ imports no service SDK, and modules stay small."""

from __future__ import annotations

import re
import subprocess
import sys

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


def test_core_imports_no_service_sdk() -> None:
    """bridge/ never imports aiokafka, redis, aioboto3, botocore or watchdog."""
    pattern = re.compile(
        r"^\s*(import|from)\s+(aiokafka|redis|aioboto3|aiobotocore|boto3|botocore|watchdog)\b", re.M
    )
    offenders = [
        str(path) for path in (REPO / "bridge").rglob("*.py") if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_modules_stay_small() -> None:
    """No module of bridge/ or connectors/ grows past about 400 lines."""
    large = {
        str(path.relative_to(REPO)): count
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 420
    }
    assert large == {}

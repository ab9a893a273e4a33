"""The example config and handler that `lambda-bridge run` uses when given no config.

In a source checkout they are `config/example.yaml` and `examples/`; an installed wheel
carries copies under `bridge/bundled/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def bundled_root() -> Path:
    checkout = _PACKAGE.parent
    if (checkout / "config" / "example.yaml").is_file() and (checkout / "examples").is_dir():
        return checkout
    return _PACKAGE / "bundled"


def example_config() -> Path:
    return bundled_root() / "config" / "example.yaml"

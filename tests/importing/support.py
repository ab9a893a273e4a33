"""What the imported projects' end-to-end tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def result_files(folder: Path, pattern: str = "*.json") -> dict[str, Any]:
    """The handlers' result files in `folder`, but those still being written."""
    found: dict[str, Any] = {}
    for path in folder.glob(pattern):
        try:
            found[path.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return found

"""What an import produces: plain config data (functions, destinations, mappings, HTTP
triggers) with the template location each part came from, the resources the template
declares (for `--create-resources`), and the notes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.importing.notes import Location, Notes

DEFAULT_API_LISTEN = "127.0.0.1:3000"  # as `sam local start-api`


@dataclass
class ImportOptions:
    """How to import. `endpoint_url` (an emulator) and `region` / `account_id` decide the
    names and ARNs that declared resources resolve to."""

    region: str = "us-east-1"
    account_id: str = "000000000000"
    stack_name: str = "local"
    endpoint_url: str | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    strict: bool = False
    bucket_folders: dict[str, str] = field(default_factory=dict)
    api_listen: str = DEFAULT_API_LISTEN
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)


@dataclass
class Part:
    """One piece of config and where it came from (`# from <origin>`)."""

    data: dict[str, Any]
    origin: Location
    kind: str = ""


@dataclass
class ResourceSpec:
    """A queue, stream, table or topic the template declares, with what creating it in an
    emulator needs."""

    logical_id: str
    type: str
    name: str
    properties: dict[str, Any]
    depends_on: set[str] = field(default_factory=set)


@dataclass
class ImportResult:
    source: Path
    notes: Notes
    functions: dict[str, Part] = field(default_factory=dict)
    destinations: dict[str, Part] = field(default_factory=dict)
    mappings: list[Part] = field(default_factory=list)
    http_triggers: list[Part] = field(default_factory=list)
    resources: list[ResourceSpec] = field(default_factory=list)
    api_listen: str = DEFAULT_API_LISTEN
    region: str = "us-east-1"
    account_id: str = "000000000000"

    def mapping_name(self, wanted: str) -> str:
        """A mapping name of the allowed characters, unique in this import."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", wanted).strip("-.") or "mapping"
        name = name[:120]
        taken = {part.data["name"] for part in self.mappings}
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}-{n}", n + 1
        return candidate

    def destination_name(self, wanted: str, data: dict[str, Any], origin: Location) -> str:
        """Add a destination (or reuse an identical one) and return its name."""
        for name, part in self.destinations.items():
            if part.data == data:
                return name
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", wanted).strip("-.") or "destination"
        candidate, n = name, 2
        while candidate in self.destinations:
            candidate, n = f"{name}-{n}", n + 1
        self.destinations[candidate] = Part(data, origin)
        return candidate


def local_path(folder: Path, given: str, cwd: Path) -> str:
    """A path of the template (relative to its folder) as the config writes it: relative
    to the folder the daemon runs in when it lies below it, else absolute."""
    path = (folder / given).resolve()
    try:
        relative = path.relative_to(cwd.resolve())
    except ValueError:
        return str(path)
    return f"./{relative.as_posix()}" if str(relative) != "." else "."

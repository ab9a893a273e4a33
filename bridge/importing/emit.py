"""An import as lambda-bridge config text: YAML whose every part carries a comment saying
where in the template it came from (`# from Resources.OrderFn.Properties.Events.Queue
(SQS)`). The output is deterministic: parts in template order, keys in a fixed order.

A `$` of the template is written `$$`, so the config's own `${VAR}` interpolation leaves
it as it was; only the references the importer means (EnvReference) stay references.
"""

from __future__ import annotations

from typing import Any

import yaml

from bridge.importing.esm import EnvReference
from bridge.importing.model import ImportResult, Part
from bridge.importing.notes import format_location

INDENT = "  "


def plain(value: Any) -> Any:
    """Config data of builtin types only, with the template's `$` escaped."""
    if isinstance(value, EnvReference):
        return str(value)
    if isinstance(value, str):
        return str(value).replace("$", "$$")
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def config_data(result: ImportResult) -> dict[str, Any]:
    """The config as data (what `emit` writes, without the comments)."""
    data: dict[str, Any] = {
        "state_dir": "./.lambda-bridge",
        "aws": {"region": result.region, "account_id": result.account_id},
    }
    if result.http_triggers:
        data["api"] = {"listen": result.api_listen}
    data["functions"] = {name: part.data for name, part in result.functions.items()}
    if result.destinations:
        data["destinations"] = {name: part.data for name, part in result.destinations.items()}
    if result.mappings:
        data["mappings"] = [part.data for part in result.mappings]
    if result.http_triggers:
        data["http_triggers"] = [part.data for part in result.http_triggers]
    return plain(data)  # type: ignore[no-any-return]


def emit(result: ImportResult, command: str) -> str:
    """The config file's text."""
    lines = [
        f"# lambda-bridge config imported from {result.source} by `{command}`.",
        "# Paths are relative to the folder it was imported in: run the daemon from there.",
    ]
    unsupported = [note for note in result.notes.items if note.unsupported]
    if unsupported:
        lines.append(
            f"# {len(unsupported)} part(s) of the template are not carried over: see the warnings."
        )
    data = config_data(result)
    lines.append(_dump({"state_dir": data["state_dir"]}).rstrip("\n"))
    for key in ("aws", "api"):
        if key in data:
            lines.append(_dump({key: data[key]}, flow=True).rstrip("\n"))
    lines.append("")
    lines.append("functions:")
    for name, part in result.functions.items():
        lines.extend(_part(part, {name: plain(part.data)}, 1))
    if result.destinations:
        lines.append("")
        lines.append("destinations:")
        for name, part in result.destinations.items():
            lines.extend(_part(part, {name: plain(part.data)}, 1))
    for section, parts in (("mappings", result.mappings), ("http_triggers", result.http_triggers)):
        if not parts:
            continue
        lines.append("")
        lines.append(f"{section}:")
        for part in parts:
            lines.extend(_part(part, [plain(part.data)], 1))
    return "\n".join(lines) + "\n"


def _part(part: Part, data: Any, depth: int) -> list[str]:
    kind = f" ({part.kind})" if part.kind else ""
    comment = f"{INDENT * depth}# from {format_location(part.origin)}{kind}"
    body = _dump(data).rstrip("\n").split("\n")
    return [comment, *(INDENT * depth + line for line in body)]


def _dump(data: Any, *, flow: bool = False) -> str:
    return yaml.safe_dump(
        data,
        sort_keys=False,
        default_flow_style=None if flow else False,
        allow_unicode=True,
        width=100,
    )

"""What a config reload changes (SIGHUP or `lambda-bridge reload`).

Mappings are compared with everything they are built from: their own settings, their
function and their on-failure destination. Added mappings start, removed ones drain and
stop, changed ones drain and start again with the new settings (what they had not
settled is delivered again by the new run), unchanged ones are not touched. Settings
the whole daemon is built on cannot change while it runs: such a reload is rejected.

Settings are compared with their secrets' real values: a rotated password or a Redis
URL moved to another server is a change. The comparison never produces text, so no
secret reaches a log line or the answer to POST /reload, which name mappings and
settings only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bridge.config.model import BridgeConfig, MappingConfig

# Top-level settings that only a restart applies (`log` configures logging at start).
RESTART_ONLY = ("state_dir", "checkpoint_store", "http", "api", "aws", "log", "limits")


@dataclass
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Functions and destinations whose clients are rebuilt (changed or gone).
    functions: set[str] = field(default_factory=set)
    destinations: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        return {
            "started": self.added,
            "stopped": self.removed,
            "restarted": self.changed,
            "unchanged": self.unchanged,
        }


def _settings(value: Any) -> Any:
    """A setting as it can be compared. A model's python dump keeps each SecretStr as
    itself, and SecretStr compares the secrets it holds; the JSON dump would have masked
    every one as the same `**********`, so a changed password would look unchanged."""
    return value.model_dump(mode="python") if isinstance(value, BaseModel) else value


def _built_from(config: BridgeConfig, mapping: MappingConfig) -> list[Any]:
    parts = [_settings(mapping), _settings(config.functions[mapping.function])]
    if mapping.on_failure is not None and mapping.on_failure in config.destinations:
        parts.append(_settings(config.destinations[mapping.on_failure]))
    return parts


def restart_only_changes(old: BridgeConfig, new: BridgeConfig) -> list[str]:
    """Problems for settings that changed but only apply at the next start."""
    return [
        f"{key}: changed; it applies only when the daemon restarts"
        for key in RESTART_ONLY
        if _settings(getattr(old, key)) != _settings(getattr(new, key))
    ]


def plan_reload(old: BridgeConfig, new: BridgeConfig) -> ReloadPlan:
    plan = ReloadPlan()
    before = {mapping.name: mapping for mapping in old.mappings}
    after = {mapping.name: mapping for mapping in new.mappings}
    for name, mapping in after.items():
        if name not in before:
            plan.added.append(name)
        elif _built_from(old, before[name]) != _built_from(new, mapping):
            plan.changed.append(name)
        else:
            plan.unchanged.append(name)
    plan.removed = [name for name in before if name not in after]
    plan.functions = {
        name
        for name, function in old.functions.items()
        if name not in new.functions or _settings(function) != _settings(new.functions[name])
    }
    plan.destinations = {
        name
        for name, destination in old.destinations.items()
        if name not in new.destinations
        or _settings(destination) != _settings(new.destinations[name])
    }
    return plan

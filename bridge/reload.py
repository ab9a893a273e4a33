"""What a config reload changes (SIGHUP or `lambda-bridge reload`).

Mappings are compared with everything they are built from: their own settings, their
function and their on-failure destination. Added mappings start, removed ones drain and
stop, changed ones drain and start again with the new settings (what they had not
settled is delivered again by the new run), unchanged ones are not touched. Settings
the whole daemon is built on cannot change while it runs: such a reload is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.codec import dumps_text
from bridge.config import BridgeConfig, MappingConfig

# Top-level settings that only a restart applies.
RESTART_ONLY = ("state_dir", "checkpoint_store", "http", "aws")


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


def _dump(model: Any) -> str:
    return dumps_text(model.model_dump(mode="json"))


def _fingerprint(config: BridgeConfig, mapping: MappingConfig) -> str:
    parts = [_dump(mapping), _dump(config.functions[mapping.function])]
    if mapping.on_failure is not None and mapping.on_failure in config.destinations:
        parts.append(_dump(config.destinations[mapping.on_failure]))
    return "\n".join(parts)


def restart_only_changes(old: BridgeConfig, new: BridgeConfig) -> list[str]:
    """Problems for settings that changed but only apply at the next start."""
    return [
        f"{key}: changed; it applies only when the daemon restarts"
        for key in RESTART_ONLY
        if _dump_value(getattr(old, key)) != _dump_value(getattr(new, key))
    ]


def _dump_value(value: Any) -> str:
    return _dump(value) if hasattr(value, "model_dump") else str(value)


def plan_reload(old: BridgeConfig, new: BridgeConfig) -> ReloadPlan:
    plan = ReloadPlan()
    before = {mapping.name: mapping for mapping in old.mappings}
    after = {mapping.name: mapping for mapping in new.mappings}
    for name, mapping in after.items():
        if name not in before:
            plan.added.append(name)
        elif _fingerprint(old, before[name]) != _fingerprint(new, mapping):
            plan.changed.append(name)
        else:
            plan.unchanged.append(name)
    plan.removed = [name for name in before if name not in after]
    plan.functions = {
        name
        for name, function in old.functions.items()
        if name not in new.functions or _dump(function) != _dump(new.functions[name])
    }
    plan.destinations = {
        name
        for name, destination in old.destinations.items()
        if name not in new.destinations or _dump(destination) != _dump(new.destinations[name])
    }
    return plan

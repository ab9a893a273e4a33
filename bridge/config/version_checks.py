"""Config checks of a function's versions and aliases (esm-reference.md 14): each version's
settings valid once merged onto the function's, each alias naming versions that exist."""

from __future__ import annotations

from pydantic import ValidationError

from bridge.config.plugins import BuildContext, ConfigPath, FunctionConfig
from bridge.config.problems import validation_messages
from bridge.config.versions import LATEST, NOT_PER_VERSION, merged_settings, version_config


def check_versions(function: FunctionConfig, context: BuildContext) -> list[tuple[ConfigPath, str]]:
    """Problems of a function's versions and aliases, as (path below the function, message)."""
    problems: list[tuple[ConfigPath, str]] = []
    for version, overrides in function.versions.items():
        at: ConfigPath = ("versions", version)
        fixed = [key for key in NOT_PER_VERSION if key in overrides]
        for key in fixed:
            problems.append(((*at, key), "is the function's, not a version's: set it above"))
        if fixed:
            continue
        try:
            settings = version_config(function, version)
        except ValidationError as exc:
            problems += [
                ((*at, *path), message)
                for path, message in validation_messages(exc, merged_settings(function, version))
            ]
            continue
        problems += [((*at, *path), message) for path, message in settings.check(context)]
    known = [LATEST, *function.versions]
    listed = ", ".join(known)
    for name, alias in function.aliases.items():
        at = ("aliases", name)
        if alias.version not in known:
            problems.append(((*at, "version"), f"no version {alias.version!r} (defined: {listed})"))
        for extra in alias.routing:
            if extra not in function.versions:
                message = f"no version {extra!r} (defined: {listed})"
                problems.append(((*at, "routing", extra), message))
            elif extra == alias.version:
                message = "the additional version must differ from the alias's version"
                problems.append(((*at, "routing", extra), message))
        if alias.routing and alias.version == LATEST:
            message = "an alias with routing must name a numbered version, not $LATEST (as on AWS)"
            problems.append(((*at, "version"), message))
    return problems

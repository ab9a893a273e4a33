"""Reading a config file: size and encoding limits, YAML with positions, ${VAR} interpolation,
validation by the models, then the checks pydantic cannot make."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bridge.config.checks import check_config
from bridge.config.model import LoadedConfig, config_model, used_types
from bridge.config.problems import describe, non_json_patterns, unknown_types
from bridge.config.yamlsource import interpolate, parse_yaml
from bridge.errors import ConfigError


def load_config(
    path: Path, *, environ: dict[str, str] | None = None, handler_root: Path | None = None
) -> LoadedConfig:
    """Read, interpolate, validate and check a config file; raise ConfigError listing
    every problem as `file:line: key.path: message`."""
    return load_config_text(
        read_config_text(path), str(path), environ=environ, handler_root=handler_root
    )


# A config is kilobytes; parsing this much YAML already takes seconds.
MAX_CONFIG_BYTES = 2 * 1024 * 1024


def read_config_text(path: Path) -> str:
    """The file's text; ConfigError if it cannot be read, is too large or is not UTF-8."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        limit = MAX_CONFIG_BYTES // (1024 * 1024)
        raise ConfigError([f"{path}: the config file is larger than {limit} MB"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        problem = f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})"
        raise ConfigError([f"{path}:{line}: {problem}"]) from None


def load_config_text(
    text: str, name: str, *, environ: dict[str, str] | None = None, handler_root: Path | None = None
) -> LoadedConfig:
    document = parse_yaml(text, name)
    interpolate(document, environ)
    if not isinstance(document.data, dict):
        raise ConfigError([f"{name}:1: the config file must be a mapping of settings"])
    unknown = unknown_types(document.data)
    not_json, bad_patterns = non_json_patterns(document)
    try:
        config = config_model(used_types(document.data)).model_validate(document.data)
    except ValidationError as exc:
        skip = [path for path, _ in unknown] + [(*path, "") for path in bad_patterns]
        described = describe(exc, document, skip=skip)
        unknown_keys = [document.problem(path, message) for path, message in unknown]
        raise ConfigError(unknown_keys + not_json + described) from None
    if not_json:
        raise ConfigError(not_json)
    loaded = LoadedConfig(config, name, handler_root or Path.cwd())
    found, warnings = check_config(loaded)
    problems = [document.problem(path, message) for path, message in found]
    loaded.warnings = [document.problem(path, message) for path, message in warnings]
    if problems:
        raise ConfigError(problems)
    return loaded

"""Does the supervisor give the daemon enough time to drain on SIGTERM?

On SIGTERM the daemon lets in-flight batches run for up to `drain_timeout_seconds`, then
saves checkpoints and closes its clients. A supervisor that kills it sooner (systemd's
TimeoutStopSec, docker's stop_grace_period) cuts a batch off mid-invocation: its records
are delivered again after the restart although the function already ran. These helpers
read the stop timeouts visible in a unit file or a compose file and say which are too short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Saving checkpoints and closing clients after the drain deadline.
CHECKPOINT_MARGIN_SECONDS = 5.0
SYSTEMD_DEFAULT_STOP_TIMEOUT = 90.0
DOCKER_DEFAULT_STOP_GRACE_PERIOD = 10.0

_MINUTE = 60.0
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

_SYSTEMD_UNITS = {
    **dict.fromkeys(("usec", "us", "µs", "μs"), 1e-6),
    **dict.fromkeys(("msec", "ms"), 1e-3),
    **dict.fromkeys(("", "seconds", "second", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "min", "m"), _MINUTE),
    **dict.fromkeys(("hours", "hour", "hr", "h"), _HOUR),
    **dict.fromkeys(("days", "day", "d"), _DAY),
    **dict.fromkeys(("weeks", "week", "w"), 7 * _DAY),
    **dict.fromkeys(("months", "month", "M"), 30.44 * _DAY),
    **dict.fromkeys(("years", "year", "y"), 365.25 * _DAY),
}
_GO_UNITS = {
    "ns": 1e-9,
    **dict.fromkeys(("us", "µs", "μs"), 1e-6),
    "ms": 1e-3,
    "s": 1.0,
    "m": _MINUTE,
    "h": _HOUR,
}
_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_SYSTEMD_PART = re.compile(rf"\s*({_NUMBER})\s*([a-zA-Zµμ]*)")
_GO_PART = re.compile(rf"({_NUMBER})([a-zµμ]+)")


def _sum_of_parts(
    text: str, part_pattern: re.Pattern[str], units: dict[str, float], problem: str
) -> float:
    """A duration written as number-unit parts (`1min 30s`, `1m30s`), in seconds."""
    total, position = 0.0, 0
    while position < len(text):
        part = part_pattern.match(text, position)
        if part is None or part.group(2) not in units:
            raise ValueError(problem)
        total += float(part.group(1)) * units[part.group(2)]
        position = part.end()
    return total


def parse_systemd_timespan(text: str) -> float | None:
    """Seconds in a systemd time span (`45`, `45s`, `2min`, `1min 30s`, `500ms`, `1h`);
    None for `infinity` (no limit). A number without unit is seconds."""
    stripped = text.strip()
    if stripped == "infinity":
        return None
    if not stripped:
        raise ValueError("empty time span")
    return _sum_of_parts(
        stripped, _SYSTEMD_PART, _SYSTEMD_UNITS, f"not a systemd time span: {text!r}"
    )


def parse_compose_duration(text: str) -> float:
    """Seconds in a compose (Go) duration: `1m30s`, `10s`, `1h`, `500ms`; a bare `0`."""
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    if not stripped:
        raise ValueError("empty duration")
    return _sum_of_parts(stripped, _GO_PART, _GO_UNITS, f"not a duration such as '1m30s': {text!r}")


@dataclass(frozen=True)
class _StopSetting:
    origin: str  # file the setting was read from, or a description
    setting: str  # as it would be written, e.g. "TimeoutStopSec=45s"
    seconds: float | None  # None: no limit
    supervisor: str
    service: str = ""  # compose service name


def _read(path: Path) -> str:
    """A unit or compose file's text; ValueError naming the file if it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None


def _unit_stop_setting(path: Path) -> _StopSetting:
    setting = f"TimeoutStopSec unset (systemd's default {SYSTEMD_DEFAULT_STOP_TIMEOUT:g}s)"
    seconds: float | None = SYSTEMD_DEFAULT_STOP_TIMEOUT
    for key, value in _unit_assignments(path, "Service"):
        if key not in ("TimeoutStopSec", "TimeoutSec"):
            continue
        if not value:
            # An empty assignment resets the setting to the default.
            setting = f"{key}= (systemd's default {SYSTEMD_DEFAULT_STOP_TIMEOUT:g}s)"
            seconds = SYSTEMD_DEFAULT_STOP_TIMEOUT
            continue
        try:
            parsed = parse_systemd_timespan(value)
        except ValueError as error:
            raise ValueError(f"{path}: {key}={value}: {error}") from None
        setting = f"{key}={value}s" if re.fullmatch(_NUMBER, value) else f"{key}={value}"
        seconds = None if parsed == 0 else parsed  # 0 disables the timeout, as infinity
    return _StopSetting(str(path), setting, seconds, "systemd")


def _unit_assignments(path: Path, section: str) -> list[tuple[str, str]]:
    """`Key=value` pairs of one section, in order, continuation lines joined."""
    pairs: list[tuple[str, str]] = []
    current, pending = "", ""
    for raw in _read(path).splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def unit_stop_timeout(path: Path) -> float | None:
    """Seconds systemd waits after SIGTERM for this unit (TimeoutStopSec=, or TimeoutSec=,
    in [Service]; 90 when absent); None when there is no limit. Drop-ins and a changed
    DefaultTimeoutStopSec are not seen."""
    return _unit_stop_setting(path).seconds


def _runs_lambda_bridge(name: str, service: dict[str, Any]) -> bool:
    build = service.get("build")
    if isinstance(build, dict):
        build = [build.get("context"), build.get("dockerfile")]
    described = [name, build, *(service.get(key) for key in ("image", "entrypoint", "command"))]
    return any("lambda-bridge" in str(part) for part in described if part)


def _compose_stop_settings(path: Path, service: str | None) -> list[_StopSetting]:
    try:
        document = yaml.safe_load(_read(path))
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        raise ValueError(f"{path}:{line}: not YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not YAML: {str(error).splitlines()[0]}") from None
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        raise ValueError(f"{path}: no services")
    if service is not None and service not in services:
        raise ValueError(f"{path}: no service {service!r}")
    settings = []
    for name, written in services.items():
        definition: dict[str, Any] = written if isinstance(written, dict) else {}
        wanted = name == service if service is not None else _runs_lambda_bridge(name, definition)
        if not wanted:
            continue
        value = definition.get("stop_grace_period")
        key = f"services.{name}.stop_grace_period"
        if value is None:
            default = DOCKER_DEFAULT_STOP_GRACE_PERIOD
            setting = f"{key} unset (docker's default {default:g}s)"
            settings.append(_StopSetting(str(path), setting, default, "docker", name))
            continue
        if not isinstance(value, str):
            raise ValueError(f"{path}: {key}: write a duration such as '45s', not {value!r}")
        try:
            seconds = parse_compose_duration(value)
        except ValueError as error:
            raise ValueError(f"{path}: {key}: {error}") from None
        settings.append(_StopSetting(str(path), f"{key}={value}", seconds, "docker", name))
    if not settings:
        raise ValueError(f"{path}: no service runs lambda-bridge")
    return settings


def compose_stop_timeouts(path: Path, service: str | None = None) -> dict[str, float]:
    """stop_grace_period in seconds (10 when absent) of each compose service that runs
    lambda-bridge (its name, image, build, entrypoint or command says so), or of `service`
    alone. Raises ValueError for a file without such a service or with an unreadable
    duration."""
    return {
        setting.service: setting.seconds
        for setting in _compose_stop_settings(path, service)
        if setting.seconds is not None
    }


def stop_timeout_warnings(
    drain_seconds: float,
    *,
    stop_timeout: float | None = None,
    unit_file: Path | None = None,
    compose_file: Path | None = None,
) -> list[str]:
    """One line per visible stop timeout shorter than the drain deadline plus the time to
    save checkpoints, naming where it comes from. Raises ValueError for a setting that
    cannot be read."""
    settings: list[_StopSetting] = []
    if stop_timeout is not None:
        setting = f"stop timeout {stop_timeout:g}s"
        settings.append(_StopSetting("", setting, stop_timeout, "the supervisor"))
    if unit_file is not None:
        settings.append(_unit_stop_setting(unit_file))
    if compose_file is not None:
        settings.extend(_compose_stop_settings(compose_file, None))
    needed = drain_seconds + CHECKPOINT_MARGIN_SECONDS
    return [
        f"{setting.origin + ': ' if setting.origin else ''}{setting.setting} is shorter than "
        f"drain_timeout_seconds ({drain_seconds:g}) plus {CHECKPOINT_MARGIN_SECONDS:g} s to "
        f"save checkpoints; {setting.supervisor} would kill the daemon mid-drain"
        for setting in settings
        if setting.seconds is not None and setting.seconds < needed
    ]

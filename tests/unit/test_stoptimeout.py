"""Reading systemd and compose stop timeouts, and the warnings when they cut the drain short."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli.stoptimeout import (
    compose_stop_timeouts,
    parse_compose_duration,
    parse_systemd_timespan,
    stop_timeout_warnings,
    unit_stop_timeout,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45", 45.0),
        ("45s", 45.0),
        ("2min", 120.0),
        ("1min 30s", 90.0),
        ("1min30s", 90.0),
        ("1h", 3600.0),
        ("1h 1s", 3601.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("90sec", 90.0),
        ("2 minutes", 120.0),
        ("0", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_systemd_timespans(text: str, seconds: float) -> None:
    assert parse_systemd_timespan(text) == pytest.approx(seconds)


def test_systemd_infinity_means_no_limit() -> None:
    assert parse_systemd_timespan("infinity") is None


@pytest.mark.parametrize("text", ["", "soon", "45x", "-5", "1min and 30s", "s", "1..5s"])
def test_systemd_timespan_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_systemd_timespan(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90.0),
        ("10s", 10.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
        ("2h0m5s", 7205.0),
        ("0", 0.0),
    ],
)
def test_compose_durations(text: str, seconds: float) -> None:
    assert parse_compose_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1m 30s", "1min", "-5s", "infinity", "5S"])
def test_compose_duration_garbage(text: str) -> None:
    """Go durations need a unit on every number and no spaces; `min` is systemd's."""
    with pytest.raises(ValueError):
        parse_compose_duration(text)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def unit(tmp_path: Path, service_lines: str) -> Path:
    body = "[Unit]\nDescription=x\n# TimeoutStopSec=1 in a comment\n[Service]\n"
    return write(tmp_path / "lambda-bridge.service", body + textwrap.dedent(service_lines))


def test_unit_stop_timeout(tmp_path: Path) -> None:
    """TimeoutStopSec= or TimeoutSec= of [Service], the later one winning; 90 s when absent;
    0 and infinity mean no limit."""
    assert unit_stop_timeout(unit(tmp_path, "TimeoutStopSec=45\n")) == 45.0
    assert unit_stop_timeout(unit(tmp_path, "TimeoutSec=2min\n")) == 120.0
    assert unit_stop_timeout(unit(tmp_path, "TimeoutSec=2min\nTimeoutStopSec=1min 5s\n")) == 65.0
    assert unit_stop_timeout(unit(tmp_path, "TimeoutStopSec=1min\nTimeoutSec=20\n")) == 20.0
    assert unit_stop_timeout(unit(tmp_path, "ExecStart=/bin/true\n")) == 90.0
    assert unit_stop_timeout(unit(tmp_path, "TimeoutStopSec=10\nTimeoutStopSec=\n")) == 90.0
    assert unit_stop_timeout(unit(tmp_path, "TimeoutStopSec=infinity\n")) is None
    assert unit_stop_timeout(unit(tmp_path, "TimeoutStopSec=0\n")) is None


def test_unit_settings_of_other_sections_do_not_count(tmp_path: Path) -> None:
    """Only [Service] holds the service's stop timeout; continuation lines are joined."""
    path = write(
        tmp_path / "x.service",
        """\
        [Unit]
        TimeoutStopSec=5
        [Service]
        ExecStart=/bin/echo a \\
          TimeoutStopSec=7
        [Install]
        TimeoutStopSec=9
        """,
    )
    assert unit_stop_timeout(path) == 90.0


def test_unreadable_unit_timeout_names_the_file(tmp_path: Path) -> None:
    path = unit(tmp_path, "TimeoutStopSec=a while\n")
    with pytest.raises(ValueError, match=r"lambda-bridge\.service: TimeoutStopSec=a while"):
        unit_stop_timeout(path)


COMPOSE = """\
services:
  redis:
    image: redis:7-alpine
  bridge-from-image:
    image: ghcr.io/example/lambda-bridge:1.2
    stop_grace_period: 1m30s
  bridge-built:
    build: {context: .., dockerfile: deploy/Dockerfile}
    command: [lambda-bridge, run]
  lambda-bridge:
    build: ..
    stop_grace_period: 20s
"""


def test_compose_stop_timeouts_of_the_bridge_services(tmp_path: Path) -> None:
    """Services running lambda-bridge by image, build, command or name; 10 s when unset."""
    path = write(tmp_path / "compose.yaml", COMPOSE)
    assert compose_stop_timeouts(path) == {
        "bridge-from-image": 90.0,
        "bridge-built": 10.0,
        "lambda-bridge": 20.0,
    }


def test_compose_stop_timeout_of_one_named_service(tmp_path: Path) -> None:
    path = write(tmp_path / "compose.yaml", COMPOSE)
    assert compose_stop_timeouts(path, "redis") == {"redis": 10.0}
    assert compose_stop_timeouts(path, "lambda-bridge") == {"lambda-bridge": 20.0}
    with pytest.raises(ValueError, match="no service 'worker'"):
        compose_stop_timeouts(path, "worker")


def test_compose_problems_are_errors(tmp_path: Path) -> None:
    """No bridge service, a number instead of a duration, or a bad duration: ValueError
    naming the file and key, not a silent pass."""
    no_bridge = write(tmp_path / "a.yaml", "services:\n  redis: {image: redis}\n")
    with pytest.raises(ValueError, match="no service runs lambda-bridge"):
        compose_stop_timeouts(no_bridge)
    number = write(tmp_path / "b.yaml", "services:\n  lambda-bridge: {stop_grace_period: 45}\n")
    with pytest.raises(ValueError, match=r"services\.lambda-bridge\.stop_grace_period: write"):
        compose_stop_timeouts(number)
    bad = write(tmp_path / "c.yaml", "services:\n  lambda-bridge: {stop_grace_period: 45sec}\n")
    with pytest.raises(ValueError, match=r"c\.yaml: services\.lambda-bridge\.stop_grace_period"):
        compose_stop_timeouts(bad)
    with pytest.raises(ValueError, match="no services"):
        compose_stop_timeouts(write(tmp_path / "d.yaml", "version: '3'\n"))


def test_warning_for_a_short_unit_timeout(tmp_path: Path) -> None:
    path = unit(tmp_path, "TimeoutStopSec=45\n")
    assert stop_timeout_warnings(60, unit_file=path) == [
        f"{path}: TimeoutStopSec=45s is shorter than drain_timeout_seconds (60) plus 5 s to "
        "save checkpoints; systemd would kill the daemon mid-drain"
    ]


def test_the_margin_is_part_of_the_requirement(tmp_path: Path) -> None:
    """A stop timeout of exactly drain + 5 s is enough; drain + 4.5 s is not."""
    assert stop_timeout_warnings(40, unit_file=unit(tmp_path, "TimeoutStopSec=45\n")) == []
    assert stop_timeout_warnings(40.5, unit_file=unit(tmp_path, "TimeoutStopSec=45\n")) != []
    assert stop_timeout_warnings(2.5, stop_timeout=7.5) == []
    assert stop_timeout_warnings(2.5, stop_timeout=7.4) == [
        "stop timeout 7.4s is shorter than drain_timeout_seconds (2.5) plus 5 s to save "
        "checkpoints; the supervisor would kill the daemon mid-drain"
    ]


def test_unit_defaults_and_unlimited_timeouts(tmp_path: Path) -> None:
    """Without TimeoutStopSec systemd's 90 s applies; infinity never warns."""
    default = unit(tmp_path, "ExecStart=/bin/true\n")
    assert stop_timeout_warnings(80, unit_file=default) == []
    [warning] = stop_timeout_warnings(86, unit_file=default)
    assert "TimeoutStopSec unset (systemd's default 90s) is shorter" in warning
    unlimited = unit(tmp_path, "TimeoutSec=infinity\n")
    assert stop_timeout_warnings(3600, unit_file=unlimited) == []


def test_compose_warnings_name_each_short_service(tmp_path: Path) -> None:
    """For a 30 s drain, 20 s and docker's default 10 s are too short, 1m30s is enough."""
    path = write(tmp_path / "compose.yaml", COMPOSE)
    tail = " is shorter than drain_timeout_seconds (30) plus 5 s to save checkpoints; docker would kill the daemon mid-drain"
    assert stop_timeout_warnings(30, compose_file=path) == [
        f"{path}: services.bridge-built.stop_grace_period unset (docker's default 10s){tail}",
        f"{path}: services.lambda-bridge.stop_grace_period=20s{tail}",
    ]


def test_every_source_is_checked_together(tmp_path: Path) -> None:
    """The explicit timeout, the unit and the compose file each get their own line."""
    compose = write(
        tmp_path / "compose.yaml", "services:\n  lambda-bridge: {stop_grace_period: 1m}\n"
    )
    short_unit = unit(tmp_path, "TimeoutStopSec=30\n")
    warnings = stop_timeout_warnings(
        60, stop_timeout=64, unit_file=short_unit, compose_file=compose
    )
    assert [line.split(" is shorter")[0] for line in warnings] == [
        "stop timeout 64s",
        f"{short_unit}: TimeoutStopSec=30s",
        f"{compose}: services.lambda-bridge.stop_grace_period=1m",
    ]
    assert stop_timeout_warnings(60) == []

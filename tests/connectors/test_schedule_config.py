"""The `schedule` source's settings as a config file states them: problems reported as
`file:line: key: message`, the asynchronous invocation's defaults and limits, and the
warnings `validate` shows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.config.loading import load_config_text
from bridge.errors import ConfigError
from bridge.pipeline.settings import resolve


def config(source: str, mapping_extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        functions:
          f: {{invoker: python, handler: handler.py:handler}}
        mappings:
          - name: ticks
            function: f
            source: {source}
        {mapping_extra}"""
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "bridge.yaml", environ={})
    return caught.value.problems


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")


def test_defaults_are_an_asynchronous_invocations() -> None:
    loaded = load_config_text(
        config('{type: schedule, expression: "rate(5 minutes)"}'), "bridge.yaml", environ={}
    )
    settings = resolve(loaded.config.mappings[0])
    assert settings.batch.max_records == 1
    assert settings.retry.maximum_retry_attempts == 2
    assert settings.retry.maximum_record_age_in_seconds == 21_600
    assert settings.maximum_concurrency == 10
    assert settings.keyed
    assert loaded.warnings == []


@pytest.mark.parametrize(
    ("catch_up", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2 hours", 7200), ("1d", 86_400), ("7 days", 604_800)],
)
def test_catch_up_takes_seconds_or_a_duration(catch_up: str, seconds: int) -> None:
    loaded = load_config_text(
        config(f'{{type: schedule, expression: "rate(5 minutes)", catch_up: {catch_up}}}'),
        "bridge.yaml",
        environ={},
    )
    assert loaded.config.mappings[0].source.catch_up == seconds  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "mapping_extra", "expected"),
    [
        (
            '{type: schedule, expression: "rate(1 minutes)"}',
            "",
            "bridge.yaml:6: mappings[0].source.expression: Parameter ScheduleExpression is not "
            "valid. (rate(1 ...) is written with 'minute', not 'minutes')",
        ),
        (
            '{type: schedule, expression: "rate(99999999999999999999 minutes)"}',
            "",
            "bridge.yaml:6: mappings[0].source.expression: Parameter ScheduleExpression is not "
            "valid. (the rate's interval is at most 120968640 minutes: a longer one would "
            "next fire after the year 2199)",
        ),
        (
            '{type: schedule, expression: "rate(1 hour)", timezone: Europe/Atlantis}',
            "",
            "bridge.yaml:6: mappings[0].source.timezone: 'Europe/Atlantis' is not an IANA time "
            "zone (e.g. Europe/Berlin)",
        ),
        (
            '{type: schedule, expression: "rate(1 hour)", catch_up: 8d}',
            "",
            "bridge.yaml:6: mappings[0].source.catch_up: Input should be less than or equal "
            "to 604800",
        ),
        (
            '{type: schedule, expression: "rate(1 hour)", catch_up: soon}',
            "",
            "bridge.yaml:6: mappings[0].source.catch_up: must be seconds, or a duration such "
            "as 90s, 15m, 2h or 1d",
        ),
        (
            '{type: schedule, expression: "rate(1 hour)"}',
            "    maximum_retry_attempts: 3\n",
            "bridge.yaml:7: mappings[0].maximum_retry_attempts: must be 0 to 2 for schedule "
            "sources, as on AWS",
        ),
        (
            '{type: schedule, expression: "rate(1 hour)"}',
            "    batch_size: 10\n",
            "bridge.yaml:7: mappings[0].batch_size: does not apply to schedule sources",
        ),
    ],
)
def test_problems_point_at_the_setting(source: str, mapping_extra: str, expected: str) -> None:
    assert expected in problems(config(source, mapping_extra))


def test_validate_warns_about_what_aws_would_not_do() -> None:
    loaded = load_config_text(
        config('{type: schedule, expression: "rate(10 seconds)"}')
        + "  - name: past\n    function: f\n"
        + '    source: {type: schedule, expression: "at(2020-01-01T00:00:00)"}\n',
        "bridge.yaml",
        environ={},
    )
    assert loaded.warnings == [
        "bridge.yaml:6: mappings[0].source.expression: a rate in seconds works only here: on "
        "AWS the smallest rate is 1 minute",
        "bridge.yaml:9: mappings[1].source.expression: at(2020-01-01T00:00:00) is in the "
        "past: the schedule will not fire",
    ]

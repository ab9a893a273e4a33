"""Config files a user got wrong: strict types, numbers from the environment, YAML that
is not a config (alias bombs, deep nesting, bad bytes), and folders that cannot work."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from bridge.config.loading import load_config, load_config_text
from bridge.errors import ConfigError
from tests.unit.config_support import VALID, problems


def with_mapping_settings(settings: str) -> str:
    return VALID.replace("    function: f\n", f"    function: f\n{settings}")


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("batch_size: true", "mappings[0].batch_size: should be an integer, not a boolean"),
        ("batch_size: '10'", "mappings[0].batch_size: should be an integer, not a string"),
        ("batch_size: 10.5", "mappings[0].batch_size: should be an integer, not a float"),
        ("batch_size: 10.0", "mappings[0].batch_size: should be an integer, not a float"),
        ("enabled: 1", "mappings[0].enabled: should be true or false, not an integer"),
        ("enabled: 'true'", "mappings[0].enabled: should be true or false, not a string"),
        (
            "maximum_batching_window_in_seconds: '2'",
            "mappings[0].maximum_batching_window_in_seconds: should be a number, not a string",
        ),
        (
            "maximum_batching_window_in_seconds: false",
            "mappings[0].maximum_batching_window_in_seconds: should be a number, not a boolean",
        ),
        (
            "maximum_batching_window_in_seconds: .nan",
            "mappings[0].maximum_batching_window_in_seconds: Input should be a finite number",
        ),
    ],
)
def test_numbers_and_booleans_are_typed_strictly(workdir: Path, setting: str, problem: str) -> None:
    """A boolean is never a number, a string never a number or boolean, a float never an
    integer: each is reported at its line, naming what was given."""
    assert problems(with_mapping_settings(f"    {setting}\n")) == [f"bridge.yaml:10: {problem}"]


def test_strict_types_hold_in_connector_and_function_settings(workdir: Path) -> None:
    """Connector settings (files source, file destination) and function settings are as
    strict as the mapping's, and a path must be a string."""
    text = (
        VALID.replace(
            "handler: handler.py:handler", "handler: handler.py:handler\n    timeout: '3'"
        )
        .replace("path: ./inbox}", "path: ./inbox, recursive: 'no'}")
        .replace("path: ./failed}", "path: 5}")
    )
    assert problems(text) == [
        "bridge.yaml:5: functions.f.timeout: should be a number, not a string",
        "bridge.yaml:7: destinations.failed.path: should be a path (a string), not an integer",
        "bridge.yaml:11: mappings[0].source.recursive: should be true or false, not a string",
    ]


def test_what_yaml_gives_legitimately_is_kept(workdir: Path) -> None:
    """An integer where a float is wanted, and paths written as strings, are fine."""
    text = VALID.replace(
        "handler: handler.py:handler", "handler: handler.py:handler\n    timeout: 5"
    )
    loaded = load_config_text(text, "bridge.yaml", environ={})
    assert loaded.config.functions["f"].timeout == 5.0
    assert loaded.config.mappings[0].source.path == Path("inbox")  # type: ignore[attr-defined]


def test_a_whole_reference_in_a_numeric_setting_is_read_as_yaml(workdir: Path) -> None:
    """`batch_size: ${BATCH:-10}` is a number, from the default or the environment; the
    same for floats and booleans; a value that is not a number is still an error, and a
    reference that is part of a string stays a string."""
    text = with_mapping_settings(
        "    batch_size: ${BATCH:-10}\n"
        "    maximum_batching_window_in_seconds: ${WINDOW:-0.5}\n"
        "    bisect_batch_on_function_error: ${BISECT:-true}\n"
    )
    mapping = load_config_text(text, "bridge.yaml", environ={}).config.mappings[0]
    assert (mapping.batch_size, mapping.maximum_batching_window_in_seconds) == (10, 0.5)
    assert mapping.bisect_batch_on_function_error is True
    environ = {"BATCH": "25", "WINDOW": "2", "BISECT": "false"}
    mapping = load_config_text(text, "bridge.yaml", environ=environ).config.mappings[0]
    assert (mapping.batch_size, mapping.maximum_batching_window_in_seconds) == (25, 2.0)
    assert mapping.bisect_batch_on_function_error is False
    assert problems(text, {"BATCH": "ten"}) == [
        "bridge.yaml:10: mappings[0].batch_size: should be an integer, not a string"
    ]
    assert problems(with_mapping_settings("    batch_size: 1${BATCH}\n"), {"BATCH": "0"}) == [
        "bridge.yaml:10: mappings[0].batch_size: should be an integer, not a string"
    ]
    token = VALID + "http: {token: '${TOKEN}'}\n"
    loaded = load_config_text(token, "bridge.yaml", environ={"TOKEN": "12345"})
    assert loaded.config.http.token == "12345"


def test_a_value_of_the_wrong_shape_is_one_line(workdir: Path) -> None:
    """A value that none of a union's types accepts is one line listing them; a section
    that is not a mapping or a list, or a function without `invoker`, says so."""
    text = VALID.replace(
        "path: ./inbox}", "path: ./inbox}\n    filter_criteria: {filters: [{pattern: 5}]}"
    )
    assert problems(text) == [
        "bridge.yaml:11: mappings[0].filter_criteria.filters[0].pattern: "
        "should be a string or a mapping, not an integer"
    ]
    assert problems("functions:\n  f: 5\n") == [
        "bridge.yaml:2: functions.f: should be a mapping of settings, not an integer"
    ]
    assert problems("functions:\n  f: {handler: h.py:handler}\n") == [
        "bridge.yaml:2: functions.f.invoker: required key is missing"
    ]
    assert problems(VALID.replace("mappings:\n", "mappings: 5\nx:\n")) == [
        "bridge.yaml:7: mappings: should be a list, not an integer",
        "bridge.yaml:8: x: unknown key",
    ]
    [problem] = problems("functions:\n  f: {invoker: [python]}\n")
    assert problem.startswith("bridge.yaml:2: functions.f.invoker: unknown invoker ['python']")


BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_quickly(workdir: Path) -> None:
    """Nested anchors that expand to hundreds of millions of nodes are refused, at the
    line of the anchor whose aliases blow up, before anything walks the expansion (a
    generous bound: walking it would take minutes and gigabytes)."""
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB
    started = time.monotonic()
    [problem] = problems(text)
    assert time.monotonic() - started < 5
    assert problem.startswith("bridge.yaml:8: invalid YAML: the aliases of this anchor expand")
    assert "at most 100000 are allowed" in problem


def test_an_anchor_holding_its_own_alias_is_refused(workdir: Path) -> None:
    """A recursive alias would make every walk endless."""
    assert problems("functions: &f {g: *f}\n") == [
        "bridge.yaml:1: invalid YAML: an anchor contains an alias of itself"
    ]


def test_merge_keys_and_a_few_aliases_still_work(workdir: Path) -> None:
    """`<<: *defaults` and aliases of small anchors are ordinary YAML and keep working."""
    text = """\
        functions:
          f: &defaults {invoker: python, handler: handler.py:handler, timeout: 7}
          g: {<<: *defaults, timeout: 9}
        mappings:
          - &inbox {name: a, function: f, source: {type: files, path: ./inbox}}
          - {<<: *inbox, name: b, function: g}
        """
    config = load_config_text(textwrap.dedent(text), "bridge.yaml", environ={}).config
    assert (config.functions["f"].timeout, config.functions["g"].timeout) == (7, 9)
    assert [(mapping.name, mapping.function) for mapping in config.mappings] == [
        ("a", "f"),
        ("b", "g"),
    ]
    assert config.mappings[1].source.path == Path("inbox")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- functions\n", "bridge.yaml:1: the config file must be a mapping of settings"),
        ("just text\n", "bridge.yaml:1: the config file must be a mapping of settings"),
        ("", "bridge.yaml:1: functions: required key is missing"),
        (
            "functions:\n\tf: {}\n",
            "bridge.yaml:2: invalid YAML: found character '\\t' that cannot start any token",
        ),
        (
            "functions: {f: !custom x}\n",
            "bridge.yaml:1: invalid YAML: could not determine a constructor for the tag '!custom'",
        ),
        (
            'functions: {f: {invoker: python, handler: handler.py:handler}}\n"a\\nb": 1\n',
            "bridge.yaml:2: 'a\\nb': unknown key",
        ),
        (
            "functions:\n  f: {timeout: !!int abc}\n",
            "bridge.yaml:2: invalid YAML: 'abc' cannot be read as !!int",
        ),
        (
            "functions: \x07\n",
            "bridge.yaml:1: invalid YAML: character #x0007 is not allowed in YAML",
        ),
        (
            "a: " + "[" * 100 + "]" * 100 + "\n",
            "bridge.yaml:1: invalid YAML: nested more than 64 levels deep",
        ),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "bridge.yaml:1: invalid YAML: nested too deeply"),
    ],
)
def test_yaml_that_is_not_a_config_is_one_line(workdir: Path, text: str, problem: str) -> None:
    """A list, a scalar, an empty file, tabs, a key with a line break, unknown tags, a
    tagged value its text does not fit, control characters and deep nesting each give
    one line with the file and line."""
    assert problems(text) == [problem]


def test_config_file_bytes_are_checked(workdir: Path) -> None:
    """A file that is not UTF-8 names the line and the byte; a huge file or a device that
    never ends is refused without reading it all; a folder cannot be read."""
    bad = workdir / "latin1.yaml"
    bad.write_bytes(b"functions:\n  # caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems == [f"{bad}:2: not UTF-8 text (byte 0xe9 at offset 18)"]
    huge = workdir / "huge.yaml"
    huge.write_text("# padding\n" * 300_000)
    with pytest.raises(ConfigError) as caught:
        load_config(huge)
    assert caught.value.problems == [f"{huge}: the config file is larger than 2 MB"]
    with pytest.raises(ConfigError) as caught:
        load_config(Path("/dev/zero"))
    assert caught.value.problems == ["/dev/zero: the config file is larger than 2 MB"]
    with pytest.raises(ConfigError) as caught:
        load_config(workdir)
    assert caught.value.problems == [f"{workdir}: cannot read the config file: Is a directory"]


def test_folders_that_cannot_work_are_reported(workdir: Path) -> None:
    """state_dir, a file destination's path and a files source's path that are files, or
    lie below a file, are problems at their line: validate sees what run would hit."""
    (workdir / "taken").write_text("a file")
    text = "state_dir: ./taken\n" + VALID.replace("path: ./failed", "path: ./taken/failed").replace(
        "path: ./inbox", "path: ./taken"
    )
    assert problems(text) == [
        "bridge.yaml:1: state_dir: 'taken' is not a folder",
        f"bridge.yaml:7: destinations.failed.path: 'taken/failed' cannot be created: '{workdir / 'taken'}' is a file",
        "bridge.yaml:11: mappings[0].source.path: 'taken' is not a folder",
    ]


def test_an_empty_path_is_an_error_not_the_current_folder(workdir: Path) -> None:
    """`path: ""` would quietly watch (or write into) the folder the daemon runs in."""
    text = VALID.replace("path: ./inbox", 'path: ""')
    assert problems(text) == [
        "bridge.yaml:10: mappings[0].source.path: must not be empty (write . for the folder the daemon runs in)"
    ]

"""Loading the config file: validation with file, line and key; interpolation; defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config.loading import load_config, load_config_text
from bridge.config.registry import registered
from bridge.pipeline.settings import resolve
from tests.unit.config_support import VALID, problems

REPO = Path(__file__).resolve().parents[2]


def test_every_config_in_the_repository_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/*.yaml load without errors from the repository root, given the variables
    the AWS examples name their resources by."""
    monkeypatch.chdir(REPO)
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files
    names = {
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
        "FAILURE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-failed",
        "STREAM": "orders",
        "TABLE": "orders",
        "FAILURE_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:orders-failed",
        "LAMBDA_BRIDGE_HTTP_TOKEN": "test-token",
    }
    for path in files:
        loaded = load_config(path, environ=names)
        assert loaded.config.mappings


def test_valid_config_and_family_defaults(workdir: Path) -> None:
    """Unset folder settings take the defaults of S3's asynchronous invocation: one record
    per event, ten files at once, each in order, two retries, six hours at most."""
    loaded = load_config_text(VALID, "bridge.yaml", environ={})
    settings = resolve(loaded.config.mappings[0])
    assert settings.batch.max_records == 1
    assert settings.batch.window == 0
    assert settings.retry.maximum_retry_attempts == 2
    assert settings.retry.maximum_record_age_in_seconds == 21600
    assert settings.maximum_concurrency == 10
    assert settings.keyed
    assert not settings.retry.bisect_batch_on_function_error
    assert loaded.config.mappings[0].on_failure == "failed"


def test_errors_name_file_line_and_key(workdir: Path) -> None:
    """A bad value is reported as file:line: key.path: reason."""
    text = VALID.replace("    function: f\n", "    function: f\n    batch_size: 0\n")
    assert problems(text) == [
        "bridge.yaml:10: mappings[0].batch_size: Input should be greater than or equal to 1"
    ]


def test_unknown_key_suggests_the_right_one(workdir: Path) -> None:
    """Typos are errors, with a suggestion."""
    text = VALID.replace("    function: f\n", "    function: f\n    batchsize: 5\n")
    assert problems(text) == [
        "bridge.yaml:10: mappings[0].batchsize: unknown key (did you mean 'batch_size'?)"
    ]


def test_unknown_key_inside_a_source(workdir: Path) -> None:
    """Connector settings reject unknown keys too, located inside the source."""
    text = VALID.replace(
        "source: {type: files, path: ./inbox}", "source: {type: files, path: ./inbox, pattern: x}"
    )
    [problem] = problems(text)
    assert (
        problem
        == "bridge.yaml:10: mappings[0].source.pattern: unknown key (did you mean 'patterns'?)"
    )


def test_missing_key_and_unknown_type(workdir: Path) -> None:
    """A missing required key points at its parent; an unknown source type lists the known ones."""
    text = VALID.replace("    function: f\n", "")
    assert problems(text) == ["bridge.yaml:8: mappings[0].function: required key is missing"]
    text = VALID.replace("type: files, path: ./inbox", "type: nosuch")
    known = ", ".join(sorted(registered("sources")))
    assert problems(text) == [
        f"bridge.yaml:10: mappings[0].source.type: unknown source type 'nosuch' (known: {known})"
    ]


def test_references_are_checked(workdir: Path) -> None:
    """Mappings must name a defined function and destination; names are unique."""
    text = VALID.replace("    function: f\n", "    function: g\n").replace(
        "destination: failed}", "destination: nowhere}"
    )
    assert problems(text) == [
        "bridge.yaml:9: mappings[0].function: no function named 'g' (defined: f)",
        "bridge.yaml:11: mappings[0].destination_config.on_failure.destination: no destination named 'nowhere' (defined: failed)",
    ]
    doubled = VALID + VALID[VALID.index("  - name: inbox") :]
    assert problems(doubled) == [
        "bridge.yaml:12: mappings[1].name: another mapping is already named 'inbox'"
    ]


def test_settings_of_another_family_are_rejected(workdir: Path) -> None:
    """Queue-only settings on a stream source (and out-of-range AWS values) are errors."""
    text = VALID.replace(
        "    function: f\n",
        "    function: f\n    tumbling_window_in_seconds: 5\n    maximum_record_age_in_seconds: 30\n",
    )
    assert problems(text) == [
        "bridge.yaml:11: mappings[0].maximum_record_age_in_seconds: must be -1 (no limit) or between 60 and 604800, as on AWS",
    ]
    text = VALID.replace("    function: f\n", "    function: f\n    parallelization_factor: 2\n")
    assert problems(text) == [
        "bridge.yaml:10: mappings[0].parallelization_factor: does not apply to files sources"
    ]


def test_environment_interpolation(workdir: Path) -> None:
    """${VAR}, ${VAR:-default} and $$ are substituted; an unset variable is an error at its line."""
    text = VALID.replace("path: ./inbox", "path: '${INBOX}'").replace(
        "path: ./failed", "path: '${FAILED:-./fallback}'"
    )
    loaded = load_config_text(text, "bridge.yaml", environ={"INBOX": "./from-env"})
    assert str(loaded.config.mappings[0].source.path) == "from-env"  # type: ignore[attr-defined]
    assert str(loaded.config.destinations["failed"].path) == "fallback"  # type: ignore[attr-defined]
    assert problems(text) == [
        "bridge.yaml:10: mappings[0].source.path: environment variable INBOX is not set (write ${INBOX:-default} to give a default)"
    ]
    escaped = VALID.replace("path: ./inbox", "path: ./in$$box")
    assert (
        str(load_config_text(escaped, "bridge.yaml", environ={}).config.mappings[0].source.path)
        == "in$box"
    )  # type: ignore[attr-defined]


def test_yaml_syntax_and_duplicate_keys(workdir: Path) -> None:
    """Broken YAML and duplicate keys are reported with their line."""
    [problem] = problems("functions:\n  f: [unclosed\n")
    assert problem.startswith("bridge.yaml:3: invalid YAML")
    assert problems(VALID.replace("    function: f\n", "    function: f\n    function: f\n")) == [
        "bridge.yaml:10: mappings[0].function: duplicate key"
    ]


def test_missing_handler_file_is_reported(workdir: Path) -> None:
    """validate finds a handler file that does not exist, without running anything."""
    assert problems(VALID.replace("handler.py:handler", "missing.py:handler")) == [
        f"bridge.yaml:4: functions.f.handler: handler file '{workdir / 'missing.py'}' does not exist"
    ]


def test_cli_validate_and_schema(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate exits 0 or 2 with the problems on stderr; schema prints the JSON Schema."""
    (workdir / "good.yaml").write_text(VALID)
    (workdir / "bad.yaml").write_text(
        VALID.replace("    function: f\n", "    function: f\n    batch_size: 0\n")
    )
    assert main(["validate", "good.yaml"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["validate", "bad.yaml"]) == 2
    assert "bad.yaml:10: mappings[0].batch_size" in capsys.readouterr().err
    assert main(["validate", "absent.yaml"]) == 2
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "mappings" in schema["properties"]
    assert "FilesSourceConfig" in schema["$defs"]


def test_cli_generate_event(capsys: pytest.CaptureFixture[str]) -> None:
    """generate-event prints a sample event per source and rejects unknown sources."""
    assert main(["generate-event", "files", "--records", "2"]) == 0
    event = json.loads(capsys.readouterr().out)
    assert len(event["Records"]) == 2
    assert main(["generate-event", "nosuch"]) == 2


def test_the_admin_endpoint_needs_a_token_beyond_loopback(workdir: Path) -> None:
    exposed = VALID + 'http: {listen: "0.0.0.0:9090"}\n'
    [problem] = problems(exposed)
    assert problem.startswith("bridge.yaml:")
    assert "http.token" in problem and "0.0.0.0:9090" in problem
    for fine in ('{listen: "0.0.0.0:9090", token: abc}', '{listen: "[::1]:9090"}'):
        load_config_text(VALID + f"http: {fine}\n", "bridge.yaml")
    [bad] = problems(VALID + 'http: {listen: "localhost"}\n')
    assert "http.listen" in bad and "host:port" in bad


def test_the_lambda_api_needs_credentials_beyond_loopback(workdir: Path) -> None:
    """Off unless configured; beyond loopback it verifies SigV4 with credentials whose
    secret comes from ${VAR} and is never shown."""
    assert load_config_text(VALID, "bridge.yaml").config.api is None
    [problem] = problems(VALID + 'api: {listen: "0.0.0.0:9001"}\n')
    assert "api.credentials" in problem and "0.0.0.0:9001" in problem
    exposed = VALID + (
        'api: {listen: "0.0.0.0:9001", credentials: '
        "{access_key_id: AKID, secret_access_key: '${API_SECRET}'}}\n"
    )
    loaded = load_config_text(exposed, "bridge.yaml", environ={"API_SECRET": "s3cr3t-value"})
    api = loaded.config.api
    assert api is not None and api.credentials is not None
    assert api.credentials.secret_access_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(loaded.config) + loaded.config.model_dump_json()
    assert load_config_text(VALID + "api: {}\n", "bridge.yaml").config.api.listen == (  # type: ignore[union-attr]
        "127.0.0.1:9001"
    )
    [bad] = problems(VALID + 'api: {listen: "nowhere"}\n')
    assert "api.listen" in bad


def test_a_config_imports_only_the_connectors_it_names(tmp_path: Path) -> None:
    """Validating a folder-to-python config imports the settings of those two connectors
    and of the default checkpoint store, none of the other sources'."""
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return None\n")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "functions:\n  fn: {invoker: python, handler: h.handler}\n"
        f"mappings:\n  - {{name: m, function: fn, source: {{type: files, path: {tmp_path / 'in'}}}}}\n"
    )
    probe = (
        "import sys; from pathlib import Path; from bridge.config.loading import load_config; "
        f"load_config(Path({str(config)!r})); "
        "print(sorted(m for m in sys.modules if m.startswith('connectors.')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    imported = json.loads(run.stdout.replace("'", '"'))
    assert "connectors.files.config" in imported and "connectors.python.config" in imported
    others = (
        "kafka",
        "redis",
        "sqs",
        "kinesis",
        "rabbitmq",
        "activemq",
        "nats",
        "mqtt",
        "schedule",
    )
    assert not [name for name in imported if name.split(".")[1] in others], imported

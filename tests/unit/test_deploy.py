"""The deployment files in deploy/ say what the daemon needs: the systemd unit passes
systemd-analyze verify and gives the drain its time, the compose sidecar and the Dockerfile
are wired to config/compose.yaml, and the demo function answers as the bridge expects."""

from __future__ import annotations

import configparser
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bridge.cli.stoptimeout import (
    CHECKPOINT_MARGIN_SECONDS,
    compose_stop_timeouts,
    parse_systemd_timespan,
    stop_timeout_warnings,
    unit_stop_timeout,
)
from bridge.config.loading import load_config
from bridge.config.model import BridgeConfig
from bridge.config.plugins import Identity
from bridge.pipeline.responses import classify
from bridge.records import InvokeResult, OutcomeKind
from connectors.http.config import HttpFunctionConfig
from connectors.redis.config import RedisStreamDestinationConfig, RedisStreamsSourceConfig
from connectors.redis.events import EntryRecords
from tests.support import REPO

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "lambda-bridge.service"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
# The image's exact versions (tests/unit/test_deploy_locks.py checks their content).
LOCK = DEPLOY / "requirements.lock"
BUILD_LOCK = DEPLOY / "build-requirements.lock"
SIDECAR_CONFIG = REPO / "config" / "compose.yaml"
STATE_DIR = "/var/lib/lambda-bridge"
CONFIG_IN_CONTAINER = "/etc/lambda-bridge/config.yaml"
RUN_ARGUMENTS = ["run", "--config", CONFIG_IN_CONTAINER, "--log-format", "json"]


def require_tool(name: str) -> str:
    """The tool's path; skipped when it is missing unless LAMBDA_BRIDGE_REQUIRE_SERVICES=1."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("LAMBDA_BRIDGE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{name} is not installed and LAMBDA_BRIDGE_REQUIRE_SERVICES=1")
        pytest.skip(f"{name} is not installed")
    return path


# --- systemd ---------------------------------------------------------------------------


def unit_service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def verify(path: Path) -> tuple[int, list[str]]:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    return result.returncode, (result.stdout + result.stderr).splitlines()


def test_unit_passes_systemd_analyze_verify() -> None:
    """The unit as shipped draws no complaint, except, on a machine where lambda-bridge is
    not installed at the ExecStart path, that one; verify goes on checking everything else
    in that case, so any other line is still a failure."""
    executable = shlex.split(unit_service_section()["ExecStart"])[0]
    status, lines = verify(UNIT)
    if Path(executable).is_file():
        assert (status, lines) == (0, [])
    else:
        missing = f"lambda-bridge.service: Command {executable} is not executable: No such file or directory"
        assert lines == [missing]


def test_unit_with_an_installed_executable_verifies_cleanly(tmp_path: Path) -> None:
    """The same unit with ExecStart pointed at this interpreter (`python -m bridge` is the
    same program) exits 0 with no output at all."""
    text = UNIT.read_text()
    executable = shlex.split(unit_service_section()["ExecStart"])[0]
    assert text.count(f"ExecStart={executable} ") == 1
    installed = text.replace(f"ExecStart={executable} ", f"ExecStart={sys.executable} -m bridge ")
    copy = tmp_path / UNIT.name
    copy.write_text(installed)
    assert verify(copy) == (0, [])


def test_unit_settings() -> None:
    """notify + watchdog, reload by SIGHUP, restart on failure, its own state folder, and
    the sandbox this daemon is meant to run in."""
    service = unit_service_section()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "StateDirectory": "lambda-bridge",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallFilter": "@system-service",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    assert {key: service.get(key) for key in expected} == expected
    watchdog = parse_systemd_timespan(service["WatchdogSec"])
    assert watchdog is not None and watchdog > 0
    assert shlex.split(service["ExecStart"])[1:] == RUN_ARGUMENTS
    assert service["WorkingDirectory"] in ("%S/lambda-bridge", STATE_DIR)


def test_unit_stop_timeout_covers_the_default_drain() -> None:
    """TimeoutStopSec leaves the default drain deadline its 5 s to save checkpoints."""
    drain = BridgeConfig.model_fields["drain_timeout_seconds"].default
    assert stop_timeout_warnings(drain, unit_file=UNIT) == []
    timeout = unit_stop_timeout(UNIT)
    assert timeout is not None and timeout >= drain + CHECKPOINT_MARGIN_SECONDS
    # A config that raises the drain without the unit following is caught.
    assert stop_timeout_warnings(timeout, unit_file=UNIT) != []


# --- docker compose ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def sidecar_config() -> BridgeConfig:
    return load_config(SIDECAR_CONFIG, environ={"LAMBDA_BRIDGE_HTTP_TOKEN": "test-token"}).config


def test_compose_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "function", "lambda-bridge"}
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    assert compose_stop_timeouts(COMPOSE).keys() == {"lambda-bridge"}


def test_compose_sidecar_mounts_its_config_and_state(compose: dict[str, Any]) -> None:
    """config/compose.yaml read-only at the path the image's CMD reads, and a named volume
    at the state_dir that config names."""
    bridge = compose["services"]["lambda-bridge"]
    mounts = [volume.split(":") for volume in bridge["volumes"]]
    binds = {target: ((DEPLOY / source).resolve(), rest) for source, target, *rest in mounts}
    assert binds[CONFIG_IN_CONTAINER] == (SIDECAR_CONFIG, ["ro"])
    [state_volume] = [source for source, target, *_ in mounts if target == STATE_DIR]
    assert state_volume in compose["volumes"]
    assert str(sidecar_config().state_dir) == STATE_DIR
    assert set(bridge["depends_on"]) == {"redis", "function"}
    assert bridge["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_compose_stop_grace_period_covers_the_sidecar_drain() -> None:
    drain = sidecar_config().drain_timeout_seconds
    assert stop_timeout_warnings(drain, compose_file=COMPOSE) == []
    assert compose_stop_timeouts(COMPOSE)["lambda-bridge"] >= drain + CHECKPOINT_MARGIN_SECONDS


def test_compose_publishes_on_loopback_only(compose: dict[str, Any]) -> None:
    """Only the admin port is published, on the host's loopback, to the port the sidecar's
    config listens on; the token comes from the host's environment."""
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    port = urlsplit(f"//{sidecar_config().http.address}").port
    assert published == {"redis": [], "function": [], "lambda-bridge": [f"127.0.0.1:9090:{port}"]}
    token = compose["services"]["lambda-bridge"]["environment"]["LAMBDA_BRIDGE_HTTP_TOKEN"]
    assert token.startswith("${LAMBDA_BRIDGE_HTTP_TOKEN:?")


def test_compose_hosts_are_the_ones_the_sidecar_config_calls(compose: dict[str, Any]) -> None:
    """The function URL and the Redis URLs of config/compose.yaml name compose services;
    the emulator of the function image listens on 8080."""
    config = sidecar_config()
    function = config.functions["orders"]
    assert isinstance(function, HttpFunctionConfig)
    function_url = urlsplit(function.url)
    assert (function_url.hostname, function_url.port) == ("function", 8080)
    assert function_url.path == "/2015-03-31/functions/function/invocations"
    [mapping] = config.mappings
    assert isinstance(mapping.source, RedisStreamsSourceConfig)
    assert urlsplit(mapping.source.url.get_secret_value()).hostname == "redis"
    failures = config.destinations[mapping.on_failure or ""]
    assert isinstance(failures, RedisStreamDestinationConfig)
    assert urlsplit(failures.url.get_secret_value()).hostname == "redis"


def test_compose_function_is_built_from_deploy_function(compose: dict[str, Any]) -> None:
    function = compose["services"]["function"]
    assert (DEPLOY / function["build"]).resolve() == DEPLOY / "function"
    instructions = dockerfile_instructions(DEPLOY / "function" / "Dockerfile")
    assert instructions[0] == ("FROM", "public.ecr.aws/lambda/python:3.12")
    assert ("CMD", '["app.handler"]') in instructions
    timeout = sidecar_config().functions["orders"].timeout
    assert float(function["environment"]["AWS_LAMBDA_FUNCTION_TIMEOUT"]) == timeout


def test_compose_healthcheck_asks_healthz(
    compose: dict[str, Any], health_server: http.server.HTTPServer
) -> None:
    test = compose["services"]["lambda-bridge"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:9090/healthz" in test[3]
    assert_healthcheck_follows_status(test[3], health_server)
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return command
    return None


def require_compose() -> list[str]:
    """The compose command; skipped when there is none unless LAMBDA_BRIDGE_REQUIRE_SERVICES=1."""
    command = compose_command()
    if command is None:
        message = "neither `docker compose` nor `docker-compose` works here"
        if os.environ.get("LAMBDA_BRIDGE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return command


def compose_config(token: str | None) -> subprocess.CompletedProcess[str]:
    """`compose config -q` of deploy/compose.yaml with LAMBDA_BRIDGE_HTTP_TOKEN set to
    `token` (None: unset)."""
    env = {key: value for key, value in os.environ.items() if key != "LAMBDA_BRIDGE_HTTP_TOKEN"}
    if token is not None:
        env["LAMBDA_BRIDGE_HTTP_TOKEN"] = token
    checked = [*require_compose(), "-f", str(COMPOSE), "config", "-q"]
    return subprocess.run(checked, capture_output=True, text=True, timeout=60, env=env)


def test_compose_file_passes_docker_compose_config() -> None:
    """Checked by compose itself where docker compose or docker-compose is installed,
    with the token it requires set."""
    result = compose_config("a-token-of-the-operators-own")
    assert result.returncode == 0, result.stderr


# --- Dockerfile --------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(DOCKERFILE)
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_runtime_settings() -> None:
    stage = dict(final_stage())
    assert stage["FROM"].startswith(("python:3.12-slim", "python:3.11-slim"))
    user = stage["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert stage["STOPSIGNAL"] == "SIGTERM"
    assert stage["VOLUME"] == STATE_DIR
    assert stage["EXPOSE"] == "9090"
    assert json.loads(stage["ENTRYPOINT"]) == ["lambda-bridge"]
    assert json.loads(stage["CMD"]) == RUN_ARGUMENTS


def test_dockerfile_installs_the_package_with_its_connectors() -> None:
    """pip installs the locked dependencies with their hashes, then the repository's wheel
    (with the kafka, redis and aws extras) built by the locked build backend, without
    letting pip fetch anything else, and checks the result; every file it copies exists
    (the build context is the repository root)."""
    instructions = dockerfile_instructions(DOCKERFILE)
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    for lock in (LOCK, BUILD_LOCK):
        assert f"pip install --require-hashes -r deploy/{lock.name}" in runs
    assert re.search(r"pip wheel --no-deps --no-build-isolation .* \"\.\[kafka,redis,aws\]\"", runs)
    assert "/opt/lambda-bridge/bin/pip install --no-deps /tmp/wheel/" in runs
    assert "/opt/lambda-bridge/bin/pip check" in runs
    for keyword, arguments in instructions:
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            missing = [source for source in sources if not (REPO / source).exists()]
            assert missing == []


def test_dockerfile_healthcheck_asks_healthz(health_server: http.server.HTTPServer) -> None:
    options, _, command = dict(final_stage())["HEALTHCHECK"].partition("CMD ")
    assert "--interval=" in options
    check = json.loads(command)
    assert check[:2] == ["python", "-c"]
    assert "http://127.0.0.1:9090/healthz" in check[2]
    assert_healthcheck_follows_status(check[2], health_server)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def health_server() -> Iterator[http.server.HTTPServer]:
    """A stand-in /healthz on a free loopback port."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def assert_healthcheck_follows_status(code: str, server: http.server.HTTPServer) -> None:
    """The healthcheck's Python, aimed at the stand-in: exit 0 on 200, non-zero on 503
    (the daemon not healthy) and when nothing listens."""
    port = server.server_address[1]

    def exit_status(address: str, status: int = 200) -> int:
        _Health.status = status
        aimed = code.replace("127.0.0.1:9090", address)
        assert aimed != code
        return subprocess.run(
            [sys.executable, "-c", aimed], capture_output=True, timeout=30
        ).returncode

    try:
        assert exit_status(f"127.0.0.1:{port}") == 0
        assert exit_status(f"127.0.0.1:{port}", 503) != 0
        assert exit_status("127.0.0.1:9") != 0  # discard port: nothing listens
    finally:
        _Health.status = 200


# --- the demo function -------------------------------------------------------------------


def function_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deploy_function_app", DEPLOY / "function" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_function_processes_the_sample_event(capsys: pytest.CaptureFixture[str]) -> None:
    """`lambda-bridge generate-event redis-streams`'s event: every entry processed, no
    failures; binary fields are listed."""
    event = json.loads(RedisStreamsSourceConfig.sample_event(3, Identity()))
    assert function_module().handler(event, None) == {"batchItemFailures": []}
    printed = [json.loads(line)["processed"] for line in capsys.readouterr().out.splitlines()]
    assert [entry["id"] for entry in printed] == [r["redis"]["id"] for r in event["Records"]]
    assert printed[1]["binary_fields"] == ["thumbnail"]
    assert "binary_fields" not in printed[0]


def test_function_reports_a_failing_entry_and_the_rest_of_its_stream() -> None:
    """An entry with a `fail` field is reported with every later entry of its stream; the
    bridge reads the answer as a partial failure of exactly those entries."""
    builder = EntryRecords(server_arn="redis://redis:6379/0", region="us-east-1")
    entries = [
        ("orders", "1790000000000-0", [b"order_id", b"1"]),
        ("orders", "1790000000001-0", [b"order_id", b"2", b"fail", b"yes"]),
        ("payments", "1790000000005-0", [b"payment_id", b"9"]),
        ("orders", "1790000000002-0", [b"order_id", b"3"]),
    ]
    records = [builder.record(stream, entry_id, fields) for stream, entry_id, fields in entries]
    event = json.loads(builder.formatter("lambda-bridge").encode_event(records))
    response = function_module().handler(event, None)
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "1790000000001-0"},
            {"itemIdentifier": "1790000000002-0"},
        ]
    }
    result = InvokeResult(payload=json.dumps(response).encode(), request_id="test")
    outcome = classify(result, records, report_batch_item_failures=True)
    assert outcome.kind is OutcomeKind.PARTIAL_FAILURE
    assert outcome.failed_ids == {"1790000000001-0", "1790000000002-0"}

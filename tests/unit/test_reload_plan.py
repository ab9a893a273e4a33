"""What a reload changes, decided from the old and new configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loading import load_config, load_config_text
from bridge.config.model import ApiConfig, BridgeConfig
from bridge.ops.reload import plan_reload, restart_only_changes
from tests.support import REPO

BASE = """\
state_dir: ./state
functions:
  f: {{invoker: python, handler: h.py:handler, timeout: {timeout}}}
  g: {{invoker: python, handler: h.py:handler}}
destinations:
  dlq: {{type: file, path: {dlq}}}
mappings:
{mappings}"""


def mapping(name: str, function: str = "f", extra: str = "") -> str:
    return f"  - name: {name}\n    function: {function}\n    source: {{type: files, path: ./{name}}}\n{extra}"


def config(tmp_path: Path, *mappings: str, timeout: int = 3, dlq: str = "./failed") -> BridgeConfig:
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return None\n")
    text = BASE.format(timeout=timeout, dlq=dlq, mappings="".join(mappings))
    return load_config_text(text, "bridge.yaml", handler_root=tmp_path).config


def test_added_removed_changed_unchanged(tmp_path: Path) -> None:
    old = config(tmp_path, mapping("a"), mapping("b"), mapping("c"))
    new = config(tmp_path, mapping("a", extra="    batch_size: 7\n"), mapping("c"), mapping("d"))
    plan = plan_reload(old, new)
    assert plan.summary() == {
        "started": ["d"],
        "stopped": ["b"],
        "restarted": ["a"],
        "unchanged": ["c"],
    }
    assert plan.functions == set() and plan.destinations == set()


def test_a_changed_function_restarts_only_its_mappings(tmp_path: Path) -> None:
    old = config(tmp_path, mapping("a"), mapping("b", function="g"))
    new = config(tmp_path, mapping("a"), mapping("b", function="g"), timeout=9)
    plan = plan_reload(old, new)
    assert (plan.changed, plan.unchanged, plan.functions) == (["a"], ["b"], {"f"})


def test_a_changed_destination_restarts_the_mappings_that_use_it(tmp_path: Path) -> None:
    uses = "    destination_config: {on_failure: {destination: dlq}}\n"
    old = config(tmp_path, mapping("a", extra=uses), mapping("b"))
    new = config(tmp_path, mapping("a", extra=uses), mapping("b"), dlq="./other")
    plan = plan_reload(old, new)
    assert (plan.changed, plan.unchanged, plan.destinations) == (["a"], ["b"], {"dlq"})


def test_daemon_wide_settings_need_a_restart(tmp_path: Path) -> None:
    old = config(tmp_path, mapping("a"))
    assert restart_only_changes(old, config(tmp_path, mapping("b"))) == []
    moved = old.model_copy(update={"state_dir": Path("./elsewhere")})
    assert restart_only_changes(old, moved) == [
        "state_dir: changed; it applies only when the daemon restarts"
    ]


SECRETS = """\
functions:
  f: {{invoker: python, handler: h.py:handler}}
destinations:
  failed: {{type: redis-stream, url: "redis://bridge:{destination}@127.0.0.1:6379/0", stream: failed}}
mappings:
  - name: orders
    function: f
    source: {{type: redis-streams, url: "redis://bridge:{source}@127.0.0.1:6379/0", streams: [orders], starting_position: LATEST}}
    destination_config: {{on_failure: {{destination: failed}}}}
  - name: events
    function: f
    source:
      type: kafka
      bootstrap_servers: [127.0.0.1:9092]
      topics: [events]
      starting_position: LATEST
      security_protocol: SASL_PLAINTEXT
      sasl_mechanism: PLAIN
      sasl_username: bridge
      sasl_password: "{sasl}"
"""


def secrets_config(
    tmp_path: Path, source: str = "a", destination: str = "b", sasl: str = "c"
) -> BridgeConfig:
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return None\n")
    text = SECRETS.format(source=source, destination=destination, sasl=sasl)
    return load_config_text(text, "bridge.yaml", handler_root=tmp_path).config


def test_a_changed_secret_is_a_change(tmp_path: Path) -> None:
    """A password in a source URL, a Kafka sasl_password or a password in a destination's
    URL restarts the mappings built from it, though every secret dumps as the same mask."""
    old = secrets_config(tmp_path)
    assert plan_reload(old, secrets_config(tmp_path)).summary()["unchanged"] == ["orders", "events"]
    source = plan_reload(old, secrets_config(tmp_path, source="rotated"))
    assert (source.changed, source.unchanged) == (["orders"], ["events"])
    sasl = plan_reload(old, secrets_config(tmp_path, sasl="rotated"))
    assert (sasl.changed, sasl.unchanged) == (["events"], ["orders"])
    destination = plan_reload(old, secrets_config(tmp_path, destination="rotated"))
    assert (destination.changed, destination.destinations) == (["orders"], {"failed"})


def test_a_changed_admin_token_needs_a_restart(tmp_path: Path) -> None:
    """`http.token` is read once, when the endpoint starts: a new one is reported as
    needing a restart, by name only."""
    old = config(tmp_path, mapping("a"))
    new = old.model_copy(update={"http": old.http.model_copy(update={"token": "new-token"})})
    assert restart_only_changes(old, new) == [
        "http: changed; it applies only when the daemon restarts"
    ]


def test_a_changed_log_setting_needs_a_restart(tmp_path: Path) -> None:
    """Logging is configured when the daemon starts, so a new `log` is not silently
    ignored: the reload says it needs a restart."""
    old = config(tmp_path, mapping("a"))
    new = old.model_copy(update={"log": old.log.model_copy(update={"level": "debug"})})
    assert restart_only_changes(old, new) == [
        "log: changed; it applies only when the daemon restarts"
    ]


def test_the_same_example_config_twice_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example config read twice compares equal setting by setting (no setting
    compares by identity), so a reload without edits restarts nothing."""
    monkeypatch.chdir(REPO)
    environ = {
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
        "FAILURE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-failed",
        "STREAM": "orders",
        "TABLE": "orders",
        "FAILURE_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:orders-failed",
        "LAMBDA_BRIDGE_HTTP_TOKEN": "test-token",
    }
    for path in sorted((REPO / "config").glob("*.yaml")):
        old = load_config(path, environ=environ).config
        new = load_config(path, environ=environ).config
        plan = plan_reload(old, new)
        assert plan.unchanged == [mapping.name for mapping in old.mappings], path.name
        assert (plan.changed, plan.functions, plan.destinations) == ([], set(), set())
        assert restart_only_changes(old, new) == []


def test_the_lambda_api_needs_a_restart(tmp_path: Path) -> None:
    """`api` (listen address, credentials) is read when the listener starts."""
    old = config(tmp_path, mapping("a"))
    new = old.model_copy(update={"api": ApiConfig(listen="127.0.0.1:9002")})
    assert restart_only_changes(old, new) == [
        "api: changed; it applies only when the daemon restarts"
    ]

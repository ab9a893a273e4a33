"""What a reload changes, decided from the old and new configs."""

from __future__ import annotations

from pathlib import Path

from bridge.config import BridgeConfig, load_config_text
from bridge.reload import plan_reload, restart_only_changes

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

"""How the Lambda API describes configured functions (bridge.frontdoor.describe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loading import load_config_text
from bridge.config.model import BridgeConfig
from bridge.frontdoor import describe
from bridge.frontdoor.describe import Describer, lambda_timestamp

TEXT = """\
aws: {{region: eu-west-1, account_id: "123456789012"}}
functions:
  b: {{invoker: python, handler: h.py:handler, memory_size: {memory}, timeout: 2.5}}
  a: {{invoker: python, handler: h.py:handler}}
  c: {{invoker: python, handler: h.py:handler}}
"""


def config(root: Path, memory: int = 128) -> BridgeConfig:
    (root / "h.py").write_text("def handler(event, context):\n    return event\n")
    return load_config_text(TEXT.format(memory=memory), "bridge.yaml", handler_root=root).config


def test_lambda_timestamp_is_iso_8601_with_millis_and_plus_0000() -> None:
    assert lambda_timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250+0000"


def test_last_modified_moves_only_when_the_settings_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    describer = Describer(tmp_path)
    monkeypatch.setattr(describe.time, "time", lambda: 1_700_000_000.0)
    first = describer.configuration(config(tmp_path), "b")
    assert first["Timeout"] == 3  # whole seconds, rounded up
    monkeypatch.setattr(describe.time, "time", lambda: 1_700_000_100.0)
    assert describer.configuration(config(tmp_path), "b") == first  # a reload, unchanged
    changed = describer.configuration(config(tmp_path, memory=256), "b")
    assert changed["LastModified"] == "2023-11-14T22:15:00.000+0000"
    assert changed["RevisionId"] != first["RevisionId"]
    assert changed["MemorySize"] == 256


def test_pages_go_in_name_order(tmp_path: Path) -> None:
    describer, current = Describer(tmp_path), config(tmp_path)
    page = describer.page(current, None, 2)
    assert [f["FunctionName"] for f in page["Functions"]] == ["a", "b"]
    assert page["NextMarker"] == "c"
    last = describer.page(current, page["NextMarker"], 2)
    assert [f["FunctionName"] for f in last["Functions"]] == ["c"]
    assert "NextMarker" not in last

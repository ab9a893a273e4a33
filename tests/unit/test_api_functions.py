"""Which configured function Invoke's FunctionName and Qualifier name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loading import load_config_text
from bridge.config.model import BridgeConfig
from bridge.frontdoor.errors import ApiError
from bridge.frontdoor.functions import resolve


@pytest.fixture
def config(tmp_path: Path) -> BridgeConfig:
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return event\n")
    text = """\
aws: {region: eu-west-1, account_id: "123456789012"}
functions:
  echo: {invoker: python, handler: h.py:handler}
"""
    return load_config_text(text, "bridge.yaml", handler_root=tmp_path).config


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [
        ("echo", None),
        ("echo:$LATEST", None),
        ("echo", "$LATEST"),
        ("echo:$LATEST", "$LATEST"),
        ("123456789012:function:echo", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:echo", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:echo:$LATEST", None),
    ],
)
def test_names_partial_and_full_arns(config: BridgeConfig, name: str, qualifier: str) -> None:
    target = resolve(config, name, qualifier)
    assert target.name == "echo"
    assert target.qualified_arn == "arn:aws:lambda:eu-west-1:123456789012:function:echo:$LATEST"


@pytest.mark.parametrize(
    ("name", "qualifier", "status", "code"),
    [
        ("nope", None, 404, "ResourceNotFoundException"),
        ("echo:1", None, 404, "ResourceNotFoundException"),
        ("echo", "live", 404, "ResourceNotFoundException"),
        ("arn:aws:lambda:us-east-1:123456789012:function:echo", None, 404, None),
        ("999999999999:function:echo", None, 404, None),
        ("echo:$LATEST", "1", 400, "InvalidParameterValueException"),
        ("echo/../x", None, 400, "InvalidParameterValueException"),
        ("", None, 400, "InvalidParameterValueException"),
    ],
)
def test_what_is_not_found_or_not_valid(
    config: BridgeConfig, name: str, qualifier: str | None, status: int, code: str | None
) -> None:
    with pytest.raises(ApiError) as raised:
        resolve(config, name, qualifier)
    assert raised.value.status == status
    assert raised.value.code == (code or "ResourceNotFoundException")

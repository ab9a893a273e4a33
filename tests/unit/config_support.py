"""The valid config the config tests start from, and how they read its problems."""

from __future__ import annotations

import textwrap

import pytest

from bridge.config.loading import load_config_text
from bridge.errors import ConfigError

VALID = """\
functions:
  f:
    invoker: python
    handler: handler.py:handler
destinations:
  failed: {type: file, path: ./failed}
mappings:
  - name: inbox
    function: f
    source: {type: files, path: ./inbox}
    destination_config: {on_failure: {destination: failed}}
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(textwrap.dedent(text), "bridge.yaml", environ=environ or {})
    return caught.value.problems

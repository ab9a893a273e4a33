"""The compose sidecar has no token everyone knows: without LAMBDA_BRIDGE_HTTP_TOKEN,
compose refuses to start it and says how to make one."""

from __future__ import annotations

from tests.unit.test_deploy import compose_config


def test_compose_refuses_to_start_without_a_token() -> None:
    """Unset or empty, the variable stops `compose config` (what `up` runs first) with
    an error naming the variable and `openssl rand -hex 32`; set, compose accepts
    the file."""
    for token in (None, ""):
        result = compose_config(token)
        assert result.returncode != 0, token
        assert "LAMBDA_BRIDGE_HTTP_TOKEN" in result.stderr
        assert "openssl rand -hex 32" in result.stderr
    assert compose_config("an-operators-token").returncode == 0

"""Function versions and aliases in config (bridge.config.versions): what is valid, how a
version's settings are made, how a weighted alias picks, and what resolve() accepts."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from bridge.config.loading import load_config_text
from bridge.config.model import BridgeConfig
from bridge.config.versions import pick_version, version_config
from bridge.errors import ConfigError
from bridge.frontdoor.errors import ApiError
from bridge.frontdoor.functions import resolve
from bridge.pipeline.clients import Clients

CONFIG = """\
aws: {region: eu-west-1, account_id: "123456789012"}
functions:
  orders:
    invoker: python
    handler: v0.py:handler
    memory_size: 256
    versions:
      "1": {handler: v1.py:handler}
      2: {handler: v2.py:handler, memory_size: 512, timeout: 10}
    aliases:
      live: {version: "1", description: what customers get}
      canary: {version: "1", routing: {"2": 0.25}}
      edge: {version: $LATEST}
"""


def load(text: str, root: Path) -> BridgeConfig:
    for name in ("v0.py", "v1.py", "v2.py"):
        (root / name).write_text("def handler(event, context):\n    return event\n")
    return load_config_text(textwrap.dedent(text), "bridge.yaml", handler_root=root).config


def problems(text: str, root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, root)
    return caught.value.problems


def test_a_version_is_the_function_with_its_own_settings(tmp_path: Path) -> None:
    """Each key a version sets replaces the function's; the rest is the function's. A
    version written as a YAML number is named by its text."""
    function = load(CONFIG, tmp_path).functions["orders"]
    assert list(function.versions) == ["1", "2"]
    one, two = version_config(function, "1"), version_config(function, "2")
    assert (one.handler, one.memory_size, one.timeout) == ("v1.py:handler", 256, 3.0)  # type: ignore[attr-defined]
    assert (two.handler, two.memory_size, two.timeout) == ("v2.py:handler", 512, 10.0)  # type: ignore[attr-defined]
    assert version_config(function, "$LATEST") is function
    assert one.versions == {} and one.aliases == {}


@pytest.mark.parametrize(
    ("versions", "aliases", "expected"),
    [
        (
            '{"0": {}}',
            "{}",
            "bridge.yaml:5: functions.orders.versions.0: version '0' is not a version name",
        ),
        (
            "{latest: {}}",
            "{}",
            "functions.orders.versions.latest: version 'latest' is not a version name",
        ),
        (
            '{"1": {memory_size: 64}}',
            "{}",
            "bridge.yaml:5: functions.orders.versions.1.memory_size: Input should be greater than or equal to 128",
        ),
        (
            '{"1": {invoker: http}}',
            "{}",
            "functions.orders.versions.1.invoker: is the function's, not a version's",
        ),
        (
            '{"1": {handler: nowhere.py:handler}}',
            "{}",
            "functions.orders.versions.1.handler: handler file",
        ),
        ('{"1": {colour: red}}', "{}", "functions.orders.versions.1.colour: unknown key"),
        (
            "{}",
            '{live: {version: "3"}}',
            "functions.orders.aliases.live.version: no version '3' (defined: $LATEST)",
        ),
        ('{"1": {}}', '{"42": {version: "1"}}', "alias '42' is not an alias name"),
        (
            '{"1": {}, "2": {}}',
            '{live: {version: "1", routing: {"2": 1.5}}}',
            "functions.orders.aliases.live.routing.2: Input should be less than or equal to 1",
        ),
        (
            '{"1": {}, "2": {}}',
            '{live: {version: "1", routing: {"2": -0.1}}}',
            "Input should be greater than or equal to 0",
        ),
        (
            '{"1": {}, "2": {}, "3": {}}',
            '{live: {version: "1", routing: {"2": 0.1, "3": 0.1}}}',
            "functions.orders.aliases.live.routing: Dictionary should have at most 1 item",
        ),
        (
            '{"1": {}}',
            '{live: {version: "1", routing: {"1": 0.1}}}',
            "the additional version must differ",
        ),
        (
            '{"1": {}}',
            '{live: {version: "1", routing: {"7": 0.1}}}',
            "functions.orders.aliases.live.routing.7: no version '7'",
        ),
        (
            '{"1": {}}',
            '{live: {version: $LATEST, routing: {"1": 0.1}}}',
            "must name a numbered version, not $LATEST",
        ),
    ],
)
def test_bad_versions_and_aliases_are_named(
    tmp_path: Path, versions: str, aliases: str, expected: str
) -> None:
    """A bad version name, a version's invalid setting, an alias naming a version that
    does not exist or weights out of range: one `file:line: key: message` each."""
    text = f"""\
functions:
  orders:
    invoker: python
    handler: v0.py:handler
    versions: {versions}
    aliases: {aliases}
"""
    found = problems(text, tmp_path)
    assert any(expected in problem for problem in found), found


def test_a_mapping_naming_a_qualified_function_is_told_why(tmp_path: Path) -> None:
    """Mappings invoke $LATEST: `function: orders:live` is refused with the reason."""
    text = (
        CONFIG
        + "mappings:\n  - {name: m, function: 'orders:live', source: {type: files, path: ./in}}\n"
    )
    (found,) = problems(text, tmp_path)
    assert "mappings[0].function: mappings invoke a function's $LATEST" in found


def test_a_weighted_alias_picks_by_weight(tmp_path: Path) -> None:
    """An alias with routing {"2": 0.25} runs version 2 when the draw is under 0.25."""
    function = load(CONFIG, tmp_path).functions["orders"]
    assert pick_version(function, "canary", lambda: 0.1) == "2"
    assert pick_version(function, "canary", lambda: 0.25) == "1"
    assert pick_version(function, "canary", lambda: 0.9) == "1"
    assert pick_version(function, "live") == "1"
    assert pick_version(function, "edge") == "$LATEST"
    assert pick_version(function, "2") == "2"
    assert pick_version(function, "3") is None


@pytest.mark.parametrize(
    ("name", "qualifier", "arn"),
    [
        ("orders", None, "arn:aws:lambda:eu-west-1:123456789012:function:orders"),
        ("orders:1", None, "arn:aws:lambda:eu-west-1:123456789012:function:orders:1"),
        ("orders", "live", "arn:aws:lambda:eu-west-1:123456789012:function:orders:live"),
        ("orders:$LATEST", None, "arn:aws:lambda:eu-west-1:123456789012:function:orders:$LATEST"),
    ],
)
def test_resolve_knows_versions_and_aliases(
    tmp_path: Path, name: str, qualifier: str | None, arn: str
) -> None:
    """Versions and aliases of the config are qualifiers Invoke accepts; the handler is
    told the ARN as it was named."""
    target = resolve(load(CONFIG, tmp_path), name, qualifier)
    assert target.invoked_arn == arn


@pytest.mark.parametrize(("name", "qualifier"), [("orders:3", None), ("orders", "stale")])
def test_resolve_refuses_unknown_qualifiers(
    tmp_path: Path, name: str, qualifier: str | None
) -> None:
    """A version or alias the function does not have is 404 ResourceNotFoundException."""
    with pytest.raises(ApiError) as raised:
        resolve(load(CONFIG, tmp_path), name, qualifier)
    assert (raised.value.status, raised.value.code) == (404, "ResourceNotFoundException")


def test_versions_share_the_functions_reserved_concurrency(tmp_path: Path) -> None:
    """Reserved concurrency is the function's: while version 1 runs in the only slot,
    $LATEST finds it taken (busy), and each version's invoker is built for its version."""
    text = CONFIG.replace(
        "    memory_size: 256\n", "    memory_size: 256\n    reserved_concurrency: 1\n"
    )
    for name in ("v0.py", "v1.py", "v2.py"):
        (tmp_path / name).write_text(
            "import time\ndef handler(event, context):\n"
            "    time.sleep(event.get('sleep', 0))\n    return context.function_version\n"
        )
    loaded = load_config_text(text, "bridge.yaml", handler_root=tmp_path)

    async def scenario() -> tuple[bool, bool, bytes]:
        clients = Clients()
        clients.adopt(*await clients.build(loaded, {"orders"}, set()))
        try:
            (latest, _), (one, _) = (
                clients.target(loaded.config, "orders", qualifier) or (None, None)
                for qualifier in ("$LATEST", "live")
            )
            assert latest is not None and one is not None
            running = asyncio.create_task(one.invoke(b'{"sleep": 0.3}', "r1"))
            await asyncio.sleep(0.1)
            busy_meanwhile = bool(getattr(latest, "busy", False))
            result = await running
            return busy_meanwhile, bool(getattr(latest, "busy", False)), result.payload
        finally:
            await clients.close()

    busy_meanwhile, busy_after, payload = asyncio.run(scenario())
    assert (busy_meanwhile, busy_after, payload) == (True, False, b'"1"')


def test_a_version_keeps_settings_written_under_another_name(tmp_path: Path) -> None:
    """Settings whose key is not their field's name (`async:`) carry over to a version, and
    a version may replace them."""
    config = load(
        CONFIG.replace(
            "    memory_size: 256\n",
            "    memory_size: 256\n    async: {maximum_retry_attempts: 1}\n",
        ).replace('"1": {handler: v1.py:handler}', '"1": {async: {maximum_retry_attempts: 0}}'),
        tmp_path,
    )
    orders = config.functions["orders"]
    assert version_config(orders, "2").async_.maximum_retry_attempts == 1
    assert version_config(orders, "1").async_.maximum_retry_attempts == 0

"""The `runtime` invoker's settings are checked offline, with file and line, and its
Runtime API server answers as Lambda's does (a real server on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bridge.config.loading import load_config_text
from bridge.invokers import MAX_RESPONSE_BYTES
from connectors.runtime.config import host_architecture
from connectors.runtime.runtime_api import Invocation, RuntimeApi
from tests.unit.config_support import problems


def config(function: str) -> str:
    return f"""\
functions:
  f:
    invoker: runtime
    code: ./pkg
{function}
mappings: []
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    return tmp_path / "pkg"


def test_a_valid_runtime_function_loads(package: Path) -> None:
    """All the settings of the issue's example are accepted."""
    (package / "app.py").write_text("def handler(event, context):\n    return event\n")
    loaded = load_config_text(
        config(
            "    runtime: python3.11\n    handler: app.handler\n    memory_size: 256\n"
            "    timeout: 30\n    ephemeral_storage: 512\n    reserved_concurrency: 4\n"
            f"    provisioned_concurrency: 1\n    idle_timeout: 300\n"
            f"    architecture: {host_architecture()}\n    environment: {{STAGE: local}}"
        ),
        "bridge.yaml",
    )
    assert loaded.config.functions["f"].reserved_concurrency == 4


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("runtime: python", "is not one of pythonX.Y"),
        ("runtime: python3.11", "needs a handler"),
        ("runtime: provided\n    memory_size: 64", "memory_size"),
        ("runtime: provided\n    timeout: 901", "timeout"),
        ("runtime: provided\n    ephemeral_storage: 20000", "ephemeral_storage"),
        ("runtime: provided\n    idle_timeout: 0", "idle_timeout"),
        (
            "runtime: provided\n    reserved_concurrency: 1\n    provisioned_concurrency: 2",
            "provisioned_concurrency (2) is more than",
        ),
        ("runtime: provided\n    environment: {AWS_REGION: x}", "is reserved"),
        ("runtime: provided\n    user: no-such-user-here", "no user named"),
    ],
)
def test_out_of_range_and_inconsistent_settings(
    package: Path, settings: str, expected: str
) -> None:
    """Each bad setting is reported with the file and line of the function."""
    found = problems(config(f"    {settings}"))
    assert any(expected in problem and problem.startswith("bridge.yaml:") for problem in found), (
        found
    )


def test_an_architecture_other_than_the_hosts_is_a_config_error(package: Path) -> None:
    other = "arm64" if host_architecture() == "x86_64" else "x86_64"
    found = problems(config(f"    runtime: provided\n    architecture: {other}"))
    assert any(f"is {other}, but this machine is" in problem for problem in found), found


def test_a_missing_package_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = problems(config("    runtime: provided"))
    assert any("f.code" in problem for problem in found), found


def test_runtime_api_answers_only_the_invocation_in_progress() -> None:
    """`next` hands out the event with Lambda's headers; a response for another request
    id is 400 and changes nothing; the right one is 202; a second answer is 400; a body
    over 6 MB is 413 and a Function.ResponseSizeTooLarge function error."""
    asyncio.run(exchange())


async def exchange() -> None:
    api = RuntimeApi()
    address = await api.start()
    base = f"http://{address}/2018-06-01/runtime"
    try:
        async with aiohttp.ClientSession() as session:
            invocation = Invocation("req-1", b'{"a": 1}', 1_700_000_000.5, "arn:fn")
            api.submit(invocation)
            async with session.get(f"{base}/invocation/next") as answer:
                assert await answer.read() == b'{"a": 1}'
                assert answer.headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
                assert answer.headers["Lambda-Runtime-Deadline-Ms"] == "1700000000500"
                assert answer.headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:fn"
                assert answer.headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
            async with session.post(f"{base}/invocation/other/response", data=b"x") as answer:
                assert answer.status == 400
            assert not invocation.answer.done()
            async with session.post(f"{base}/invocation/req-1/response", data=b'"ok"') as answer:
                assert answer.status == 202
            assert (await invocation.answer).payload == b'"ok"'
            async with session.post(f"{base}/invocation/req-1/response", data=b"x") as answer:
                assert answer.status == 400
            async with session.post(f"{base}/init/error", data=b"{}") as answer:
                assert answer.status == 403

            big = Invocation("req-2", b"{}", 0.0, "arn:fn")
            api.submit(big)
            async with session.get(f"{base}/invocation/next") as answer:
                await answer.read()
            body = b"x" * (MAX_RESPONSE_BYTES + 1)
            async with session.post(f"{base}/invocation/req-2/response", data=body) as answer:
                assert answer.status == 413
            result = await asyncio.wait_for(big.answer, 5)
            assert result.function_error == "Unhandled"
            assert b"Function.ResponseSizeTooLarge" in result.payload
    finally:
        await api.close()

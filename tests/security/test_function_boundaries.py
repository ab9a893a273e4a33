"""What crosses between the daemon and a function: a `subprocess` command sees none of the
daemon's secrets, and no function's answer over Lambda's 6 MB is read, whatever kind of
function it is (esm-reference.md 0, 14)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from bridge.config.plugins import BuildContext, Identity
from bridge.invokers import MAX_RESPONSE_BYTES
from bridge.records import InvokeResult
from connectors.http.config import HttpFunctionConfig
from connectors.python.config import PythonFunctionConfig
from connectors.subprocess.config import SubprocessFunctionConfig

SECRETS = {
    "LAMBDA_BRIDGE_HTTP_TOKEN": "admin-token-do-not-leak",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-do-not-leak",
    "KAFKA_SASL_PASSWORD": "sasl-do-not-leak",
}


def environment_seen(tmp_path: Path, inherit: bool) -> dict[str, str]:
    """`lambda-bridge invoke` of a command that writes its environment to a file."""
    out = tmp_path / f"env-{inherit}.json"
    (tmp_path / "bridge.yaml").write_text(
        f"""\
functions:
  show:
    invoker: subprocess
    command: [{json.dumps(sys.executable)}, -c, "import json, os; json.dump(dict(os.environ), open(os.environ['OUT'], 'w'))"]
    inherit_environment: {str(inherit).lower()}
    environment: {{OUT: {json.dumps(str(out))}, STAGE: local}}
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "invoke", "show", "--config", "bridge.yaml"],
        cwd=tmp_path,
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, str] = json.loads(out.read_text())
    return seen


def test_a_command_sees_no_secret_of_the_daemon(tmp_path: Path) -> None:
    """By default the command gets PATH and the like, Lambda's variables and its own
    `environment:`, and none of the daemon's tokens, keys or passwords; with
    `inherit_environment: true` it gets them all, as before."""
    seen = environment_seen(tmp_path, inherit=False)
    assert not set(SECRETS) & set(seen)
    assert not any(value in seen.values() for value in SECRETS.values())
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "show" and seen["STAGE"] == "local"
    assert seen["PATH"] == os.environ["PATH"]
    inherited = environment_seen(tmp_path, inherit=True)
    assert {name: inherited[name] for name in SECRETS} == SECRETS


def build_context(tmp_path: Path) -> BuildContext:
    return BuildContext(identity=Identity(), state_dir=tmp_path, handler_root=tmp_path)


def is_too_large(result: InvokeResult) -> bool:
    document = json.loads(result.payload)
    return (
        result.function_error == "Unhandled"
        and document["errorType"] == "Function.ResponseSizeTooLarge"
    )


def test_a_python_handler_answering_over_6_mb_is_a_function_error(tmp_path: Path) -> None:
    """A result whose JSON is over 6 MB is never handed on."""
    (tmp_path / "big.py").write_text(
        f"def handler(event, context):\n    return 'x' * {MAX_RESPONSE_BYTES}\n"
    )
    invoker = PythonFunctionConfig(invoker="python", handler="big.py:handler").build(
        "big", build_context(tmp_path)
    )

    async def main() -> InvokeResult:
        await invoker.start()
        try:
            return await invoker.invoke(b"{}", "r1")
        finally:
            await invoker.close()

    assert is_too_large(asyncio.run(main()))


def test_a_command_writing_over_6_mb_is_stopped_and_not_read_further(tmp_path: Path) -> None:
    """A command that would write without end: once its output passes 6 MB it is killed
    and the invocation is Function.ResponseSizeTooLarge, long before its timeout."""
    endless = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    (tmp_path / "endless.py").write_text(endless)
    config = SubprocessFunctionConfig(
        invoker="subprocess", command=[sys.executable, str(tmp_path / "endless.py")], timeout=60
    )
    invoker = config.build("endless", build_context(tmp_path))

    async def main() -> InvokeResult:
        await invoker.start()
        return await asyncio.wait_for(invoker.invoke(b"{}", "r1"), 30)

    assert is_too_large(asyncio.run(main()))


@pytest.mark.parametrize("declared", [True, False])
def test_an_endpoint_answering_over_6_mb_is_not_read_whole(tmp_path: Path, declared: bool) -> None:
    """An http function whose answer is over 6 MB, with or without Content-Length: the
    invocation is Function.ResponseSizeTooLarge, and no more than the limit is read."""

    async def main() -> InvokeResult:
        async def handler(request: web.Request) -> web.StreamResponse:
            if declared:
                return web.Response(body=b"x" * (MAX_RESPONSE_BYTES + 10))
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(200):  # 13 MB in all, unless the reader gives up first
                await response.write(b"x" * 65536)
            return response

        app = web.Application()
        app.router.add_post("/invoke", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        invoker = HttpFunctionConfig(invoker="http", url=f"http://127.0.0.1:{port}/invoke").build(
            "big", build_context(tmp_path)
        )
        await invoker.start()
        try:
            return await invoker.invoke(b"{}", "r1")
        finally:
            await invoker.close()
            await runner.cleanup()

    assert is_too_large(asyncio.run(main()))

"""The invoker contract's registry: one entry per invoker, each with the real target it
talks to and, as data, where the invoker's nature or AWS's semantics make a case not
apply or come out differently (tests/contract/test_invokers.py runs the cases).

Every target runs the same handler behaviours, chosen by the event's `behaviour`:
`echo` (the default) answers the event itself, `fail` raises ValueError("refused <id>"),
`sleep` sleeps `seconds` and answers the event, `not_json` answers something that is not
JSON and `too_large` answers over 6 MB. A new invoker gets every case by adding a
`Kind` to KINDS with a factory for its target.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import textwrap
import urllib.request
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from bridge.config.plugins import BuildContext, Identity
from bridge.config.registry import registered
from bridge.protocols import Invoker
from tests.contract.cases import check_declared
from tests.e2e import aws_helpers as aws
from tests.services import FlakyProxy

# Over Lambda's 6 MB response limit.
TOO_LARGE = 7 * 1024 * 1024

CASES = frozenset(
    {
        "success",
        "function_error",
        "timeout",
        "not_json",
        "too_large",
        "large_event",
        "concurrent",
        "close_twice",
        "close_after_failed_start",
        "target_gone",
    }
)

# The handler of in-process and runtime functions (a module of its own in each).
PYTHON_HANDLER = f"""
import time

def handler(event, context):
    behaviour = event.get("behaviour", "echo")
    if behaviour == "fail":
        raise ValueError(f"refused {{event['id']}}")
    if behaviour == "sleep":
        time.sleep(event["seconds"])
    if behaviour == "not_json":
        return {{"a set is", "not JSON"}}
    if behaviour == "too_large":
        return "x" * {TOO_LARGE}
    return event
"""

# The command of subprocess functions: a Lambda error document on stdout and a non-zero
# exit status is how a command reports a function error.
SCRIPT = f"""#!{sys.executable}
import json, sys, time

event = json.loads(sys.stdin.buffer.read())
behaviour = event.get("behaviour", "echo")
if behaviour == "fail":
    error = {{"errorMessage": f"refused {{event['id']}}", "errorType": "ValueError"}}
    sys.stdout.write(json.dumps(error))
    sys.exit(1)
if behaviour == "sleep":
    time.sleep(event["seconds"])
if behaviour == "not_json":
    sys.stdout.write("not json")
elif behaviour == "too_large":
    sys.stdout.write("x" * {TOO_LARGE})
else:
    sys.stdout.write(json.dumps(event))
"""


@dataclass
class Target:
    """A running function for one test: the settings of its config entry (`invoker:`
    left out), and what the cases do to it."""

    settings: dict[str, Any]
    # Settings with which start() fails; None where start() cannot fail.
    failing_start: dict[str, Any] | None = None
    # Makes the target unreachable; None where there is nothing to go away.
    go_away: Callable[[], Awaitable[None]] | None = None
    # Told before an invocation asks for a `behaviour`, for targets that run no code.
    expect: Callable[[str], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Outcome:
    """What an invocation comes to: its function error, and the payload's errorType or
    the payload itself."""

    function_error: str | None
    error_type: str | None = None
    payload: bytes | None = None


@dataclass(frozen=True)
class Kind:
    """One invoker in the contract."""

    name: str  # its `invoker:` type name
    target: Callable[[Path, Mapping[str, Any]], AbstractAsyncContextManager[Target]]
    # An answer that is not JSON: refused like Lambda's runtime, or passed on as it is.
    not_json: Outcome
    # Whose request id a result carries: the caller's, or one the service makes per call.
    request_ids: Literal["caller", "service"] = "caller"
    # Session fixtures the target needs (resolved before the test's event loop runs).
    fixtures: tuple[str, ...] = ()
    # Case -> why it does not apply (the test is skipped with that reason).
    does_not_apply: Mapping[str, str] = field(default_factory=dict)
    # Case -> a known difference from the contract (a strict xfail: fixing it fails it).
    known_differences: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_declared(self, CASES)


def build(kind: Kind, tmp_path: Path, settings: Mapping[str, Any]) -> Invoker:
    """The invoker as the daemon builds it: the registered config model, then build()."""
    model = registered("functions")[kind.name]
    config = model.model_validate({"invoker": kind.name, **settings})
    context = BuildContext(identity=Identity(), state_dir=tmp_path / "state", handler_root=tmp_path)
    invoker: Invoker = config.build("contract-fn", context)
    return invoker


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if executable:
        path.chmod(0o755)
    return path


# Targets


@asynccontextmanager
async def python_target(tmp_path: Path, _: Mapping[str, Any]) -> AsyncIterator[Target]:
    write(tmp_path / "handler.py", PYTHON_HANDLER)
    yield Target({"handler": "handler.py:handler"}, failing_start={"handler": "missing.py:h"})


@asynccontextmanager
async def runtime_target(tmp_path: Path, _: Mapping[str, Any]) -> AsyncIterator[Target]:
    code = tmp_path / "package"
    write(code / "handler.py", PYTHON_HANDLER)
    # The daemon's own Python version, which the machine is sure to have.
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    settings = {"runtime": runtime, "handler": "handler.handler", "code": str(code)}
    yield Target(settings, failing_start={**settings, "code": str(tmp_path / "missing")})


@asynccontextmanager
async def subprocess_target(tmp_path: Path, _: Mapping[str, Any]) -> AsyncIterator[Target]:
    command = write(tmp_path / "function", SCRIPT, executable=True)

    async def go_away() -> None:
        command.unlink()

    yield Target(
        {"command": [str(command)]},
        failing_start={"command": [str(tmp_path / "missing")]},
        go_away=go_away,
    )


async def _answer(request: web.Request) -> web.StreamResponse:
    """The Invoke API of a function, as an emulator (the RIE) answers it."""
    body = await request.read()
    event = json.loads(body)
    behaviour = event.get("behaviour", "echo")
    if behaviour == "fail":
        error = {"errorMessage": f"refused {event['id']}", "errorType": "ValueError"}
        return web.json_response(error, headers={"X-Amz-Function-Error": "Unhandled"})
    if behaviour == "sleep":
        await asyncio.sleep(event["seconds"])
    if behaviour == "not_json":
        return web.Response(body=b"not json")
    if behaviour == "too_large":
        return web.Response(body=b"x" * TOO_LARGE)
    return web.Response(body=body, content_type="application/json")


@asynccontextmanager
async def http_target(tmp_path: Path, _: Mapping[str, Any]) -> AsyncIterator[Target]:
    path = "/2015-03-31/functions/function/invocations"
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post(path, _answer)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    try:
        yield Target({"url": url}, go_away=runner.cleanup)
    finally:
        await runner.cleanup()


def _moto_api(endpoint: str, path: str, body: Any) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def _moto_function(endpoint: str) -> str:
    """A function in moto's Lambda without Docker, which runs no code: an invocation
    answers the event, or the next answer queued through moto's API."""
    _moto_api(endpoint, "config", {"lambda": {"use_docker": False}})
    name = aws.unique("contract")
    role = aws.client("iam", endpoint).create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", PYTHON_HANDLER)
    aws.client("lambda", endpoint).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": package.getvalue()},
    )
    return name


@asynccontextmanager
async def lambda_target(tmp_path: Path, fixtures: Mapping[str, Any]) -> AsyncIterator[Target]:
    endpoint: str = fixtures["aws_endpoint"]
    name = await asyncio.to_thread(_moto_function, endpoint)
    # Between the invoker and moto, so that moto can seem to go away.
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1])).start()
    answers = {"not_json": "not json", "too_large": "x" * TOO_LARGE}

    async def expect(behaviour: str) -> None:
        if behaviour in answers:
            body = {"results": [answers[behaviour]], "region": "us-east-1"}
            await asyncio.to_thread(_moto_api, endpoint, "static/lambda-simple/response", body)

    async def go_away() -> None:
        proxy.cut()

    settings = {"function_name": name, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    try:
        yield Target(
            settings,
            failing_start={**settings, "function_name": f"missing-{uuid.uuid4().hex[:8]}"},
            go_away=go_away,
            expect=expect,
        )
    finally:
        proxy.close()


MARSHAL_ERROR = Outcome("Unhandled", error_type="Runtime.MarshalError")
AS_IT_IS = Outcome(None, payload=b"not json")
OWN_PROCESSES = "environments are the invoker's own processes: one that ends is replaced"
NO_CODE = "moto's Lambda without Docker runs no function code: it answers the event"

KINDS = (
    Kind(
        "python",
        python_target,
        not_json=MARSHAL_ERROR,
        does_not_apply={"target_gone": "the handler runs in the daemon: nothing can go away"},
    ),
    Kind(
        "http",
        http_target,
        not_json=AS_IT_IS,
        does_not_apply={"close_after_failed_start": "start() only makes an HTTP session"},
    ),
    Kind("subprocess", subprocess_target, not_json=AS_IT_IS),
    Kind(
        "lambda",
        lambda_target,
        not_json=AS_IT_IS,
        request_ids="service",
        fixtures=("aws_endpoint",),
        does_not_apply={"function_error": NO_CODE, "timeout": NO_CODE},
    ),
    Kind(
        "runtime",
        runtime_target,
        not_json=MARSHAL_ERROR,
        does_not_apply={"target_gone": OWN_PROCESSES},
    ),
)

"""The `runtime` invoker with Node.js: an unmodified `nodejsNN.x` handler run by the
official runtime interface client (npm package aws-lambda-ric) through real
`lambda-bridge invoke` processes.

aws-lambda-ric builds curl and aws-lambda-cpp from source when it is installed (cmake,
make, a C++ compiler, autoconf, automake, libtool), which takes a minute or two; the
install is kept between runs in a cache folder (LAMBDA_BRIDGE_TEST_CACHE, else
~/.cache/lambda-bridge/tests), as `npm install -g --prefix <folder>`, which the bridge
finds through `npm root -g` with NPM_CONFIG_PREFIX=<folder>: the way a user's global
install is found. No node or npm (or build tools) skips, or fails under
LAMBDA_BRIDGE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.runtime_support import invoke, response
from tests.services import unavailable

pytestmark = pytest.mark.e2e

BUILD_TOOLS = ("cmake", "make", "c++", "autoreconf", "aclocal", "libtoolize")

# An ES module handler. ES modules do not search NODE_PATH (on Lambda neither), so a
# layer's module is required through createRequire, which does.
HANDLER = """\
import { createRequire } from "node:module";

const { greeting } = createRequire(import.meta.url)("greeting");

export const handler = async (event, context) => {
  console.log("handling", JSON.stringify(event));
  if (event.fail) {
    throw new TypeError("asked to fail");
  }
  return {
    pid: process.pid,
    event,
    greeting: greeting(context.functionName),
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    remaining: context.getRemainingTimeInMillis(),
    env: process.env,
    cwd: process.cwd(),
  };
};
"""

LAYER_MODULE = """\
module.exports.greeting = (name) => `hello ${name} from the layer`;
"""


def node_major(node: str) -> int:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


def cache_root() -> Path:
    configured = os.environ.get("LAMBDA_BRIDGE_TEST_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "lambda-bridge" / "tests"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install_ric(node: str, npm: str, version: str, prefix: Path) -> None:
    """npm install -g --prefix `prefix` aws-lambda-ric@`version` (into a temporary folder
    first, so an interrupted install is never taken for a complete one)."""
    staging = prefix.with_name(prefix.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = {**os.environ, "npm_config_update_notifier": "false"}
    headers = Path(node).resolve().parent.parent
    if (headers / "include" / "node" / "node.h").is_file():
        env["npm_config_nodedir"] = str(headers)  # node-gyp: the installed headers
    package = f"aws-lambda-ric@{version}"
    result = subprocess.run(
        [npm, "install", "-g", "--prefix", str(staging), "--no-audit", "--no-fund", package],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm install aws-lambda-ric@{version} failed:\n{result.stderr[-3000:]}")
    staging.rename(prefix)


@pytest.fixture(scope="session")
def ric_prefix() -> tuple[Path, str]:
    """An npm prefix holding aws-lambda-ric, and the runtime name (nodejsNN.x)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node.js tests need node and npm")
    assert node is not None and npm is not None
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing:
        unavailable(
            f"aws-lambda-ric builds native code at install and needs {', '.join(missing)} "
            "(apt-get install cmake make g++ autoconf automake libtool)"
        )
    major = node_major(node)
    # aws-lambda-ric 4.x requires Node.js 22 or later; 3.x runs on 18 and 20.
    version = "4.0.2" if major >= 22 else "3.3.0"
    prefix = cache_root() / f"aws-lambda-ric-{version}-node{major}-{platform.machine()}"
    with locked(prefix.with_name(prefix.name + ".lock")):
        if not (prefix / "lib" / "node_modules" / "aws-lambda-ric" / "package.json").is_file():
            shutil.rmtree(prefix, ignore_errors=True)
            install_ric(node, npm, version, prefix)
    return prefix, f"nodejs{major}.x"


def test_node_handler_through_aws_lambda_ric(tmp_path: Path, ric_prefix: tuple[Path, str]) -> None:
    """An ES module handler runs under aws-lambda-ric with Lambda's context and variables,
    imports a module from its layer's nodejs/node_modules, and a thrown error answers
    with the client's error document."""
    prefix, runtime = ric_prefix
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "index.mjs").write_text(HANDLER)
    module = tmp_path / "layer" / "nodejs" / "node_modules" / "greeting"
    module.mkdir(parents=True)
    (module / "index.js").write_text(LAYER_MODULE)
    (tmp_path / "bridge.yaml").write_text(
        f"""\
state_dir: ./state
functions:
  hello:
    invoker: runtime
    runtime: {runtime}
    handler: index.handler
    code: ./fn
    layers: [./layer]
    memory_size: 256
    timeout: 5
    environment: {{STAGE: test}}
mappings: []
"""
    )
    status, output = invoke(
        tmp_path, "bridge.yaml", "hello", '{"n": 1}', {"NPM_CONFIG_PREFIX": str(prefix)}
    )
    assert status == 0, output
    seen = response(output)
    assert seen["event"] == {"n": 1}
    assert seen["greeting"] == "hello hello from the layer"
    assert seen["functionName"] == "hello"
    assert seen["functionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert seen["memoryLimitInMB"] == "256"
    assert 0 < seen["remaining"] <= 5000
    assert f"request id: {seen['requestId']}" in output
    env = seen["env"]
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{runtime}"
    assert env["_HANDLER"] == "index.handler"
    assert env["STAGE"] == "test"
    assert env["LAMBDA_TASK_ROOT"] == seen["cwd"]
    assert "/nodejs/node_modules" in env["NODE_PATH"]
    assert "DAEMON_SECRET" not in env and "NPM_CONFIG_PREFIX" not in env

    status, output = invoke(
        tmp_path, "bridge.yaml", "hello", '{"fail": true}', {"NPM_CONFIG_PREFIX": str(prefix)}
    )
    assert status != 0, output
    error = response(output)
    assert error["errorType"] == "TypeError"
    assert error["errorMessage"] == "asked to fail"

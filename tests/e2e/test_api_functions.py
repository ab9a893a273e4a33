"""GetFunction, GetFunctionConfiguration and ListFunctions of a running daemon, driven by
boto3: the fields SDKs expect, paging, and the function's own environment only; and
Invoke's ClientContext reaching a python handler's `context.client_context` and a runtime
function's Lambda-Runtime-Client-Context header."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_api_invoke import HANDLER, client
from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

# A python handler that answers with what it was given of the client context.
CONTEXT_HANDLER = """\
def handler(event, context):
    cc = context.client_context
    if cc is None:
        return None
    client = cc.client and {"app_title": cc.client.app_title, "installation_id": cc.client.installation_id}
    return {"custom": cc.custom, "env": cc.env, "client": client}
"""

# A provided.al2023 bootstrap that answers with the client context header it got.
BOOTSTRAP = r"""#!/usr/bin/env python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        answer = json.dumps({"header": response.headers.get("Lambda-Runtime-Client-Context")})
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=answer.encode()))
"""

CONFIG = """\
state_dir: ./state
aws: {region: eu-west-1, account_id: "123456789012"}
api: {listen: "127.0.0.1:0"}
functions:
  echo: {invoker: python, handler: handler.py:handler, timeout: 10, memory_size: 256,
         reserved_concurrency: 2}
  teller: {invoker: python, handler: context.py:handler}
  talker:
    invoker: runtime
    runtime: provided.al2023
    code: ./talker
    timeout: 7
    environment: {GREETING: hello, FROM_DAEMON: "${API_TEST_VALUE}"}
"""

LAST_MODIFIED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("functions")
    (root / "handler.py").write_text(HANDLER)
    (root / "context.py").write_text(CONTEXT_HANDLER)
    (root / "talker").mkdir()
    (root / "talker" / "bootstrap").write_text(BOOTSTRAP)
    (root / "talker" / "bootstrap").chmod(0o755)
    (root / "bridge.yaml").write_text(CONFIG)
    daemon = DaemonProcess(
        root / "bridge.yaml", root, env={"API_TEST_VALUE": "configured", "DAEMON_ONLY": "no"}
    ).start()
    [listening] = daemon.wait_for_log("api.listening")
    yield f"http://127.0.0.1:{listening['address'].rpartition(':')[2]}"
    daemon.kill()


def test_get_function_configuration_has_the_fields_sdks_expect(endpoint: str) -> None:
    described: dict[str, Any] = client(endpoint).get_function_configuration(FunctionName="talker")
    assert described["FunctionName"] == "talker"
    assert described["FunctionArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:talker"
    assert described["Runtime"] == "provided.al2023"
    assert described["Timeout"] == 7
    assert described["MemorySize"] == 128
    assert described["State"] == "Active"
    assert described["LastUpdateStatus"] == "Successful"
    assert described["Version"] == "$LATEST"
    assert described["PackageType"] == "Zip"
    assert described["Architectures"][0] in ("x86_64", "arm64")
    assert described["CodeSize"] == len(BOOTSTRAP.encode())
    assert LAST_MODIFIED.fullmatch(described["LastModified"])
    assert described["Role"].startswith("arn:aws:iam::123456789012:role/")
    # The function's own variables as configured, nothing of the daemon's environment.
    assert described["Environment"] == {
        "Variables": {"GREETING": "hello", "FROM_DAEMON": "configured"}
    }
    # A partial ARN and a qualifier name the same function.
    again = client(endpoint).get_function_configuration(
        FunctionName="123456789012:function:talker", Qualifier="$LATEST"
    )
    assert again["LastModified"] == described["LastModified"]
    assert again["RevisionId"] == described["RevisionId"]


def test_get_function_adds_code_and_concurrency(endpoint: str) -> None:
    answer: dict[str, Any] = client(endpoint).get_function(FunctionName="echo")
    configuration = answer["Configuration"]
    assert configuration["FunctionName"] == "echo"
    assert configuration["Handler"] == "handler.py:handler"
    assert configuration["MemorySize"] == 256
    assert configuration["Runtime"].startswith("python3.")
    assert "Environment" not in configuration
    assert answer["Code"]["RepositoryType"] == "S3"
    assert answer["Concurrency"] == {"ReservedConcurrentExecutions": 2}
    talker = client(endpoint).get_function(FunctionName="talker")
    assert talker["Code"]["Location"].startswith("file://")
    assert "Concurrency" not in talker


def test_unknown_functions_are_404(endpoint: str) -> None:
    lam = client(endpoint)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="nope")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName="echo", Qualifier="live")


def test_list_functions_pages_with_max_items(endpoint: str) -> None:
    lam = client(endpoint)
    everything = lam.list_functions()
    assert [f["FunctionName"] for f in everything["Functions"]] == ["echo", "talker", "teller"]
    assert "NextMarker" not in everything
    first = lam.list_functions(MaxItems=1)
    assert [f["FunctionName"] for f in first["Functions"]] == ["echo"]
    rest = lam.list_functions(MaxItems=2, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in rest["Functions"]] == ["talker", "teller"]
    assert "NextMarker" not in rest
    # boto3's paginator follows the markers.
    pages = lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1})
    assert [f["FunctionName"] for page in pages for f in page["Functions"]] == [
        "echo",
        "talker",
        "teller",
    ]


def encoded(context: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(context).encode()).decode()


CLIENT_CONTEXT = {
    "client": {"installation_id": "install-1", "app_title": "Orders"},
    "custom": {"tenant": "acme"},
    "env": {"platform": "Android"},
}


def test_client_context_reaches_a_python_handler(endpoint: str) -> None:
    lam = client(endpoint)
    response = lam.invoke(FunctionName="teller", ClientContext=encoded(CLIENT_CONTEXT))
    assert json.loads(response["Payload"].read()) == {
        "custom": {"tenant": "acme"},
        "env": {"platform": "Android"},
        "client": {"app_title": "Orders", "installation_id": "install-1"},
    }
    # Without one, the handler's client_context is None, as on Lambda.
    assert json.loads(lam.invoke(FunctionName="teller")["Payload"].read()) is None


def test_client_context_reaches_the_runtime_api_header(endpoint: str) -> None:
    lam = client(endpoint)
    response = lam.invoke(FunctionName="talker", ClientContext=encoded(CLIENT_CONTEXT))
    header = json.loads(response["Payload"].read())["header"]
    assert json.loads(header) == CLIENT_CONTEXT
    assert json.loads(lam.invoke(FunctionName="talker")["Payload"].read()) == {"header": None}


def test_a_client_context_that_is_not_base64_json_is_refused(endpoint: str) -> None:
    lam = client(endpoint)
    for bad in ["not base64!", base64.b64encode(b"[1, 2]").decode(), encoded({"x": "y" * 3000})]:
        with pytest.raises(lam.exceptions.InvalidRequestContentException):
            lam.invoke(FunctionName="teller", ClientContext=bad)


@pytest.mark.skipif(shutil.which("aws") is None, reason="no aws cli installed")
def test_the_aws_cli_lists_and_gets_functions(endpoint: str) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDANY",
        "AWS_SECRET_ACCESS_KEY": "anything",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }

    def cli(*args: str) -> Any:
        result = subprocess.run(
            ["aws", "lambda", *args, "--endpoint-url", endpoint, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        return json.loads(result.stdout)

    # The cli follows NextMarker itself, page by page.
    listed = cli("list-functions", "--page-size", "1")
    assert [f["FunctionName"] for f in listed["Functions"]] == ["echo", "talker", "teller"]
    got = cli("get-function", "--function-name", "talker")
    assert got["Configuration"]["Runtime"] == "provided.al2023"
    assert cli("get-function-configuration", "--function-name", "echo")["MemorySize"] == 256

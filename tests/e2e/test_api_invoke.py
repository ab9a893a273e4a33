"""Lambda's Invoke API of a running daemon, driven by boto3 and the aws cli with nothing
changed but the endpoint URL: results, function errors, DryRun, Tail logs, AWS's errors,
throttles, and SigV4 verified beyond loopback."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

HANDLER = """\
import time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("mark"):
        open(event["mark"], "w").close()
    time.sleep(event.get("sleep", 0))
    return {"echo": event, "request_id": context.aws_request_id}
"""

# A provided.al2023 bootstrap that logs a line, then answers with the event.
BOOTSTRAP = r"""#!/usr/bin/env python3
import os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = response.read()
    print("handling the event", flush=True)
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=event))
"""

CONFIG = """\
state_dir: ./state
aws: {{region: eu-west-1, account_id: "123456789012"}}
api: {api}
functions:
  echo: {{invoker: python, handler: handler.py:handler, timeout: 10}}
  single: {{invoker: python, handler: handler.py:handler, timeout: 10, reserved_concurrency: 1}}
  talker: {{invoker: runtime, runtime: provided.al2023, code: ./talker, timeout: 10}}
"""

NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=30)


def start(root: Path, api: str, **env: str) -> tuple[DaemonProcess, str]:
    (root / "handler.py").write_text(HANDLER)
    (root / "talker").mkdir(exist_ok=True)
    (root / "talker" / "bootstrap").write_text(BOOTSTRAP)
    (root / "talker" / "bootstrap").chmod(0o755)
    (root / "bridge.yaml").write_text(CONFIG.format(api=api))
    daemon = DaemonProcess(root / "bridge.yaml", root, env=env).start()
    [listening] = daemon.wait_for_log("api.listening")
    port = listening["address"].rpartition(":")[2]
    return daemon, f"http://127.0.0.1:{port}"


def client(endpoint: str, secret: str = "anything", key_id: str = "AKIDANY") -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    daemon, url = start(tmp_path_factory.mktemp("api"), '{listen: "127.0.0.1:0"}')
    yield url
    daemon.kill()


def invoke(endpoint: str, name: str, payload: bytes = b"{}", **kwargs: Any) -> dict[str, Any]:
    response: dict[str, Any] = client(endpoint).invoke(FunctionName=name, Payload=payload, **kwargs)
    response["Body"] = response.pop("Payload").read()
    return response


def error_of(endpoint: str, name: str, payload: bytes = b"{}", **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as raised:
        invoke(endpoint, name, payload, **kwargs)
    return raised.value


def test_request_response_answers_the_functions_result(endpoint: str) -> None:
    response = invoke(endpoint, "echo", b'{"order": 7}')
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    body = json.loads(response["Body"])
    assert body["echo"] == {"order": 7}
    assert body["request_id"] == response["ResponseMetadata"]["RequestId"]
    # A name, a partial or full ARN, with a qualifier in it or in ?Qualifier=.
    for name, qualifier in [
        ("123456789012:function:echo", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:echo:$LATEST", None),
        ("echo", "$LATEST"),
    ]:
        extra = {"Qualifier": qualifier} if qualifier else {}
        assert invoke(endpoint, name, b'{"n": 1}', **extra)["StatusCode"] == 200
    # Without a payload the function gets {}, as on Lambda.
    assert json.loads(client(endpoint).invoke(FunctionName="echo")["Payload"].read())["echo"] == {}


def test_a_function_error_is_a_200_with_the_error_document(endpoint: str) -> None:
    response = invoke(endpoint, "echo", b'{"fail": true}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    document = json.loads(response["Body"])
    assert document["errorType"] == "ValueError"
    assert document["errorMessage"] == "asked to fail"


def test_dry_run_is_204_and_checks_the_function(endpoint: str) -> None:
    response = client(endpoint).invoke(FunctionName="echo", InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    with pytest.raises(client(endpoint).exceptions.ResourceNotFoundException):
        client(endpoint).invoke(FunctionName="nope", InvocationType="DryRun")


def test_errors_have_aws_codes_and_shapes(endpoint: str) -> None:
    lambda_client = client(endpoint)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as missing:
        lambda_client.invoke(FunctionName="nope", Payload=b"{}")
    answer = missing.value.response
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert answer["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nope"
    )
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == (
        "ResourceNotFoundException"
    )
    assert answer["ResponseMetadata"]["RequestId"]
    assert error_of(endpoint, "echo", Qualifier="1").response["Error"]["Code"] == (
        "ResourceNotFoundException"
    )

    with pytest.raises(lambda_client.exceptions.InvalidRequestContentException) as not_json:
        lambda_client.invoke(FunctionName="echo", Payload=b"not json")
    assert not_json.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    too_large = error_of(endpoint, "echo", b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert too_large.response["Error"]["Code"] == "RequestTooLargeException"
    assert too_large.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    event = error_of(endpoint, "echo", b"not json", InvocationType="Event")
    assert event.response["Error"]["Code"] == "InvalidRequestContentException"
    assert event.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_tail_returns_the_end_of_the_log(endpoint: str) -> None:
    """A runtime function's last 4 KB, START to REPORT; other invokers keep no log, and
    their LogResult is empty."""
    response = invoke(endpoint, "talker", b'{"hello": 1}', LogType="Tail")
    assert json.loads(response["Body"]) == {"hello": 1}
    log = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    assert log.startswith(f"START RequestId: {request_id} Version: $LATEST")
    assert "handling the event" in log
    assert f"REPORT RequestId: {request_id}" in log
    assert invoke(endpoint, "echo", LogType="Tail")["LogResult"] == ""
    assert "LogResult" not in invoke(endpoint, "talker")


def test_a_sync_call_beyond_reserved_concurrency_is_throttled(
    endpoint: str, tmp_path: Path
) -> None:
    """Where a mapping's batch waits for the function's one slot, an Invoke gets Lambda's
    429."""
    mark = tmp_path / "running"
    event = json.dumps({"sleep": 2, "mark": str(mark)}).encode()
    results: list[dict[str, Any]] = []
    holder = threading.Thread(target=lambda: results.append(invoke(endpoint, "single", event)))
    holder.start()
    try:
        wait_for(mark.exists, what="the first invocation to hold the slot")
        throttled = error_of(endpoint, "single")
        assert throttled.response["Error"]["Code"] == "TooManyRequestsException"
        assert throttled.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert throttled.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    finally:
        holder.join(30)
    assert results[0]["StatusCode"] == 200
    assert invoke(endpoint, "single")["StatusCode"] == 200


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_web_page_cannot_invoke_through_a_browser(endpoint: str) -> None:
    """On loopback any credentials are accepted, but a form a page posts cross-site (no
    Authorization, no X-Amz-* header, no JSON content type) is refused, and so is a page
    that rebinds its own name to 127.0.0.1 (its name arrives as Host)."""
    url = f"{endpoint}/2015-03-31/functions/echo/invocations"
    status, body = post(url, {"Content-Type": "text/plain"})
    assert status == 403 and body["Type"] == "User"
    status, _ = post(url, {"Host": "evil.example", "Authorization": "x"})
    assert status == 421
    status, body = post(url, {"Content-Type": "application/json"})
    assert status == 200 and body["echo"] == {}


@pytest.mark.skipif(shutil.which("aws") is None, reason="no aws cli installed")
def test_the_aws_cli_invokes(endpoint: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDANY",
        "AWS_SECRET_ACCESS_KEY": "anything",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    base = ["aws", "lambda", "invoke", "--endpoint-url", endpoint]
    version = subprocess.run(["aws", "--version"], capture_output=True, text=True, check=True)
    # Version 2 reads a blob argument as base64 unless told otherwise; version 1 as is.
    v2 = "aws-cli/2" in version.stdout + version.stderr
    blob = ["--cli-binary-format", "raw-in-base64-out"] if v2 else []
    result = subprocess.run(
        [*base, "--function-name", "echo", *blob, "--payload", '{"cli": true}', str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "$LATEST"
    assert json.loads(out.read_text())["echo"] == {"cli": True}
    failed = subprocess.run(
        [*base, "--function-name", "nope", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert failed.returncode != 0
    assert "ResourceNotFoundException" in failed.stderr


def test_beyond_loopback_every_signature_is_verified(tmp_path: Path) -> None:
    """Listening on every address, the API takes only requests signed with its key pair:
    a wrong secret is refused (403 InvalidSignatureException), another key unrecognized;
    the secret never reaches the log."""
    secret = "bridge-secret-0123456789"
    api = (
        '{listen: "0.0.0.0:0", credentials: '
        "{access_key_id: AKIDBRIDGE, secret_access_key: '${API_SECRET}'}}"
    )
    daemon, url = start(tmp_path, api, API_SECRET=secret)
    try:
        good = client(url, secret=secret, key_id="AKIDBRIDGE")
        response = good.invoke(FunctionName="echo", Payload=b'{"signed": 1}')
        assert json.loads(response["Payload"].read())["echo"] == {"signed": 1}
        qualified = good.invoke(
            FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:echo",
            Qualifier="$LATEST",
            Payload=b"{}",
        )
        assert qualified["StatusCode"] == 200

        with pytest.raises(ClientError) as wrong:
            client(url, secret="not-the-secret", key_id="AKIDBRIDGE").invoke(
                FunctionName="echo", Payload=b"{}"
            )
        assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as other:
            client(url, secret=secret, key_id="AKIDOTHER").invoke(FunctionName="echo")
        assert other.value.response["Error"]["Code"] == "UnrecognizedClientException"
        status, body = post(f"{url}/2015-03-31/functions/echo/invocations", {"Authorization": "x"})
        assert (status, body["Type"]) == (403, "User")
    finally:
        daemon.stop()
    assert secret not in "".join(daemon.raw_stderr) + daemon.stdout

"""Versions and aliases through Lambda's API of a running daemon, driven by boto3: Invoke
with a version, an alias or $LATEST runs that version's own settings and names it in
ExecutedVersion; a weighted alias splits invocations; ListVersionsByFunction, ListAliases,
GetAlias and GetFunction with a qualifier describe them; a reload replaces a version."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

HANDLER = """\
def handler(event, context):
    return {{"code": "{code}", "version": context.function_version,
            "arn": context.invoked_function_arn, "memory": context.memory_limit_in_mb}}
"""

# A provided.al2023 bootstrap answering with its version and the ARN it was invoked by.
BOOTSTRAP = r"""#!/usr/bin/env python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        arn = response.headers["Lambda-Runtime-Invoked-Function-Arn"]
    answer = {"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "arn": arn,
              "colour": os.environ.get("COLOUR")}
    urllib.request.urlopen(
        urllib.request.Request(api + request_id + "/response", data=json.dumps(answer).encode())
    )
"""

CONFIG = """\
state_dir: ./state
aws: {region: eu-west-1, account_id: "123456789012"}
api: {listen: "127.0.0.1:0"}
functions:
  orders:
    invoker: python
    handler: latest.py:handler
    versions:
      "1": {handler: one.py:handler}
      "2": {handler: two.py:handler, memory_size: 512}
    aliases:
      live: {version: "1", description: what customers get}
      canary: {version: "1", routing: {"2": 0.5}}
  shell:
    invoker: runtime
    runtime: provided.al2023
    code: ./shell
    environment: {COLOUR: red}
    versions:
      "1": {environment: {COLOUR: blue}}
    aliases:
      blue: {version: "1"}
"""

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:"


def write_project(root: Path, config: str = CONFIG) -> None:
    for name, code in (("latest", "latest"), ("one", "one"), ("two", "two")):
        (root / f"{name}.py").write_text(HANDLER.format(code=code))
    (root / "shell").mkdir(exist_ok=True)
    (root / "shell" / "bootstrap").write_text(BOOTSTRAP)
    (root / "shell" / "bootstrap").chmod(0o755)
    (root / "bridge.yaml").write_text(config)


def start(root: Path) -> tuple[DaemonProcess, Any]:
    daemon = DaemonProcess(root / "bridge.yaml", root).start()
    [listening] = daemon.wait_for_log("api.listening")
    port = listening["address"].rpartition(":")[2]
    lam = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="eu-west-1",
        aws_access_key_id="AKIDANY",
        aws_secret_access_key="anything",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=20),
    )
    return daemon, lam


@pytest.fixture(scope="module")
def lam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("versions")
    write_project(root)
    daemon, client = start(root)
    yield client
    daemon.kill()


def invoke(lam: Any, name: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    response = lam.invoke(FunctionName=name, Payload=b"{}", **kwargs)
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    return response["ExecutedVersion"], json.loads(response["Payload"].read())


def test_a_qualifier_runs_that_version(lam: Any) -> None:
    """`:1`, `?Qualifier=2`, an alias and $LATEST run their own code and settings; the
    handler's context names the version and the ARN as it was invoked."""
    assert invoke(lam, "orders") == (
        "$LATEST",
        {"code": "latest", "version": "$LATEST", "arn": f"{ARN}orders", "memory": "128"},
    )
    assert invoke(lam, "orders:1") == (
        "1",
        {"code": "one", "version": "1", "arn": f"{ARN}orders:1", "memory": "128"},
    )
    assert invoke(lam, "orders", Qualifier="2") == (
        "2",
        {"code": "two", "version": "2", "arn": f"{ARN}orders:2", "memory": "512"},
    )
    assert invoke(lam, f"{ARN}orders:live") == (
        "1",
        {"code": "one", "version": "1", "arn": f"{ARN}orders:live", "memory": "128"},
    )
    executed, answer = invoke(lam, "orders:$LATEST")
    assert (executed, answer["code"], answer["arn"]) == (
        "$LATEST",
        "latest",
        f"{ARN}orders:$LATEST",
    )


def test_a_runtime_version_runs_with_its_own_environment(lam: Any) -> None:
    """A `runtime` function's version runs in environments of its own, which Lambda's
    variables tell their version (AWS_LAMBDA_FUNCTION_VERSION)."""
    assert invoke(lam, "shell") == (
        "$LATEST",
        {"version": "$LATEST", "arn": f"{ARN}shell", "colour": "red"},
    )
    assert invoke(lam, "shell:blue") == (
        "1",
        {"version": "1", "arn": f"{ARN}shell:blue", "colour": "blue"},
    )


def test_a_weighted_alias_splits_invocations(lam: Any) -> None:
    """An alias routing {"2": 0.5} runs version 2 for about half of 200 invocations and
    version 1 for the rest (a binomial share far outside 0.3..0.7 is all but impossible)."""
    with ThreadPoolExecutor(8) as pool:
        ran = list(pool.map(lambda _: invoke(lam, "orders:canary"), range(200)))
    versions = Counter(executed for executed, _ in ran)
    assert set(versions) == {"1", "2"}
    assert 60 <= versions["2"] <= 140, versions
    # Each invocation ran the code of the version it names.
    assert all(answer["code"] == {"1": "one", "2": "two"}[v] for v, answer in ran)


def test_unknown_qualifiers_are_not_found(lam: Any) -> None:
    """A version or alias the function does not have: 404 ResourceNotFoundException."""
    for name, extra in [("orders:3", {}), ("orders", {"Qualifier": "stale"})]:
        with pytest.raises(ClientError) as raised:
            lam.invoke(FunctionName=name, Payload=b"{}", **extra)
        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert error["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName="orders", Name="stale")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="orders", Qualifier="9")


def test_versions_are_listed_in_pages(lam: Any) -> None:
    """ListVersionsByFunction: $LATEST, then 1 and 2, each with its qualified ARN and own
    settings; a page of two ends with the marker of the third."""
    first = lam.list_versions_by_function(FunctionName="orders", MaxItems=2)
    assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1"]
    assert [v["FunctionArn"] for v in first["Versions"]] == [
        f"{ARN}orders:$LATEST",
        f"{ARN}orders:1",
    ]
    rest = lam.list_versions_by_function(FunctionName="orders", Marker=first["NextMarker"])
    assert [(v["Version"], v["Handler"], v["MemorySize"]) for v in rest["Versions"]] == [
        ("2", "two.py:handler", 512)
    ]
    assert "NextMarker" not in rest
    every = lam.get_paginator("list_versions_by_function").paginate(FunctionName="orders")
    assert [v["Version"] for page in every for v in page["Versions"]] == ["$LATEST", "1", "2"]


def test_list_functions_with_all_versions(lam: Any) -> None:
    """ListFunctions lists functions; with FunctionVersion=ALL each one's versions follow
    it, and pages may end between a function and its versions."""
    plain = lam.list_functions()["Functions"]
    assert [(f["FunctionName"], f["Version"]) for f in plain] == [
        ("orders", "$LATEST"),
        ("shell", "$LATEST"),
    ]
    pages = lam.get_paginator("list_functions").paginate(
        FunctionVersion="ALL", PaginationConfig={"PageSize": 2}
    )
    listed = [f["FunctionArn"] for page in pages for f in page["Functions"]]
    assert listed == [
        f"{ARN}orders",
        f"{ARN}orders:1",
        f"{ARN}orders:2",
        f"{ARN}shell",
        f"{ARN}shell:1",
    ]


def test_aliases_are_listed_and_got(lam: Any) -> None:
    """ListAliases (all, or those of one version) and GetAlias answer AWS's
    AliasConfiguration, RoutingConfig only where the alias has routing."""
    listed = lam.list_aliases(FunctionName="orders")["Aliases"]
    assert [alias["Name"] for alias in listed] == ["canary", "live"]
    canary, live = listed
    assert canary["AliasArn"] == f"{ARN}orders:canary"
    assert canary["FunctionVersion"] == "1"
    assert canary["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    assert "RoutingConfig" not in live and live["Description"] == "what customers get"
    got = lam.get_alias(FunctionName="orders", Name="live")
    got.pop("ResponseMetadata")
    assert got == live and got["RevisionId"] != canary["RevisionId"]
    paged = lam.list_aliases(FunctionName="orders", MaxItems=1)
    assert [a["Name"] for a in paged["Aliases"]] == ["canary"] and paged["NextMarker"] == "live"
    assert lam.list_aliases(FunctionName="orders", FunctionVersion="2")["Aliases"] == []
    assert (
        lam.list_aliases(FunctionName="shell", FunctionVersion="1")["Aliases"][0]["Name"] == "blue"
    )


def test_get_function_with_a_qualifier_describes_that_version(lam: Any) -> None:
    """GetFunction and GetFunctionConfiguration with a qualifier: that version's settings
    (an alias: its version's), `Version` and the ARN qualified as asked."""
    two = lam.get_function(FunctionName="orders", Qualifier="2")["Configuration"]
    assert (two["Version"], two["FunctionArn"], two["Handler"], two["MemorySize"]) == (
        "2",
        f"{ARN}orders:2",
        "two.py:handler",
        512,
    )
    live = lam.get_function_configuration(FunctionName="orders:live")
    assert (live["Version"], live["FunctionArn"], live["Handler"]) == (
        "1",
        f"{ARN}orders:live",
        "one.py:handler",
    )
    blue = lam.get_function_configuration(FunctionName="shell", Qualifier="blue")
    assert blue["Environment"] == {"Variables": {"COLOUR": "blue"}}
    plain = lam.get_function_configuration(FunctionName="orders")
    assert (plain["Version"], plain["FunctionArn"]) == ("$LATEST", f"{ARN}orders")


def test_a_reload_replaces_versions_and_aliases(tmp_path: Path) -> None:
    """A reload that changes a function rebuilds its versions too: an alias moved to
    another version, and a version that is gone is not found."""
    write_project(tmp_path)
    daemon, lam = start(tmp_path)
    try:
        assert invoke(lam, "orders:live")[0] == "1"
        changed = CONFIG.replace('live: {version: "1"', 'live: {version: "2"').replace(
            '      "1": {handler: one.py:handler}\n', ""
        )
        changed = changed.replace(
            'canary: {version: "1", routing: {"2": 0.5}}', "canary: {version: $LATEST}"
        )
        (tmp_path / "bridge.yaml").write_text(changed)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("reload.applied")
        assert invoke(lam, "orders:live") == (
            "2",
            {"code": "two", "version": "2", "arn": f"{ARN}orders:live", "memory": "512"},
        )
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.invoke(FunctionName="orders:1", Payload=b"{}")
    finally:
        daemon.kill()

"""HTTP triggers of a running daemon, driven with curl: API Gateway 2.0 and 1.0 events
(checked against aws-lambda-powertools' models), JSON and binary bodies both ways, path
parameters, query strings, cookies, multi-value headers, the 2.0 rule for plain JSON
answers, a function error (502), unknown routes and methods (404), the Host check, and
routes following a reload."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
)

from tests.support import DaemonProcess

pytestmark = pytest.mark.e2e

HANDLERS = """\
import base64, json

def echo(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "cookies": ["session=abc; Path=/", "theme=dark"], "body": json.dumps(event)}

def image(event, context):
    data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    return {"statusCode": 201, "headers": {"content-type": "image/png",
            "x-was-base64": str(event["isBase64Encoded"]).lower()},
            "body": base64.b64encode(data[::-1]).decode(), "isBase64Encoded": True}

def plain(event, context):
    return {"order": event["pathParameters"]["id"], "items": [1, 2]}

def fail(event, context):
    raise RuntimeError("boom")

def echo_v1(event, context):
    return {"statusCode": 200, "multiValueHeaders": {"X-Seen": ["one", "two"]},
            "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}
"""

ROUTES = """\
http_triggers:
  - {path: '/orders/{id}', methods: [GET, POST], function: echo}
  - {path: '/images/{name}', methods: [PUT], function: image}
  - {path: '/plain/{id}', function: plain}
  - {path: /fail, function: fail}
  - {path: '/v1/{proxy+}', function: echo_v1, format: "1.0"}
"""

CONFIG = """\
state_dir: ./state
aws: {{region: eu-west-1, account_id: "123456789012"}}
api: {{listen: "127.0.0.1:0"}}
functions:
  echo: {{invoker: python, handler: handlers.py:echo}}
  image: {{invoker: python, handler: handlers.py:image}}
  plain: {{invoker: python, handler: handlers.py:plain}}
  fail: {{invoker: python, handler: handlers.py:fail}}
  echo_v1: {{invoker: python, handler: handlers.py:echo_v1}}
{routes}"""

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> object:
        return json.loads(self.body)


def curl(url: str, *args: str, method: str = "GET", data: bytes | None = None, root: Path) -> Reply:
    """One request with curl (urllib where curl is not installed)."""
    binary = shutil.which("curl")
    if binary is None:
        return _urllib(url, args, method, data)
    command = [binary, "-sS", "-X", method, "-D", "-", "-o", str(root / "body"), *args]
    if data is not None:
        (root / "upload").write_bytes(data)
        command += ["--data-binary", f"@{root / 'upload'}"]
    head = subprocess.run([*command, url], capture_output=True, text=True, timeout=30, check=True)
    # The last header block: a `100 Continue` may come before the answer.
    block = head.stdout.replace("\r", "").strip().split("\n\n")[-1]
    lines = block.split("\n")
    status = int(lines[0].split()[1])
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    return Reply(status, headers, (root / "body").read_bytes())  # type: ignore[arg-type]


def _urllib(url: str, args: tuple[str, ...], method: str, data: bytes | None) -> Reply:
    request = urllib.request.Request(url, data=data, method=method)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        assert flag == "-H"
        name, _, content = value.partition(": ")
        request.add_header(name, content)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, list(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, list(exc.headers.items()), exc.read())


@dataclass
class Trigger:
    url: str
    root: Path
    daemon: DaemonProcess

    def __call__(self, path: str, *args: str, **kwargs: object) -> Reply:
        return curl(self.url + path, *args, root=self.root, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trigger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trigger]:
    root = tmp_path_factory.mktemp("triggers")
    (root / "handlers.py").write_text(HANDLERS)
    (root / "bridge.yaml").write_text(CONFIG.format(routes=ROUTES))
    daemon = DaemonProcess(root / "bridge.yaml", root).start()
    [listening] = daemon.wait_for_log("api.listening")
    yield Trigger(f"http://{listening['address']}", root, daemon)
    daemon.kill()


def test_a_json_request_becomes_a_2_0_event_and_the_response_object_the_answer(
    trigger: Trigger,
) -> None:
    reply = trigger(
        "/orders/42?expand=items&expand=total&q=a%20b",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Cookie: visitor=1; cart=7",
        "-H",
        "X-Trace: one",
        "-H",
        "X-Trace: two",
        method="POST",
        data=b'{"qty": 3}',
    )
    assert reply.status == 200
    assert reply.header("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
    assert reply.header("apigw-requestid")
    event = reply.json()
    parsed = APIGatewayProxyEventV2Model.model_validate(event)
    assert parsed.routeKey == "POST /orders/{id}"
    assert parsed.rawPath == "/orders/42"
    assert parsed.rawQueryString == "expand=items&expand=total&q=a%20b"
    assert parsed.queryStringParameters == {"expand": "items,total", "q": "a b"}
    assert parsed.pathParameters == {"id": "42"}
    assert parsed.cookies == ["visitor=1", "cart=7"]
    assert parsed.headers["x-trace"] == "one,two"
    assert parsed.body == '{"qty": 3}' and parsed.isBase64Encoded is False
    context = parsed.requestContext
    assert context.accountId == "123456789012" and context.stage == "$default"
    assert context.http.method == "POST" and context.http.userAgent.startswith("curl")
    assert context.requestId == reply.header("apigw-requestid")[0]


def test_a_binary_body_round_trips_base64(trigger: Trigger) -> None:
    reply = trigger("/images/logo.png", "-H", "Content-Type: image/png", method="PUT", data=PNG)
    assert reply.status == 201
    assert reply.header("x-was-base64") == ["true"]
    assert reply.header("Content-Type") == ["image/png"]
    assert reply.body == PNG[::-1]


def test_a_plain_json_answer_is_a_200_json_body(trigger: Trigger) -> None:
    reply = trigger("/plain/7")
    assert reply.status == 200
    assert reply.header("Content-Type") == ["application/json"]
    assert reply.json() == {"order": "7", "items": [1, 2]}


def test_a_function_error_is_a_502(trigger: Trigger) -> None:
    reply = trigger("/fail", method="POST", data=b"{}")
    assert reply.status == 502
    assert reply.json() == {"message": "Internal Server Error"}
    trigger.daemon.wait_for_log("http_trigger.function_error", function="fail")


def test_unknown_paths_and_methods_are_404(trigger: Trigger) -> None:
    for method, path in [("GET", "/nowhere"), ("DELETE", "/orders/42"), ("GET", "/images/a")]:
        reply = trigger(path, method=method)
        assert (reply.status, reply.json()) == (404, {"message": "Not Found"}), (method, path)


def test_a_1_0_route_has_multi_value_headers_and_query_parameters(trigger: Trigger) -> None:
    reply = trigger(
        "/v1/files/a%2Fb/c.txt?tag=x&tag=y",
        "-H",
        "X-Multi: 1",
        "-H",
        "X-Multi: 2",
        method="DELETE",
    )
    assert reply.status == 200
    assert reply.header("X-Seen") == ["one", "two"]
    assert reply.header("x-amzn-RequestId")
    event = reply.json()
    parsed = APIGatewayProxyEventModel.model_validate(event)
    assert parsed.resource == "/v1/{proxy+}"
    assert parsed.httpMethod == "DELETE"
    assert parsed.pathParameters == {"proxy": "files/a/b/c.txt"}
    assert parsed.multiValueHeaders["X-Multi"] == ["1", "2"]
    assert parsed.headers["X-Multi"] == "2"
    assert parsed.multiValueQueryStringParameters == {"tag": ["x", "y"]}
    assert parsed.queryStringParameters == {"tag": "y"}
    assert parsed.requestContext.resourcePath == "/v1/{proxy+}"
    assert event["body"] is None  # type: ignore[index]


def test_the_host_check_and_lambdas_api_still_apply(trigger: Trigger) -> None:
    """A page on another site cannot reach a loopback trigger through DNS rebinding, and
    Lambda's own paths stay Lambda's (an unsigned request to them is refused)."""
    reply = trigger("/plain/1", "-H", "Host: attacker.example")
    assert reply.status == 421
    reply = trigger("/2015-03-31/functions/")
    assert reply.status == 403
    assert reply.header("x-amzn-ErrorType") == ["InvalidSignatureException"]


def test_routes_follow_a_reload(trigger: Trigger) -> None:
    config = CONFIG.format(
        routes=ROUTES + "  - {path: '/added/{id}', methods: [GET], function: plain}\n"
    )
    (trigger.root / "bridge.yaml").write_text(config.replace("'/plain/{id}'", "'/moved/{id}'"))
    trigger.daemon.signal(signal.SIGHUP)
    trigger.daemon.wait_for_log("reload.applied")
    assert trigger("/moved/3").json() == {"order": "3", "items": [1, 2]}
    assert trigger("/plain/3").status == 404
    assert trigger("/added/4").json() == {"order": "4", "items": [1, 2]}


def test_a_request_over_6_mb_is_413(trigger: Trigger) -> None:
    reply = trigger(
        "/orders/1",
        "-H",
        "Content-Type: application/octet-stream",
        method="POST",
        data=b"\0" * (6 * 1024 * 1024 + 1),
    )
    assert reply.status == 413
    assert reply.json() == {"message": "Request Entity Too Large"}

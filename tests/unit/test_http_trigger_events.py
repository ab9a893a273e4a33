"""HTTP trigger events (bridge.frontdoor.http.events) against aws-lambda-powertools' parser
models of API Gateway's events, and field by field against AWS's rules: lower-cased and
comma-joined headers, cookies, query strings, path parameters and base64 bodies."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
)

from bridge.config.http_routes import RouteTable
from bridge.config.http_triggers import HttpTriggerConfig
from bridge.frontdoor.http.events import Api, HttpRequest, event_v1, event_v2, request_time

API = Api("123456789012", "a1b2c3d4e5")
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


def request(
    method: str = "GET",
    path: str = "/orders/42",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> HttpRequest:
    return HttpRequest(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=[("Host", "localhost:9001"), ("User-Agent", "curl/8.0"), *(headers or [])],
        body=body,
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
        received=1583348638.390,
    )


def build(version: str, received: HttpRequest, path: str = "/orders/{id}", **route: Any) -> Any:
    table = RouteTable([HttpTriggerConfig(path=path, function="f", format=version, **route)])
    match = table.find(received.method, received.raw_path)
    assert match is not None
    builder = event_v2 if version == "2.0" else event_v1
    return builder(received, match, API, "req-1")


def test_a_2_0_event_is_what_powertools_parses_as_an_http_api_event() -> None:
    received = request(
        "POST",
        query="a=1&a=2&b=x%20y",
        headers=[
            ("X-Trace", "one"),
            ("x-trace", "two"),
            ("Cookie", "s=1; t=2"),
            ("Content-Type", "application/json"),
        ],
        body=b'{"qty": 3}',
    )
    event = build("2.0", received, methods=["GET", "POST"])
    parsed = APIGatewayProxyEventV2Model.model_validate(event)
    assert parsed.version == "2.0"
    assert event["routeKey"] == "POST /orders/{id}" == event["requestContext"]["routeKey"]
    assert event["rawPath"] == "/orders/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-trace"] == "one,two"
    assert all(name == name.lower() for name in event["headers"])
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["pathParameters"] == {"id": "42"}
    assert event["body"] == '{"qty": 3}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "123456789012" and context["apiId"] == "a1b2c3d4e5"
    assert context["stage"] == "$default"
    assert context["time"] == "04/Mar/2020:19:03:58 +0000"
    assert context["timeEpoch"] == 1583348638390
    assert context["http"] == {
        "method": "POST",
        "path": "/orders/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8.0",
    }
    assert context["domainName"] == "localhost:9001" and context["domainPrefix"] == "localhost"
    assert parsed.requestContext.requestId == "req-1"


def test_a_2_0_event_leaves_out_what_the_request_has_not() -> None:
    event = build("2.0", request(path="/health"), path="/health")
    APIGatewayProxyEventV2Model.model_validate(event)
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in event
    assert event["routeKey"] == "ANY /health"
    assert event["isBase64Encoded"] is False


def test_a_1_0_event_is_what_powertools_parses_as_a_rest_api_event() -> None:
    received = request(
        "PUT",
        path="/files/a/b%2Fc.txt",
        query="tag=x&tag=y&one=1",
        headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Content-Type", "text/plain")],
        body="héllo".encode(),
    )
    event = build("1.0", received, path="/files/{proxy+}")
    parsed = APIGatewayProxyEventModel.model_validate(event)
    assert parsed.resource == "/files/{proxy+}"
    assert event["path"] == "/files/a/b/c.txt"
    assert event["httpMethod"] == "PUT"
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["queryStringParameters"] == {"tag": "y", "one": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["x", "y"], "one": ["1"]}
    assert event["body"] == "héllo" and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["resourcePath"] == "/files/{proxy+}"
    assert context["httpMethod"] == "PUT" and context["stage"] == "$default"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "curl/8.0"
    assert context["requestTimeEpoch"] == 1583348638390
    assert context["requestTime"] == request_time(1583348638.39)


def test_a_1_0_event_without_query_parameters_or_body_has_nulls() -> None:
    event = build("1.0", request(path="/health"), path="/health")
    APIGatewayProxyEventModel.model_validate(event)
    for null in (
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "body",
    ):
        assert event[null] is None


@pytest.mark.parametrize("version", ["2.0", "1.0"])
@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("image/png", PNG, True),
        ("application/octet-stream", b"plain ascii", True),
        ("application/json", b'{"a": 1}', False),
        ("text/plain; charset=utf-8", "ünïcode".encode(), False),
        ("text/plain", b"\xff\xfe not utf-8", True),
        ("application/vnd.api+json", b"{}", False),
    ],
)
def test_binary_bodies_are_base64(
    version: str, content_type: str, body: bytes, encoded: bool
) -> None:
    event = build(
        "2.0" if version == "2.0" else "1.0",
        request("POST", headers=[("Content-Type", content_type)], body=body),
    )
    assert event["isBase64Encoded"] is encoded
    sent = base64.b64decode(event["body"]) if encoded else event["body"].encode()
    assert sent == body


def test_request_time_is_english_whatever_the_locale() -> None:
    assert request_time(0) == "01/Jan/1970:00:00:00 +0000"
    assert request_time(1583348638.9) == "04/Mar/2020:19:03:58 +0000"

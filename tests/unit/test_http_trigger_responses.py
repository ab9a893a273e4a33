"""The function's answer as an HTTP response (bridge.frontdoor.http.responses): API
Gateway's 2.0 rules (a response object, or any other JSON as a 200 JSON body) and its
1.0 rules (a strict proxy response, else 502)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridge.frontdoor.http.responses import MalformedAnswer, answer, answer_v1, answer_v2

PNG = b"\x89PNG\r\n\x1a\n\x00\x01\x02\xff"


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_2_0_response_object_sets_status_headers_cookies_and_body() -> None:
    reply = answer_v2(
        encoded(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/plain", "X-Count": 3, "Content-Length": "99"},
                "cookies": ["a=1; Path=/", "b=2"],
                "body": "created",
            }
        )
    )
    assert reply.status == 201
    assert reply.body == b"created"
    assert ("Content-Type", "text/plain") in reply.headers
    assert ("X-Count", "3") in reply.headers
    assert [v for k, v in reply.headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2"]
    # The listener sets the length of what it sends.
    assert not any(name.lower() == "content-length" for name, _ in reply.headers)


def test_a_2_0_base64_body_is_sent_as_bytes() -> None:
    body = base64.b64encode(PNG).decode()
    reply = answer_v2(
        encoded(
            {
                "statusCode": 200,
                "body": body,
                "isBase64Encoded": True,
                "headers": {"content-type": "image/png"},
            }
        )
    )
    assert reply.body == PNG
    assert ("content-type", "image/png") in reply.headers


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"order": 7}, b'{"order": 7}'),
        ([1, 2], b"[1, 2]"),
        (42, b"42"),
        ("Hello from Lambda!", b"Hello from Lambda!"),
        ({"body": "no statusCode"}, b'{"body": "no statusCode"}'),
        (None, b"null"),
    ],
)
def test_any_other_2_0_answer_is_a_200_json_body(result: Any, body: bytes) -> None:
    reply = answer_v2(encoded(result))
    assert reply.status == 200
    assert reply.body == body
    assert reply.headers == [("Content-Type", "application/json")]


def test_a_1_0_response_merges_headers_and_multi_value_headers() -> None:
    reply = answer_v1(
        encoded(
            {
                "statusCode": 200,
                "headers": {"X-One": "a", "X-Both": "single"},
                "multiValueHeaders": {"X-Both": ["m1", "m2"], "Set-Cookie": ["c=1", "d=2"]},
                "body": "ok",
                "isBase64Encoded": False,
            }
        )
    )
    assert reply.status == 200 and reply.body == b"ok"
    assert ("X-One", "a") in reply.headers
    assert [v for k, v in reply.headers if k == "X-Both"] == ["m1", "m2"]
    assert [v for k, v in reply.headers if k == "Set-Cookie"] == ["c=1", "d=2"]


@pytest.mark.parametrize(
    "result",
    [
        {"order": 7},  # no statusCode
        "just text",
        [1],
        {"statusCode": 200, "cookies": ["a=1"]},  # a 2.0 field
        {"statusCode": "abc"},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "multiValueHeaders": {"x": "not a list"}},
        {"statusCode": 200, "body": {"an": "object"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_a_malformed_1_0_answer_is_refused(result: Any) -> None:
    with pytest.raises(MalformedAnswer):
        answer("1.0", encoded(result))


@pytest.mark.parametrize(
    "payload",
    [b"not json", encoded({"statusCode": 700}), encoded({"statusCode": 200, "cookies": "a=1"})],
)
def test_a_malformed_2_0_answer_is_refused(payload: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        answer("2.0", payload)

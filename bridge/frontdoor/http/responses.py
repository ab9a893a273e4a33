"""The function's answer as the HTTP response, by API Gateway's rules for each payload
format, and the answers API Gateway gives when there is no usable one.

2.0 (HTTP API): an object with `statusCode` is a response: `statusCode`, `headers`,
`cookies` (one `Set-Cookie` each), `body`, `isBase64Encoded`. Any other JSON (a string,
a number, an object without `statusCode`) is a 200 `application/json` response whose
body is that JSON (a string's text for a string).
1.0 (REST API): the answer must be an object of `statusCode`, `headers`,
`multiValueHeaders`, `body`, `isBase64Encoded` only, else 502 `Internal server error`;
a name in both `multiValueHeaders` and `headers` takes the multi-value list.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from bridge.codec import JSONDecodeError, dumps, loads

_V1_FIELDS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
# Set by the listener itself from the body it sends.
_NOT_PASSED_ON = frozenset({"content-length", "transfer-encoding", "connection"})
DEFAULT_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class MalformedAnswer(ValueError):
    """The function's answer is not a response of the route's payload format."""


def message(status: int, text: str) -> HttpAnswer:
    """API Gateway's own answers: `{"message": "..."}`."""
    return HttpAnswer(status, dumps({"message": text}), [("Content-Type", DEFAULT_CONTENT_TYPE)])


NOT_FOUND = message(404, "Not Found")
FUNCTION_ERROR = message(502, "Internal Server Error")
MALFORMED_V2 = message(500, "Internal Server Error")
MALFORMED_V1 = message(502, "Internal server error")
THROTTLED = message(429, "Too Many Requests")
TOO_LARGE = message(413, "Request Entity Too Large")
UNAVAILABLE = message(503, "Service Unavailable")


def _scalar(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise MalformedAnswer(f"{what} must be a string, not {type(value).__name__}")


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedAnswer("statusCode must be a number")
    try:
        status = int(value)
    except ValueError:
        raise MalformedAnswer("statusCode must be a number") from None
    if not 100 <= status <= 599:
        raise MalformedAnswer(f"statusCode {status} is not an HTTP status")
    return status


def _body(value: Any, encoded: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedAnswer("body must be a string")
    if encoded is True:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise MalformedAnswer("body is not base64 although isBase64Encoded is true") from None
    if encoded not in (None, False):
        raise MalformedAnswer("isBase64Encoded must be true or false")
    return value.encode("utf-8")


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise MalformedAnswer("headers must be an object")
    return [(str(name), _scalar(item, f"header {name}")) for name, item in value.items()]


def _multi_headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        raise MalformedAnswer("multiValueHeaders must be an object of lists")
    return [
        (str(name), _scalar(item, f"header {name}"))
        for name, items in value.items()
        for item in items
    ]


def _finish(status: int, headers: list[tuple[str, str]], body: bytes) -> HttpAnswer:
    kept = [(name, value) for name, value in headers if name.lower() not in _NOT_PASSED_ON]
    if not any(name.lower() == "content-type" for name, _ in kept):
        kept.append(("Content-Type", DEFAULT_CONTENT_TYPE))
    return HttpAnswer(status, body, kept)


def answer_v2(payload: bytes) -> HttpAnswer:
    """The HTTP API (2.0) response for a function's successful answer."""
    try:
        result = loads(payload)
    except JSONDecodeError:
        raise MalformedAnswer("the answer is not JSON") from None
    if not isinstance(result, dict) or "statusCode" not in result:
        body = result.encode("utf-8") if isinstance(result, str) else payload
        return HttpAnswer(200, body, [("Content-Type", DEFAULT_CONTENT_TYPE)])
    headers = _headers(result.get("headers"))
    cookies = result.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list):
            raise MalformedAnswer("cookies must be a list of strings")
        headers += [("Set-Cookie", _scalar(cookie, "a cookie")) for cookie in cookies]
    status = _status(result["statusCode"])
    return _finish(status, headers, _body(result.get("body"), result.get("isBase64Encoded")))


def answer_v1(payload: bytes) -> HttpAnswer:
    """The REST API (1.0) response for a function's successful answer."""
    try:
        result = loads(payload)
    except JSONDecodeError:
        raise MalformedAnswer("the answer is not JSON") from None
    if not isinstance(result, dict):
        raise MalformedAnswer("the answer must be an object with a statusCode")
    unknown = set(result) - _V1_FIELDS
    if unknown:
        raise MalformedAnswer(f"the answer has fields a proxy response has not: {sorted(unknown)}")
    if "statusCode" not in result:
        raise MalformedAnswer("the answer has no statusCode")
    multi = _multi_headers(result.get("multiValueHeaders"))
    multi_names = {name.lower() for name, _ in multi}
    headers = _headers(result.get("headers"))
    single = [pair for pair in headers if pair[0].lower() not in multi_names]
    status = _status(result["statusCode"])
    body = _body(result.get("body"), result.get("isBase64Encoded"))
    return _finish(status, single + multi, body)


def answer(format_version: str, payload: bytes) -> HttpAnswer:
    """The HTTP response; MalformedAnswer if the function's answer cannot be one."""
    return answer_v2(payload) if format_version == "2.0" else answer_v1(payload)


def malformed(format_version: str) -> HttpAnswer:
    return MALFORMED_V2 if format_version == "2.0" else MALFORMED_V1

"""The event an HTTP trigger hands its function: API Gateway's HTTP API payload format 2.0
or its REST API (payload format 1.0) Lambda proxy event, built from one request.

2.0: header names lower-cased and repeated headers joined with commas; `Cookie` headers
leave `headers` for `cookies` (one entry per cookie); repeated query parameters joined with
commas in `queryStringParameters`; fields with nothing to say (`cookies`,
`queryStringParameters`, `pathParameters`, `body`) left out.
1.0: `headers` and `queryStringParameters` keep the last value of a repeated name,
`multiValueHeaders` and `multiValueQueryStringParameters` every value; absent values are
null. Header names keep the case they were sent in.
Both: a body whose media type is not text, or which is not UTF-8, is base64 with
`isBase64Encoded: true`. `stage` is `$default`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from bridge.config.http_routes import Match

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/x-www-form-urlencoded",
        "application/graphql",
    }
)
STAGE = "$default"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as received: what the event is built from."""

    method: str
    raw_path: str  # percent-encoded, without the query
    raw_query: str  # without the `?`
    headers: Sequence[tuple[str, str]]  # in the order and case sent
    body: bytes
    source_ip: str
    protocol: str  # HTTP/1.1
    received: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Api:
    """Who serves the request: the account and the API's id, as requestContext names them."""

    account_id: str
    api_id: str


def request_time(epoch: float) -> str:
    """API Gateway's request time: `12/Mar/2020:19:03:58 +0000`, in English whatever the
    locale."""
    moment = time.gmtime(epoch)
    return (
        f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000"
    )


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media_type = content_type.partition(";")[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


def encode_body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """The event's `body` and `isBase64Encoded`."""
    if not body:
        return None, False
    if is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _header(request: HttpRequest, name: str) -> str | None:
    values = [value for key, value in request.headers if key.lower() == name]
    return values[-1] if values else None


def _domain(request: HttpRequest) -> tuple[str, str]:
    host = _header(request, "host") or "localhost"
    name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
    return host, name.partition(".")[0] or name


def _decoded_path(request: HttpRequest) -> str:
    return unquote(request.raw_path) or "/"


def event_v2(request: HttpRequest, match: Match, api: Api, request_id: str) -> dict[str, Any]:
    """API Gateway HTTP API payload format 2.0."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        elif key in headers:
            headers[key] += "," + value
        else:
            headers[key] = value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    domain, prefix = _domain(request)
    route_key = match.route.route_key(request.method)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path or "/",
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain,
        "domainPrefix": prefix,
        "http": {
            "method": request.method,
            "path": _decoded_path(request),
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": STAGE,
        "time": request_time(request.received),
        "timeEpoch": int(request.received * 1000),
    }
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    body, encoded = encode_body(request.body, headers.get("content-type"))
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def event_v1(request: HttpRequest, match: Match, api: Api, request_id: str) -> dict[str, Any]:
    """API Gateway REST API Lambda proxy event (payload format 1.0)."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = value
        multi_query.setdefault(name, []).append(value)
    domain, prefix = _domain(request)
    path = _decoded_path(request)
    user_agent = _header(request, "user-agent")
    body, encoded = encode_body(request.body, _header(request, "content-type"))
    return {
        "version": "1.0",
        "resource": match.route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": api.account_id,
            "apiId": api.api_id,
            "domainName": domain,
            "domainPrefix": prefix,
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": request.source_ip,
                "user": None,
                "userAgent": user_agent,
                "userArn": None,
            },
            "path": path,
            "protocol": request.protocol,
            "requestId": request_id,
            "requestTime": request_time(request.received),
            "requestTimeEpoch": int(request.received * 1000),
            "resourceId": match.route.route_key(request.method),
            "resourcePath": match.route.path,
            "stage": STAGE,
        },
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": encoded,
    }

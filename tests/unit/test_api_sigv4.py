"""SigV4 verification of the Lambda API (bridge.frontdoor.sigv4) against requests signed
by botocore's public SigV4Auth, as every SDK signs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict, CIMultiDictProxy

from bridge.frontdoor.errors import ApiError
from bridge.frontdoor.sigv4 import Request, verify

KEY_ID = "AKIDLAMBDABRIDGE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:echo"
URL = f"http://10.0.0.5:9001/2015-03-31/functions/{quote(ARN, safe='')}/invocations"


def signed(
    body: bytes = b'{"a": 1}', secret: str = SECRET, key_id: str = KEY_ID, url: str = URL
) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail"},
    )
    SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(request)
    return request


def received(request: AWSRequest, body: bytes | None = None) -> Request:
    """The request as the server sees it: the path and query as sent, a Host header."""
    import hashlib

    parts = urlsplit(request.url)
    headers = CIMultiDict(request.headers.items())
    headers.setdefault("Host", parts.netloc)
    sent = request.body if body is None else body
    data = sent.encode() if isinstance(sent, str) else (sent or b"")
    return Request(
        "POST", parts.path, parts.query, CIMultiDictProxy(headers), hashlib.sha256(data).hexdigest()
    )


def refused(request: Request, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as raised:
        verify(request, KEY_ID, SECRET, **kwargs)  # type: ignore[arg-type]
    assert raised.value.status == 403
    return raised.value


def test_a_request_botocore_signed_verifies() -> None:
    verify(received(signed()), KEY_ID, SECRET)
    verify(received(signed(url=URL + "?Qualifier=%24LATEST")), KEY_ID, SECRET)
    verify(received(signed(body=b"")), KEY_ID, SECRET)


def test_a_wrong_secret_is_refused() -> None:
    error = refused(received(signed(secret="not-the-secret")))
    assert error.code == "InvalidSignatureException"
    assert SECRET not in error.message and "not-the-secret" not in error.message


def test_an_unknown_access_key_is_not_recognized() -> None:
    assert refused(received(signed(key_id="AKIDSOMEONEELSE"))).code == (
        "UnrecognizedClientException"
    )


def test_an_unsigned_request_is_refused() -> None:
    request = received(signed())
    headers = CIMultiDict(request.headers)
    del headers["Authorization"]
    unsigned = Request(
        request.method, request.raw_path, request.raw_query, CIMultiDictProxy(headers), ""
    )
    assert refused(unsigned).code == "InvalidSignatureException"


def test_what_the_signature_covers_cannot_change() -> None:
    request = signed()
    assert refused(received(request, body=b'{"a": 2}')).code == "InvalidSignatureException"
    moved = received(request)
    other = Request(
        moved.method,
        moved.raw_path.replace("echo", "other"),
        moved.raw_query,
        moved.headers,
        moved.body_hash,
    )
    refused(other)
    headers = CIMultiDict(moved.headers)
    headers["X-Amz-Log-Type"] = "None"
    refused(
        Request(
            moved.method,
            moved.raw_path,
            moved.raw_query,
            CIMultiDictProxy(headers),
            moved.body_hash,
        )
    )


def test_an_old_signature_has_expired() -> None:
    later = datetime.now(UTC) + timedelta(minutes=20)
    error = refused(received(signed()), now=lambda: later)
    assert "Signature expired" in error.message

"""Signature Version 4 verification (and signing, for the CLI), by hand (hmac and
hashlib), of requests the SDKs sign with
`Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.

The canonical request is rebuilt from what arrived: the path as sent, encoded once more
(every service but S3 signs its URI encoded twice), the query's parameters decoded,
encoded strictly and sorted, the signed headers with their values trimmed, and the
SHA-256 of the body received (a body altered on the way, or an `X-Amz-Content-SHA256`
that does not describe it, fails). A signature more than 15 minutes from now is refused,
as AWS does. The secret never leaves this module's HMACs; messages name the access key
ID at most. Presigned URLs (the signature in the query) are not accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy

from bridge.frontdoor.errors import invalid_signature, unrecognized_client

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Signed:
    """What the Authorization header claims."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(header: str) -> Signed:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise invalid_signature(f"the Authorization header must use {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, value = item.strip().partition("=")
        if equals:
            parts[name] = value.strip()
    try:
        credential, signed_headers, signature = (
            parts["Credential"],
            parts["SignedHeaders"],
            parts["Signature"],
        )
    except KeyError as missing:
        raise invalid_signature(f"the Authorization header has no {missing.args[0]}") from None
    pieces = credential.split("/")
    if len(pieces) != 5 or pieces[4] != "aws4_request":
        raise invalid_signature(
            "the Credential must be access-key-id/date/region/service/aws4_request"
        )
    headers = signed_headers.split(";")
    if "host" not in headers:
        raise invalid_signature("the signed headers must include host")
    return Signed(pieces[0], pieces[1], pieces[2], pieces[3], headers, signature.lower())


def canonical_uri(raw_path: str) -> str:
    """The path as sent (already encoded once), normalized and encoded again."""
    normalized = posixpath.normpath(raw_path) if raw_path else "/"
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    if raw_path.endswith("/") and not normalized.endswith("/"):
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        name, _, value = item.partition("=")
        pairs.append((_strict(unquote(name)), _strict(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _strict(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_headers(
    headers: CIMultiDictProxy[str] | MultiDictProxy[str], names: list[str]
) -> str:
    lines = []
    for name in names:
        values = headers.getall(name, [])
        if not values:
            raise invalid_signature(f"the signed header {name} is not in the request")
        lines.append(f"{name}:{','.join(' '.join(value.split()) for value in values)}\n")
    return "".join(lines)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _request_time(headers: CIMultiDictProxy[str] | MultiDictProxy[str]) -> tuple[str, datetime]:
    stamp = headers.get("X-Amz-Date")
    if stamp is None:
        raise invalid_signature("the request has no X-Amz-Date header")
    try:
        when = datetime.strptime(stamp, _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise invalid_signature(f"X-Amz-Date must be of the form {_DATE_FORMAT}") from None
    return stamp, when


@dataclass(frozen=True)
class Request:
    """The parts of a received request the signature covers."""

    method: str
    raw_path: str
    raw_query: str
    headers: CIMultiDictProxy[str] | MultiDictProxy[str]
    # The SHA-256 of the body received, hex (hashed as it streamed in).
    body_hash: str


def verify(
    request: Request,
    access_key_id: str,
    secret: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Return if `request` is signed with this key pair; raise ApiError (403) otherwise."""
    header = request.headers.get("Authorization")
    if header is None:
        raise invalid_signature("the request is not signed: it has no Authorization header")
    signed = parse_authorization(header)
    if not hmac.compare_digest(signed.access_key_id.encode(), access_key_id.encode()):
        raise unrecognized_client()
    stamp, when = _request_time(request.headers)
    if abs(now() - when) > MAX_SKEW:
        raise invalid_signature(
            f"Signature expired: {stamp} is more than 15 minutes from the server's time"
        )
    if signed.date != stamp[:8]:
        raise invalid_signature("the Credential's date is not the X-Amz-Date's day")
    body_hash = request.body_hash
    claimed = request.headers.get("X-Amz-Content-SHA256")
    if claimed is not None and claimed.lower() != body_hash:
        raise invalid_signature("X-Amz-Content-SHA256 does not match the body received")
    expected = _signature(request, signed, stamp, secret)
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        raise invalid_signature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )


def _signature(request: Request, signed: Signed, stamp: str, secret: str) -> str:
    canonical = "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query),
            canonical_headers(request.headers, signed.signed_headers),
            ";".join(signed.signed_headers),
            request.body_hash,
        ]
    )
    to_sign = "\n".join(
        [ALGORITHM, stamp, signed.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(secret, signed.date, signed.region, signed.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    request: Request,
    access_key_id: str,
    secret: str,
    region: str,
    *,
    service: str = "lambda",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, str]:
    """The headers (X-Amz-Date, X-Amz-Content-SHA256, Authorization) that sign `request`,
    whose headers must already hold Host and every other header to be signed."""
    stamp = now().strftime(_DATE_FORMAT)
    headers = CIMultiDict(request.headers)
    headers["X-Amz-Date"] = stamp
    headers["X-Amz-Content-SHA256"] = request.body_hash
    names = sorted(name.lower() for name in headers)
    signed = Signed(access_key_id, stamp[:8], region, service, names, "")
    with_date = Request(
        request.method,
        request.raw_path,
        request.raw_query,
        CIMultiDictProxy(headers),
        request.body_hash,
    )
    signature = _signature(with_date, signed, stamp, secret)
    credential = f"{access_key_id}/{signed.scope}"
    return {
        "X-Amz-Date": stamp,
        "X-Amz-Content-SHA256": request.body_hash,
        "Authorization": f"{ALGORITHM} Credential={credential}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}",
    }

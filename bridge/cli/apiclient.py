"""`lambda-bridge invoke` through a running daemon's Lambda API (esm-reference.md 14).

`Event` invocations go to the daemon's asynchronous queue, so they need a daemon; any
invocation type goes there with `--url` (or `--qualifier`). The address is `--url`, else
the config's `api.listen` (a daemon listening on port 0 leaves the one it got in
`state_dir/api-address`). Requests are signed with SigV4 when the config has
`api.credentials` (a daemon beyond loopback verifies them), else sent as the SDKs send
them to a loopback listener, with placeholder credentials.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

from multidict import CIMultiDict, CIMultiDictProxy

from bridge.addresses import reachable_address
from bridge.codec import JSONDecodeError, loads
from bridge.config.model import LoadedConfig
from bridge.frontdoor import sigv4
from bridge.frontdoor.server import ADDRESS_FILE

PLACEHOLDER_KEY = "lambda-bridge-cli"
TIMEOUT_SECONDS = 960.0  # past Lambda's longest function timeout, 900 s


class ApiClientError(Exception):
    """The daemon's API cannot be reached or answered with an error of its own."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    request_id: str
    executed_version: str | None
    function_error: str | None
    log_tail: bytes | None
    payload: bytes


def api_url(url: str | None, loaded: LoadedConfig | None) -> str:
    if url:
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ApiClientError(
                f"--url must be http://host:port or https://host:port, not {url!r}"
            )
        return url.rstrip("/")
    api = loaded.config.api if loaded is not None else None
    if api is None:
        raise ApiClientError(
            "the config has no api: section, so there is no daemon API to send this to: add "
            "`api: {listen: 127.0.0.1:9001}` and run the daemon, or give --url"
        )
    assert loaded is not None
    written = loaded.config.state_dir / ADDRESS_FILE
    address = reachable_address(api.listen, written)
    if address is None:
        raise ApiClientError(f"no API address in {written}: is the daemon running?")
    return f"http://{address}"


def invoke(
    base_url: str,
    loaded: LoadedConfig | None,
    function: str,
    event: bytes,
    *,
    invocation_type: str,
    log_type: str,
    qualifier: str | None,
) -> ApiAnswer:
    """One Invoke call (blocking: the CLI has nothing else to do meanwhile)."""
    raw_path = f"/2015-03-31/functions/{urllib.parse.quote(function, safe='')}/invocations"
    raw_query = urllib.parse.urlencode({"Qualifier": qualifier}) if qualifier else ""
    parsed = urllib.parse.urlsplit(base_url)
    headers = CIMultiDict(
        {
            "Host": parsed.netloc,
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": invocation_type,
            "X-Amz-Log-Type": log_type,
        }
    )
    headers.update(_signature(loaded, headers, raw_path, raw_query, event))
    url = base_url + raw_path + (f"?{raw_query}" if raw_query else "")
    request = urllib.request.Request(url, data=event, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return _answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        raise ApiClientError(_error_line(error.code, error.headers, error.read())) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiClientError(f"cannot reach the daemon's API at {base_url}: {reason}") from None


def _signature(
    loaded: LoadedConfig | None,
    headers: CIMultiDict[str],
    raw_path: str,
    raw_query: str,
    body: bytes,
) -> dict[str, str]:
    api = loaded.config.api if loaded is not None else None
    credentials = api.credentials if api is not None else None
    region = loaded.config.aws.region if loaded is not None else "us-east-1"
    key_id, secret = PLACEHOLDER_KEY, PLACEHOLDER_KEY
    if credentials is not None:
        key_id = credentials.access_key_id
        secret = credentials.secret_access_key.get_secret_value()
    unsigned = sigv4.Request(
        "POST",
        raw_path,
        raw_query,
        CIMultiDictProxy(headers),
        hashlib.sha256(body).hexdigest(),
    )
    return sigv4.sign(unsigned, key_id, secret, region)


def _answer(status: int, headers: Message, payload: bytes) -> ApiAnswer:
    encoded_tail = headers.get("X-Amz-Log-Result")
    return ApiAnswer(
        status=status,
        request_id=headers.get("x-amzn-RequestId", ""),
        executed_version=headers.get("X-Amz-Executed-Version"),
        function_error=headers.get("X-Amz-Function-Error"),
        log_tail=base64.b64decode(encoded_tail) if encoded_tail is not None else None,
        payload=payload,
    )


def _error_line(status: int, headers: Message, body: bytes) -> str:
    kind = headers.get("x-amzn-ErrorType", "").partition(":")[0] or f"HTTP {status}"
    try:
        document = loads(body)
    except (JSONDecodeError, UnicodeDecodeError):
        document = None
    message = ""
    if isinstance(document, dict):
        message = str(document.get("message") or document.get("Message") or "")
    else:
        message = body[:200].decode("utf-8", "replace").strip()
    return f"{kind} ({status}): {message}" if message else f"{kind} ({status})"

"""Keeping credentials out of what the daemon says: URLs as they may be shown.

A URL from a config may carry credentials in its user info (`https://user:pass@host/`,
or a token as the user name) or in its query (`?api_key=...`). Wherever a URL reaches a
log line, an error, a metric label or a failure record, it goes through `redact_url`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# A URL inside some text (a client library's error message, say).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` with its user info and the values of its query replaced by `***`; the scheme,
    host, port and path stay, so the URL still says where it points."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, REDACTED) for key, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def describe_error(error: BaseException) -> str:
    """An exception as text safe to show: its message (or its type's name when it has
    none) with the credentials of any URL in it redacted."""
    return redact_urls_in(str(error) or type(error).__name__)


def redact_urls_in(text: str) -> str:
    """`text` with every URL in it redacted (linear in the text: one regex scan)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group(0)), text)

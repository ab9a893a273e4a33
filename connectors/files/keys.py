"""How a file's key is written wherever it leaves the folder.

A key is the path relative to the watched folder, as Python sees it: a name that is not
valid UTF-8 holds lone surrogates (the `surrogateescape` of `os.fsdecode`), which JSON
encoders, SQLite and the logs refuse. Every way out therefore has its own form:

- in events, the key is URL-encoded from its raw bytes as S3 does (`bad-%FF%FE.txt`), so
  `unquote_plus(key, errors="surrogateescape")` gives the name back exactly;
- as the record's partition, in logs and in failure records it is shown as text, the
  bytes that are not UTF-8 written as `\\xff`;
- in the checkpoint store it is the key itself, or for a name that is not UTF-8 a `/`
  (which no relative key starts with) and the URL-encoded raw bytes, so no two files
  ever share a checkpoint.
"""

from __future__ import annotations

import os
from urllib.parse import quote, quote_plus, unquote

_ENCODED_PREFIX = "/"


def is_text(key: str) -> bool:
    """Whether the key is valid UTF-8 text (the file name decoded without escapes)."""
    if key.isascii():
        return True
    try:
        key.encode()
    except UnicodeEncodeError:
        return False
    return True


def encode_key(key: str) -> str:
    """S3 writes keys into event notifications form-encoded from their bytes, leaving `/`."""
    return quote_plus(os.fsencode(key), safe="/")


def shown_key(key: str) -> str:
    """The key as text for partitions, logs and failure records: itself when it is UTF-8,
    else with each byte that is not written as `\\xNN`."""
    if is_text(key):
        return key
    return os.fsencode(key).decode("utf-8", "backslashreplace")


def stored_key(key: str) -> str:
    """The key under which the file's state is checkpointed (distinct for every file)."""
    if is_text(key):
        return key
    return _ENCODED_PREFIX + quote(os.fsencode(key), safe="/")


def key_of_stored(text: str) -> str:
    """The key of a checkpoint written under `stored_key(key)`."""
    if text.startswith(_ENCODED_PREFIX):
        return unquote(text[len(_ENCODED_PREFIX) :], errors="surrogateescape")
    return text

"""How a file's key is written in events, partitions, logs and checkpoints, for every name
a file system can hold, including names that are not valid UTF-8."""

from __future__ import annotations

import os
from urllib.parse import unquote_plus

from hypothesis import given
from hypothesis import strategies as st

from bridge.codec import dumps
from connectors.files.events import FileChange, FileEventBuilder
from connectors.files.keys import encode_key, is_text, key_of_stored, shown_key, stored_key

# A name as the file system gives it: `os.fsdecode` of bytes that are not UTF-8.
BAD = os.fsdecode(b"bad-\xff\xfe.txt")
MD5 = "9e107d9d372bb6826bd81d3542a419d6"

# Any relative key a folder can hold: components of bytes without `/` or NUL.
raw_names = st.binary(min_size=1, max_size=30).filter(
    lambda raw: b"/" not in raw and b"\x00" not in raw and raw not in (b".", b"..")
)
raw_keys = st.lists(raw_names, min_size=1, max_size=3).map(b"/".join)


def test_a_name_that_is_not_utf8_is_url_encoded_from_its_bytes() -> None:
    """The event key of `bad-\\xff\\xfe.txt` is `bad-%FF%FE.txt`, as S3 encodes raw bytes;
    a handler unquoting with errors="surrogateescape" gets the real name back."""
    assert not is_text(BAD)
    assert encode_key(BAD) == "bad-%FF%FE.txt"
    assert unquote_plus(encode_key(BAD), errors="surrogateescape") == BAD
    assert encode_key("sub dir/" + BAD) == "sub+dir/bad-%FF%FE.txt"


@given(raw_keys)
def test_every_key_round_trips_through_its_event_form(raw: bytes) -> None:
    """For any bytes, the event key is ASCII without spaces and decodes back to the exact
    name (the bytes `os.fsencode` gives)."""
    key = os.fsdecode(raw)
    encoded = encode_key(key)
    assert encoded.isascii()
    assert " " not in encoded
    back = unquote_plus(encoded, errors="surrogateescape")
    assert os.fsencode(back) == raw


def test_utf8_keys_encode_as_before() -> None:
    """For names that are UTF-8 the event key is the usual form encoding of the text."""
    assert encode_key("café/my report+1.csv") == "caf%C3%A9/my+report%2B1.csv"


def test_shown_key_writes_bytes_that_are_not_utf8_as_escapes() -> None:
    """Partitions, logs and failure records show `bad-\\xff\\xfe.txt`; a UTF-8 key is
    shown as it is."""
    assert shown_key(BAD) == "bad-\\xff\\xfe.txt"
    assert shown_key("café/a b.txt") == "café/a b.txt"


@given(raw_keys)
def test_shown_and_stored_keys_are_always_valid_text(raw: bytes) -> None:
    """Whatever the name, the shown and stored forms encode as UTF-8 (JSON, SQLite and
    the logs accept them)."""
    key = os.fsdecode(raw)
    shown_key(key).encode()
    stored_key(key).encode()
    dumps({"key": shown_key(key), "stored": stored_key(key)})


@given(raw_keys)
def test_stored_keys_round_trip(raw: bytes) -> None:
    """A checkpoint written under `stored_key` names its file exactly; UTF-8 keys are
    stored as themselves, so checkpoints of earlier versions still match."""
    key = os.fsdecode(raw)
    assert key_of_stored(stored_key(key)) == key
    if is_text(key):
        assert stored_key(key) == key


@given(raw_keys, raw_keys)
def test_distinct_files_never_share_a_stored_key(first: bytes, second: bytes) -> None:
    """Two different names never map to one checkpoint, even a name that is not UTF-8 and
    one spelled like its escaped form."""
    if first != second:
        assert stored_key(os.fsdecode(first)) != stored_key(os.fsdecode(second))


def test_stored_key_of_a_name_spelled_like_an_escape_differs() -> None:
    """`bad-%FF%FE.txt` (a real, UTF-8 name) and `bad-\\xff\\xfe.txt` (raw bytes) are two
    files with two checkpoints."""
    assert stored_key("bad-%FF%FE.txt") != stored_key(BAD)
    assert key_of_stored(stored_key("bad-%FF%FE.txt")) == "bad-%FF%FE.txt"
    assert key_of_stored(stored_key(BAD)) == BAD


def test_record_of_a_name_that_is_not_utf8_encodes() -> None:
    """A record and its failure description for such a file encode as JSON: the partition
    and FilesBatchInfo.keys hold the shown key, the event the URL-encoded one."""
    builder = FileEventBuilder(
        root="/srv/inbox", bucket="inbox", region="eu-west-1", configuration_id="m"
    )
    change = FileChange(BAD, size=3, mtime_ns=1, etag=MD5, changed_ns=1)
    record = builder.record(change)
    assert record.partition == "bad-\\xff\\xfe.txt"
    assert record.payload["s3"]["object"]["key"] == "bad-%FF%FE.txt"
    assert record.handle.key == BAD
    assert b"bad-%FF%FE.txt" in record.encode()
    key, info = builder.formatter.batch_info([record])
    assert key == "FilesBatchInfo"
    assert info["keys"] == ["bad-\\xff\\xfe.txt"]
    dumps(info)
    event = builder.formatter.encode_event([record])
    assert b"bad-%FF%FE.txt" in event

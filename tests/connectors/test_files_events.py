"""The S3 event notification shape of the `files` source, without touching a folder."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import S3Model
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.plugins import Identity
from bridge.failures import iso_millis
from connectors.files.config import FilesSourceConfig
from connectors.files.events import (
    CREATED,
    REMOVED,
    FileChange,
    FileEventBuilder,
    FileEventFormatter,
    Sequencer,
    s3_record,
    sequencer_text,
)
from connectors.files.keys import encode_key

SEQUENCER = re.compile(r"^[0-9A-F]{18}$")
MD5 = "9e107d9d372bb6826bd81d3542a419d6"
MTIME_NS = 1_700_000_000_123_456_789


def created_record(key: str = "docs/report.csv", size: int = 42) -> dict[str, Any]:
    return s3_record(
        FileChange(key, size=size, mtime_ns=MTIME_NS, etag=MD5, changed_ns=MTIME_NS),
        bucket="inbox",
        region="eu-west-1",
        configuration_id="mapping-a",
        sequencer="0000000000000000AB",
        event_time=MTIME_NS / 1e9,
    )


def removed_record(key: str = "docs/report.csv") -> dict[str, Any]:
    return s3_record(
        FileChange(key),
        bucket="inbox",
        region="eu-west-1",
        configuration_id="mapping-a",
        sequencer="0000000000000000AC",
        event_time=1_700_000_001.5,
    )


def builder() -> FileEventBuilder:
    return FileEventBuilder(
        root="/srv/inbox", bucket="inbox", region="eu-west-1", configuration_id="mapping-a"
    )


# -- encode_key -------------------------------------------------------------------------


def test_encode_key_turns_spaces_into_plus_and_keeps_slashes() -> None:
    """Keys are form-encoded as S3 writes them: ' ' -> '+', '/' stays as is."""
    assert encode_key("reports/2026 q1/summary report.csv") == (
        "reports/2026+q1/summary+report.csv"
    )


def test_encode_key_percent_encodes_plus_percent_and_unicode() -> None:
    """A literal '+' or '%' and non-ASCII characters are percent-encoded (UTF-8 bytes), so
    a '+' in the event always means a space."""
    assert encode_key("a+b.txt") == "a%2Bb.txt"
    assert encode_key("100%.txt") == "100%25.txt"
    assert encode_key("café/naïve.txt") == "caf%C3%A9/na%C3%AFve.txt"
    assert encode_key("plain-name_1.0.txt") == "plain-name_1.0.txt"


@given(st.text(min_size=1, max_size=40))
def test_encode_key_round_trips_through_unquote_plus(key: str) -> None:
    """What S3 handlers do (`urllib.parse.unquote_plus`) gives back the exact key, and the
    encoded form holds no space."""
    encoded = encode_key(key)
    assert unquote_plus(encoded) == key
    assert " " not in encoded


# -- s3_record --------------------------------------------------------------------------


def test_created_record_has_the_s3_put_shape() -> None:
    """A created file is `ObjectCreated:Put` with key, size, eTag and sequencer, and the
    fixed S3 envelope fields (esm-reference.md 1.10)."""
    record = created_record("docs/my report.csv", size=42)
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == "eu-west-1"
    assert record["eventName"] == CREATED == "ObjectCreated:Put"
    assert record["eventTime"] == iso_millis(MTIME_NS / 1e9) == "2023-11-14T22:13:20.123Z"
    assert record["s3"]["s3SchemaVersion"] == "1.0"
    assert record["s3"]["configurationId"] == "mapping-a"
    assert record["s3"]["bucket"]["name"] == "inbox"
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::inbox"
    assert record["s3"]["bucket"]["ownerIdentity"]["principalId"]
    assert record["s3"]["object"] == {
        "key": "docs/my+report.csv",
        "size": 42,
        "eTag": MD5,
        "sequencer": "0000000000000000AB",
    }
    assert record["responseElements"]["x-amz-request-id"]
    assert record["responseElements"]["x-amz-id-2"]
    assert record["userIdentity"]["principalId"]
    assert record["requestParameters"]["sourceIPAddress"] == "127.0.0.1"


def test_removed_record_has_only_key_and_sequencer() -> None:
    """A removed file is `ObjectRemoved:Delete`; like S3 its object carries no size and no
    eTag, only the key and the sequencer."""
    record = removed_record("docs/my report.csv")
    assert record["eventName"] == REMOVED == "ObjectRemoved:Delete"
    assert record["s3"]["object"] == {
        "key": "docs/my+report.csv",
        "sequencer": "0000000000000000AC",
    }
    assert record["eventTime"] == "2023-11-14T22:13:21.500Z"


def test_records_validate_against_powertools_s3_model() -> None:
    """Created and removed records parse with aws_lambda_powertools' S3Model, the model S3
    handlers use, with the key still URL-encoded."""
    event = {"Records": [created_record("a b.csv"), removed_record("a b.csv")]}
    parsed = S3Model.model_validate(event)
    created, removed = parsed.Records
    assert created.eventName == CREATED
    assert created.s3.object is not None
    assert created.s3.object.key == "a+b.csv"
    assert created.s3.object.size == 42
    assert created.s3.object.eTag == MD5
    assert removed.eventName == REMOVED
    assert removed.s3.object is not None
    assert removed.s3.object.size is None
    assert removed.s3.object.eTag is None


def test_sample_event_validates_against_powertools_s3_model() -> None:
    """`generate-event files` output is a real S3 event: it parses with S3Model and has the
    requested number of records, with encoded keys and distinct sequencers."""
    raw = FilesSourceConfig.sample_event(3, Identity(region="ap-south-1"))
    assert isinstance(raw, bytes)
    event = json.loads(raw)
    parsed = S3Model.model_validate(event)
    assert len(parsed.Records) == 3
    keys = [record.s3.object.key for record in parsed.Records if record.s3.object]
    assert keys == [f"reports/2026+report+{index}.csv" for index in range(3)]
    assert {record.awsRegion for record in parsed.Records} == {"ap-south-1"}
    sequencers = [record["s3"]["object"]["sequencer"] for record in event["Records"]]
    assert sequencers == sorted(set(sequencers))
    assert all(SEQUENCER.match(value) for value in sequencers)


def test_built_records_validate_and_round_trip_through_the_formatter() -> None:
    """Records from FileEventBuilder, assembled into an event by its formatter, parse with
    S3Model and keep their payloads in order."""
    events = builder()
    records = [
        events.record(
            FileChange("one.txt", size=1, mtime_ns=MTIME_NS, etag=MD5, changed_ns=MTIME_NS)
        ),
        events.record(
            FileChange(
                "sub/two words.txt", size=0, mtime_ns=MTIME_NS, etag=MD5, changed_ns=MTIME_NS
            )
        ),
        events.record(FileChange("one.txt")),
    ]
    raw = events.formatter.encode_event(records)
    event = json.loads(raw)
    assert event == {"Records": [record.payload for record in records]}
    parsed = S3Model.model_validate(event)
    assert [record.eventName for record in parsed.Records] == [CREATED, CREATED, REMOVED]
    assert len(raw) == events.formatter.envelope_bytes + sum(r.size for r in records) + 2


# -- FileEventBuilder -------------------------------------------------------------------


def test_builder_record_fields() -> None:
    """A Record's partition is the raw key, item_id the sequencer text, position its
    number, handle the FileChange and arrival the file's mtime."""
    change = FileChange("sub/a b.txt", size=7, mtime_ns=MTIME_NS, etag=MD5, changed_ns=MTIME_NS)
    record = builder().record(change)
    assert record.partition == "sub/a b.txt"
    assert record.payload["s3"]["object"]["key"] == "sub/a+b.txt"
    assert record.item_id == record.payload["s3"]["object"]["sequencer"]
    assert isinstance(record.item_id, str)
    assert SEQUENCER.match(record.item_id)
    assert record.position == int(record.item_id, 16)
    assert record.handle is change
    assert record.arrival == MTIME_NS / 1e9
    assert record.lane == record.partition == change.key


def test_each_file_is_its_own_key() -> None:
    """Every change of one file carries the file's key, so its events stay in order while
    different files are delivered independently (bridge.pipeline.keyed_lanes)."""
    events = builder()
    keys = [f"file-{index}.txt" for index in range(5)]
    first = {key: events.record(FileChange(key)).lane for key in keys}
    second = {key: events.record(FileChange(key, 1, MTIME_NS, MD5, MTIME_NS)).lane for key in keys}
    assert first == second == {key: key for key in keys}


def test_formatter_parses_sequencers_as_item_identifiers() -> None:
    """A partial batch response names records by their sequencer string."""
    formatter = builder().formatter
    assert formatter.parse_item_identifier("0000000000000000AB") == "0000000000000000AB"
    assert formatter.parse_item_identifier("") is None
    assert formatter.parse_item_identifier(12) is None


# -- sequencer --------------------------------------------------------------------------


def test_sequencer_text_is_18_upper_case_hex_digits() -> None:
    """The sequencer is zero-padded to 18 upper-case hex digits, as S3's are, so string
    order equals numeric order."""
    assert sequencer_text(0xAB) == "0000000000000000AB"
    assert SEQUENCER.match(sequencer_text(Sequencer().next()))


def test_sequencer_strictly_increases() -> None:
    """Many calls in a row never repeat or go back, numerically and as text."""
    sequencer = Sequencer()
    values = [sequencer.next() for _ in range(20_000)]
    assert all(later > earlier for earlier, later in pairwise(values))
    texts = [sequencer_text(value) for value in values]
    assert all(SEQUENCER.match(text) for text in texts)
    assert texts == sorted(texts)


def test_sequencer_keeps_growing_across_instances() -> None:
    """A second Sequencer made right after the first (a restart) continues above it, so a
    key's events keep their order across restarts."""
    first = Sequencer()
    before = [first.next() for _ in range(5_000)]
    second = Sequencer()
    after = [second.next() for _ in range(5_000)]
    assert after[0] > before[-1]
    assert sequencer_text(after[0]) > sequencer_text(before[-1])


def test_builder_sequencers_increase_across_records() -> None:
    """Records built one after another carry increasing sequencers and positions."""
    events = builder()
    records = [events.record(FileChange(f"k{index % 3}")) for index in range(300)]
    texts = [str(record.item_id) for record in records]
    assert texts == sorted(set(texts))
    positions = [record.position for record in records]
    assert positions == sorted(set(positions))


# -- batch info -------------------------------------------------------------------------


def test_batch_info_describes_the_records() -> None:
    """FilesBatchInfo names the folder and bucket, the first and last sequencer and
    arrival, the batch size and the raw keys in delivery order."""
    events = builder()
    records = [
        events.record(
            FileChange("a b.txt", size=1, mtime_ns=MTIME_NS, etag=MD5, changed_ns=MTIME_NS)
        ),
        events.record(
            FileChange(
                "sub/c.txt",
                size=2,
                mtime_ns=MTIME_NS + 2_000_000,
                etag=MD5,
                changed_ns=MTIME_NS + 2_000_000,
            )
        ),
        events.record(
            FileChange(
                "gone.txt",
                size=None,
                mtime_ns=MTIME_NS + 5_000_000,
                changed_ns=MTIME_NS + 5_000_000,
            )
        ),
    ]
    formatter = events.formatter
    assert isinstance(formatter, FileEventFormatter)
    key, info = formatter.batch_info(records)
    assert key == "FilesBatchInfo"
    assert info == {
        "path": "/srv/inbox",
        "bucket": "inbox",
        "startSequencer": records[0].item_id,
        "endSequencer": records[-1].item_id,
        "approximateArrivalOfFirstRecord": "2023-11-14T22:13:20.123Z",
        "approximateArrivalOfLastRecord": "2023-11-14T22:13:20.128Z",
        "batchSize": 3,
        "keys": ["a b.txt", "sub/c.txt", "gone.txt"],
    }

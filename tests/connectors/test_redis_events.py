"""The record shape of the `redis-streams` source and its settings, without a server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.config.plugins import Identity
from bridge.config.registry import registered
from bridge.failures import iso_millis
from bridge.records import Record
from connectors.redis.config import (
    RedisStreamDestinationConfig,
    RedisStreamsSourceConfig,
    redacted_url,
    server_arn,
)
from connectors.redis.events import (
    BINARY_NAME_PREFIX,
    EntryRecords,
    RedisStreamsFormatter,
    parse_entry_id,
    split_fields,
)

SERVER_ARN = "redis://cache.internal:6380/2"


def builder(region: str = "eu-west-1") -> EntryRecords:
    return EntryRecords(server_arn=SERVER_ARN, region=region)


def source_config(**settings: Any) -> RedisStreamsSourceConfig:
    settings.setdefault("url", "redis://cache.internal:6380/2")
    settings.setdefault("streams", ["orders"])
    settings.setdefault("starting_position", "TRIM_HORIZON")
    return RedisStreamsSourceConfig(type="redis-streams", **settings)


def restored(text: dict[str, str], binary: dict[str, str]) -> dict[bytes, bytes]:
    """The original name -> value bytes, decoded back from a record's two maps."""

    def name(key: str) -> bytes:
        if key.startswith(BINARY_NAME_PREFIX):
            return base64.b64decode(key.removeprefix(BINARY_NAME_PREFIX))
        return key.encode()

    original = {name(key): value.encode() for key, value in text.items()}
    original.update({name(key): base64.b64decode(value) for key, value in binary.items()})
    return original


# -- entry ids ----------------------------------------------------------------------------


def test_entry_id_parses_into_milliseconds_and_sequence() -> None:
    """`<ms>-<seq>` becomes the (ms, seq) position that orders entries of a stream."""
    assert parse_entry_id("1700000000000-0") == (1_700_000_000_000, 0)
    assert parse_entry_id("1-18446744073709551615") == (1, 18_446_744_073_709_551_615)
    assert parse_entry_id("5-3") < parse_entry_id("5-10") < parse_entry_id("6-0")


@pytest.mark.parametrize("bad", ["", "17", "17-", "-3", "a-1", "1-b", "1-2-3"])
def test_malformed_entry_id_is_rejected(bad: str) -> None:
    """Anything but `<digits>-<digits>` is not an entry id."""
    with pytest.raises(ValueError, match="not a stream entry id"):
        parse_entry_id(bad)


# -- records ------------------------------------------------------------------------------


def test_record_has_the_kinesis_like_shape() -> None:
    """The payload mirrors a Kinesis record (esm-reference.md 1.4) with a `redis` object,
    and the Record carries stream, position, id and arrival for the pipeline."""
    record = builder().record("orders", "1700000000123-4", [b"name", b"value"])
    assert record.payload == {
        "redis": {
            "streamSchemaVersion": "1.0",
            "stream": "orders",
            "id": "1700000000123-4",
            "fields": {"name": "value"},
            "binaryFields": {},
            "approximateArrivalTimestamp": 1700000000.123,
        },
        "eventSource": "redis:streams",
        "eventVersion": "1.0",
        "eventID": "orders:1700000000123-4",
        "eventName": "redis:streams:entry",
        "eventSourceARN": "redis://cache.internal:6380/2/orders",
        "awsRegion": "eu-west-1",
    }
    assert record.partition == "orders"
    assert record.lane == "orders"
    assert record.position == (1_700_000_000_123, 4)
    assert record.item_id == "1700000000123-4"
    assert record.handle == "1700000000123-4"
    assert record.arrival == 1700000000.123
    assert json.loads(record.encode()) == record.payload


def test_utf8_values_stay_text_and_others_become_base64() -> None:
    """Valid UTF-8 (including non-ASCII) is kept as text; any other value goes to
    binaryFields as base64, losslessly."""
    blob = b"\x89PNG\r\n\x1a\n\xff\x00"
    record = builder().record(
        "s", "1-0", [b"city", "Zürich ✓".encode(), b"blob", blob, b"empty", b""]
    )
    redis = record.payload["redis"]
    assert redis["fields"] == {"city": "Zürich ✓", "empty": ""}
    assert redis["binaryFields"] == {"blob": base64.b64encode(blob).decode()}
    assert base64.b64decode(redis["binaryFields"]["blob"]) == blob


def test_non_utf8_field_name_is_written_as_base64_name_in_the_map_of_its_value() -> None:
    """A name that is not UTF-8 becomes `base64:<name>`, in `fields` or `binaryFields`
    according to its value."""
    name = b"\xfe\xffkey"
    encoded = BINARY_NAME_PREFIX + base64.b64encode(name).decode()
    text, binary = split_fields([name, b"text", b"ok", b"\xc3\x28"])
    assert text == {encoded: "text"}
    assert binary == {"ok": base64.b64encode(b"\xc3\x28").decode()}
    text, binary = split_fields([name, b"\xc3\x28"])
    assert (text, binary) == ({}, {encoded: base64.b64encode(b"\xc3\x28").decode()})


def test_repeated_field_name_keeps_its_last_value_in_one_map_only() -> None:
    """Redis allows a name twice in one entry; a JSON object cannot hold it twice, so
    the last value wins and the name is in only one of the maps."""
    assert split_fields([b"a", b"\xff", b"a", b"text"]) == ({"a": "text"}, {})
    assert split_fields([b"a", b"text", b"a", b"\xff"]) == ({}, {"a": "/w=="})


@given(
    st.dictionaries(
        st.binary(max_size=12) | st.text(max_size=8).map(str.encode),
        st.binary(max_size=24) | st.text(max_size=12).map(str.encode),
        max_size=6,
    )
)
def test_fields_round_trip_losslessly(original: dict[bytes, bytes]) -> None:
    """Whatever the bytes, names and values can be restored exactly from the two maps
    (names that do not start with the `base64:` marker)."""
    original = {
        name: value
        for name, value in original.items()
        if not name.startswith(BINARY_NAME_PREFIX.encode())
    }
    flat = [part for pair in original.items() for part in pair]
    text, binary = split_fields(flat)
    assert not set(text) & set(binary)
    assert restored(text, binary) == original


def test_event_source_arn_never_holds_credentials() -> None:
    """The ARN is scheme://host:port/db/stream, whatever the URL carries."""
    url = "rediss://app:s3cret@cache.internal:6390/4?password=other-secret"
    arn = EntryRecords(server_arn=server_arn(url), region="us-east-1").stream_arn("orders")
    assert arn == "rediss://cache.internal:6390/4/orders"
    assert server_arn("redis://localhost") == "redis://localhost:6379/0"
    assert server_arn("redis://[::1]:7000/?db=3") == "redis://[::1]:7000/3"


# -- formatter ----------------------------------------------------------------------------


def test_event_is_a_records_array_in_delivery_order() -> None:
    """The event is `{"Records": [...]}` of the records' own JSON, in order."""
    entries = builder()
    records = [entries.record("s", f"{1000 + n}-0", [b"n", str(n).encode()]) for n in range(3)]
    event = json.loads(entries.formatter("g").encode_event(records))
    assert [item["redis"]["fields"]["n"] for item in event["Records"]] == ["0", "1", "2"]
    assert event["Records"][0] == records[0].payload


def test_batch_info_describes_the_discarded_entries() -> None:
    """RedisStreamsBatchInfo has KinesisBatchInfo's fields for a stream and group
    (esm-reference.md 10.1), with millisecond ISO arrival times."""
    entries = builder()
    records: list[Record] = [
        entries.record("orders", "1700000000001-0", [b"a", b"1"]),
        entries.record("orders", "1700000000502-7", [b"a", b"2"]),
    ]
    formatter = entries.formatter("billing")
    assert isinstance(formatter, RedisStreamsFormatter)
    key, info = formatter.batch_info(records)
    assert key == "RedisStreamsBatchInfo"
    assert info == {
        "stream": "orders",
        "group": "billing",
        "startEntryId": "1700000000001-0",
        "endEntryId": "1700000000502-7",
        "approximateArrivalOfFirstRecord": iso_millis(1700000000.001),
        "approximateArrivalOfLastRecord": iso_millis(1700000000.502),
        "batchSize": 2,
        "streamArn": "redis://cache.internal:6380/2/orders",
    }
    assert info["approximateArrivalOfLastRecord"] == "2023-11-14T22:13:20.502Z"


def test_item_identifier_is_the_entry_id_string() -> None:
    """A partial batch response names entries by their id string; others are malformed."""
    formatter = builder().formatter("g")
    assert formatter.parse_item_identifier("1700000000001-0") == "1700000000001-0"
    assert formatter.parse_item_identifier("") is None
    assert formatter.parse_item_identifier(17) is None


def test_sample_event_comes_from_the_real_record_builder() -> None:
    """`generate-event redis-streams` output: the registered config builds `count`
    records through the same code as the source, with the identity's region."""
    config_class = registered("sources")["redis-streams"]
    assert config_class is RedisStreamsSourceConfig
    event = json.loads(config_class.sample_event(3, Identity(region="ap-south-1")))
    records = event["Records"]
    assert len(records) == 3
    assert {record["awsRegion"] for record in records} == {"ap-south-1"}
    assert records[0]["redis"]["fields"] == {"order_id": "1000", "status": "created"}
    assert "thumbnail" in records[1]["redis"]["binaryFields"]
    ids = [parse_entry_id(record["redis"]["id"]) for record in records]
    assert ids == sorted(ids)
    assert registered("destinations")["redis-stream"] is RedisStreamDestinationConfig


# -- settings -----------------------------------------------------------------------------


def test_config_defaults() -> None:
    """Only url, streams and starting_position are needed; the rest has defaults."""
    config = source_config()
    assert config.group is None
    assert config.consumer is None
    assert config.claim_idle_after_seconds == 30
    assert config.lease_ttl_seconds == 10
    assert config.block_seconds == 1.0
    assert config.read_count == 500


def test_config_rejects_unknown_keys() -> None:
    """A misspelt setting is an error, not silently ignored."""
    with pytest.raises(ValidationError, match="Extra inputs"):
        source_config(read_cont=10)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RedisStreamDestinationConfig(
            type="redis-stream",
            url="redis://localhost/0",
            stream="failed",
            max_len=3,  # type: ignore[call-arg]
        )


def test_config_requires_a_starting_position() -> None:
    """starting_position has no default: a new group must be told where to start."""
    with pytest.raises(ValidationError, match="starting_position"):
        RedisStreamsSourceConfig(type="redis-streams", url="redis://h/0", streams=["s"])  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="starting_position"):
        source_config(starting_position="AT_TIMESTAMP")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://cache:6379"}, "redis:// or rediss://"),
        ({"url": "redis://cache:port/0"}, "invalid port"),
        ({"url": "redis://cache:6379/orders"}, "database number"),
        ({"streams": []}, "at least 1"),
        ({"streams": ["a", ""]}, "at least 1 character"),
        ({"streams": ["a", "b", "a"]}, "more than once: a"),
        ({"lease_ttl_seconds": 0.5}, "greater than or equal to 1"),
        ({"block_seconds": 0}, "greater than 0"),
    ],
)
def test_config_rejects_invalid_values(settings: dict[str, Any], message: str) -> None:
    """Bad URLs, empty or repeated streams and out-of-range timings are refused."""
    with pytest.raises(ValidationError, match=message):
        source_config(**settings)


def test_url_is_secret_and_redacted_in_source_id() -> None:
    """The password never shows in the config's repr, its redacted URL or source_id."""
    config = source_config(
        url="redis://app:pa55word@cache:6379/1?password=pa55word&db=1", group="billing"
    )
    assert "pa55word" not in repr(config)
    assert "pa55word" not in config.source_id()
    assert config.source_id() == (
        "redis-streams:redis://app:***@cache:6379/1?password=***&db=1|orders|billing"
    )
    assert redacted_url("rediss://:pw@h:1/0") == "rediss://:***@h:1/0"
    assert redacted_url("redis://h:1/0") == "redis://h:1/0"

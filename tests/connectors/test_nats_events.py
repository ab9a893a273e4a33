"""The record shape of the `nats` source, its filters, its settings and its subject
ordering rule, without a server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.config.plugins import Identity
from bridge.config.registry import registered
from bridge.filtering.criteria import MQ_DATA, build_filter_set
from bridge.records import Record
from connectors.nats.config import NatsSourceConfig
from connectors.nats.events import EVENT_SOURCE, JetStreamRecords
from connectors.nats.ordering import SubjectOrder


def records(ordered: bool = False, lanes: int = 4) -> JetStreamRecords:
    return JetStreamRecords(
        server="nats://broker.internal:4222",
        stream="ORDERS",
        consumer="billing",
        region="eu-west-1",
        ordered=ordered,
        lanes=lanes,
    )


def message(builder: JetStreamRecords, data: bytes, **overrides: Any) -> Record:
    values: dict[str, Any] = {
        "subject": "orders.created",
        "data": data,
        "headers": {"Nats-Msg-Id": "o-1"},
        "stream_sequence": 42,
        "consumer_sequence": 57,
        "delivered": 2,
        "pending": 7,
        "timestamp_ms": 1_790_000_000_123,
    }
    values.update(overrides)
    return builder.record(**values)


def config(**settings: Any) -> NatsSourceConfig:
    settings.setdefault("url", "nats://broker.internal:4222")
    settings.setdefault("stream", "ORDERS")
    return NatsSourceConfig.model_validate({"type": "nats", **settings})


def test_a_record_carries_the_message_and_its_jetstream_metadata() -> None:
    builder = records()
    record = message(builder, b'{"order": 7}')
    expected = {
        "messageId": "ORDERS:42",
        "subject": "orders.created",
        "data": base64.b64encode(b'{"order": 7}').decode(),
        "headers": {"Nats-Msg-Id": "o-1"},
        "stream": "ORDERS",
        "consumer": "billing",
        "streamSequence": 42,
        "consumerSequence": 57,
        "numDelivered": 2,
        "numPending": 7,
        "timestamp": 1_790_000_000_123,
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": "nats://broker.internal:4222/ORDERS/billing",
        "awsRegion": "eu-west-1",
    }
    assert json.loads(record.encode()) == expected
    assert record.payload == expected
    assert (record.item_id, record.position, record.arrival) == ("ORDERS:42", 42, 1_790_000_000.123)
    event = json.loads(builder.formatter().encode_event([record]))
    assert event == {"Records": [expected]}


def test_a_message_without_headers_has_an_empty_map_and_binary_data_survives() -> None:
    record = message(records(), b"\x00\xff\x10", headers=None)
    assert record.payload["headers"] == {}
    assert base64.b64decode(record.payload["data"]) == b"\x00\xff\x10"


def test_unordered_records_share_the_stream_and_ordered_ones_go_by_subject() -> None:
    plain = message(records(), b"x", subject="orders.eu")
    assert (plain.partition, plain.lane) == ("ORDERS", None)
    ordered = records(ordered=True, lanes=4)
    first = message(ordered, b"x", subject="orders.eu", stream_sequence=1)
    second = message(ordered, b"x", subject="orders.eu", stream_sequence=9)
    assert first.partition == second.partition == "orders.eu"
    assert first.lane == second.lane == ordered.lane_of("orders.eu")
    assert 0 <= ordered.lane_of("orders.us") < 4


def test_item_identifiers_and_the_batch_info_of_a_failure_record() -> None:
    builder = records()
    formatter = builder.formatter()
    batch = [message(builder, b"a", stream_sequence=5), message(builder, b"b", stream_sequence=8)]
    assert formatter.parse_item_identifier("ORDERS:5") == "ORDERS:5"
    assert formatter.parse_item_identifier("") is None
    assert formatter.parse_item_identifier(5) is None
    key, info = formatter.batch_info(batch)
    assert key == "JetStreamBatchInfo"
    assert info["firstMessageId"] == "ORDERS:5" and info["lastMessageId"] == "ORDERS:8"
    assert (info["firstStreamSequence"], info["lastStreamSequence"]) == (5, 8)
    assert info["batchSize"] == 2 and info["stream"] == "ORDERS"
    assert info["eventSourceArn"] == "nats://broker.internal:4222/ORDERS/billing"


@pytest.mark.parametrize(
    ("data", "pattern", "kept"),
    [
        (b'{"status": "paid"}', {"data": {"status": ["paid"]}}, True),
        (b'{"status": "open"}', {"data": {"status": ["paid"]}}, False),
        (b"plain text", {"data": ["plain text"]}, True),
        # A payload and pattern of different kinds leave only the metadata to match, as
        # for Amazon MQ's data (esm-reference.md 11.4).
        (b"plain text", {"data": {"status": ["paid"]}, "subject": ["orders.created"]}, True),
        (b"\xff\xfe", {"data": {"status": ["paid"]}, "subject": ["orders.other"]}, False),
        (b'{"status": "open"}', {"subject": [{"prefix": "orders."}]}, True),
    ],
)
def test_filters_see_the_decoded_data(data: bytes, pattern: dict[str, Any], kept: bool) -> None:
    filters = build_filter_set([json.dumps(pattern)], MQ_DATA)
    assert filters.matches(message(records(), data)) is kept


def test_sample_event_is_what_generate_event_prints() -> None:
    event = json.loads(registered("sources")["nats"].sample_event(3, Identity()))
    assert [item["messageId"] for item in event["Records"]] == [
        "ORDERS:41",
        "ORDERS:42",
        "ORDERS:43",
    ]
    assert json.loads(base64.b64decode(event["Records"][0]["data"]))["order_id"] == 1000
    assert event["Records"][0]["headers"] == {"Nats-Msg-Id": "order-1000"}
    assert event["Records"][1]["headers"] == {}


def test_settings_defaults_and_secrets() -> None:
    settings = config(url="nats://app:Hunter2@broker.internal:4222,nats://other:4223")
    assert settings.ack_wait_seconds == 30 and settings.max_deliver == -1
    assert settings.consumer_name("orders") == "orders"
    assert "Hunter2" not in settings.redacted_url() + settings.source_id()
    assert settings.server_address() == "nats://broker.internal:4222"
    delays = config(nak_delay_seconds=[1, 5, 30])
    assert [delays.nak_delay(n) for n in (1, 2, 3, 9)] == [1, 5, 30, 30]
    assert config().nak_delay(3) is None


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "http://broker:4222"},
        {"url": "nats://broker:port"},
        {"stream": "ORD.ERS"},
        {"consumer": "a b"},
        {"subject": "orders..created"},
        {"subject": "orders.>.created"},
        {"subject": "orders.ab*"},
        {"max_deliver": 0},
        {"nak_delay_seconds": [-1]},
        {"create_stream": True},
        {"ack_wait_seconds": 0.5},
        {"unknown": 1},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**settings)


def test_a_mapping_name_with_a_dot_needs_a_consumer_name() -> None:
    class Mapping:
        name = "orders.v2"

    [(path, problem)] = config().check_mapping(Mapping())
    assert path == ("source", "consumer") and "consumer" in problem
    assert config(consumer="orders-v2").check_mapping(Mapping()) == []


def test_a_subject_holds_later_messages_while_one_handed_back_is_out() -> None:
    now = [0.0]
    order = SubjectOrder[str](forget_after=10, clock=lambda: now[0])
    assert order.admit("a", 1, "a1")
    order.handed_back("a", 1)
    assert not order.admit("a", 2, "a2"), "a later message overtakes the one handed back"
    assert not order.admit("a", 4, "a4")
    assert order.admit("b", 3, "b3"), "another subject is not held"
    assert order.ready() == [] and order.held == 2
    assert order.admit("a", 1, "a1"), "the one handed back comes again"
    assert not order.admit("a", 5, "a5"), "a newer one waits behind the held ones"
    assert order.ready() == [(2, "a2"), (4, "a4"), (5, "a5")]
    assert order.held == 0 and order.admit("a", 6, "a6")


def test_held_messages_wait_only_for_earlier_ones_handed_back() -> None:
    order = SubjectOrder[str](forget_after=10, clock=lambda: 0.0)
    order.handed_back("a", 5)
    order.handed_back("a", 9)
    assert order.admit("a", 3, "a3"), "earlier than anything handed back"
    assert not order.admit("a", 7, "a7")
    assert not order.admit("a", 10, "a10")
    assert order.admit("a", 5, "a5")
    assert order.ready() == [(7, "a7")], "a10 still waits for 9"
    assert order.admit("a", 9, "a9")
    assert order.ready() == [(10, "a10")]


def test_a_message_that_never_comes_back_is_forgotten() -> None:
    now = [0.0]
    order = SubjectOrder[str](forget_after=10, clock=lambda: now[0])
    order.handed_back("a", 1)
    assert not order.admit("a", 2, "a2")
    assert order.ready() == []
    now[0] = 11
    assert order.ready() == [(2, "a2")]
    assert order.admit("a", 3, "a3")

"""The Kafka event shapes (esm-reference.md 1.6), item identifiers (7) and failure
records (10.3, 10.4), without a broker."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    KafkaMskEventModel,
    KafkaSelfManagedEventModel,
)

from bridge.codec import loads
from bridge.config.plugins import Identity
from bridge.records import FailureCondition, FailureRecord, InvokeResult
from connectors.kafka.config import KafkaDestinationConfig, KafkaSourceConfig
from connectors.kafka.destination import KafkaTopicDestination
from connectors.kafka.events import KafkaEventFormatter, KafkaMessage

ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973-a626-431c-9d4e-d7975eb44dd7-2"


def message(
    partition: int,
    offset: int,
    key: bytes | None = b"k",
    value: bytes | None = b'{"a": 1}',
    headers: Any = (("h", b"hi"),),
    timestamp_type: int = 0,
) -> KafkaMessage:
    return KafkaMessage(
        "orders",
        partition,
        offset,
        1_700_000_000_123 + offset,
        timestamp_type,
        key,
        value,
        list(headers),
    )


def validate(model: Any, event: dict[str, Any]) -> None:
    """Validate a copy: the Powertools models decode fields of the dict they are given."""
    model.model_validate(copy.deepcopy(event))


def event_of(formatter: KafkaEventFormatter, messages: list[KafkaMessage]) -> dict[str, Any]:
    event: dict[str, Any] = loads(
        formatter.encode_event([formatter.record(item) for item in messages])
    )
    return event


def test_self_managed_event_shape() -> None:
    """SelfManagedKafka, records keyed by topic-partition in arrival order, base64 key and
    value, headers as lists of byte values; valid for Powertools' strict model."""
    formatter = KafkaEventFormatter("b1:9092,b2:9092")
    event = event_of(formatter, [message(0, 5), message(1, 9), message(0, 6)])
    validate(KafkaSelfManagedEventModel, event)
    assert event["eventSource"] == "SelfManagedKafka"
    assert "eventSourceArn" not in event
    assert event["bootstrapServers"] == "b1:9092,b2:9092"
    assert list(event["records"]) == ["orders-0", "orders-1"]
    first = event["records"]["orders-0"][0]
    assert first == {
        "topic": "orders",
        "partition": 0,
        "offset": 5,
        "timestamp": 1_700_000_000_128,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k").decode(),
        "value": base64.b64encode(b'{"a": 1}').decode(),
        "headers": [{"h": [104, 105]}],
    }
    assert [record["offset"] for record in event["records"]["orders-0"]] == [5, 6]


def test_msk_event_shape() -> None:
    """With an MSK cluster ARN the event says aws:kafka and carries eventSourceArn."""
    event = event_of(KafkaEventFormatter("b1:9092", ARN), [message(0, 1, timestamp_type=1)])
    validate(KafkaMskEventModel, event)
    assert (event["eventSource"], event["eventSourceArn"]) == ("aws:kafka", ARN)
    assert event["records"]["orders-0"][0]["timestampType"] == "LOG_APPEND_TIME"


def test_keyless_message_and_null_value() -> None:
    """A message without a key has no `key`; a null value is an empty string."""
    record = event_of(
        KafkaEventFormatter("b:9092"), [message(0, 1, key=None, value=None, headers=[("h", None)])]
    )["records"]["orders-0"][0]
    assert "key" not in record
    assert record["value"] == ""
    assert record["headers"] == [{"h": []}]


def test_envelope_allowance_covers_the_event() -> None:
    """The batch builder's envelope allowance is never smaller than what the event adds."""
    formatter = KafkaEventFormatter("b1:9092,b2:9092", ARN)
    long_topic = KafkaMessage("t" * 249, 99999, 1, 0, 0, None, b"", [])
    record = formatter.record(long_topic)
    assert len(formatter.encode_event([record])) - record.size <= formatter.envelope_bytes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"partition": "orders-0", "offset": 100}, ("orders-0", 100)),
        ({"partition": "orders-0", "offset": "100"}, ("orders-0", 100)),
        ({"partition": "orders-0"}, None),
        ({"partition": "", "offset": 1}, None),
        ({"partition": "orders-0", "offset": True}, None),
        ({"partition": "orders-0", "offset": 1.5}, None),
        ("orders-0:100", None),
        (None, None),
    ],
)
def test_item_identifier_is_partition_and_offset(raw: object, expected: object) -> None:
    """Kafka's itemIdentifier is an object {partition, offset}; anything else is malformed
    and fails the whole batch (esm-reference.md 7)."""
    assert KafkaEventFormatter("b:9092").parse_item_identifier(raw) == expected


def test_batch_info_per_topic_partition() -> None:
    """KafkaBatchInfo lists first/last offset and timestamp per topic-partition, offsets as
    strings, and the payload size of the discarded event (10.3)."""
    formatter = KafkaEventFormatter("b:9092", ARN)
    records = [formatter.record(item) for item in (message(0, 5), message(0, 7), message(2, 1))]
    key, info = formatter.batch_info(records)
    assert key == "KafkaBatchInfo"
    assert (
        info["batchSize"] == 3
        and info["eventSourceArn"] == ARN
        and info["bootstrapServers"] == "b:9092"
    )
    assert info["payloadSize"] == len(formatter.encode_event(records))
    assert info["recordsInfo"]["orders-0"] == {
        "firstRecordOffset": "5",
        "lastRecordOffset": "7",
        "firstRecordTimestamp": "2023-11-14T22:13:20.128Z",
        "lastRecordTimestamp": "2023-11-14T22:13:20.130Z",
    }
    assert set(info["recordsInfo"]) == {"orders-0", "orders-2"}


def test_topic_destination_message_per_record() -> None:
    """The kafka:// destination writes one message per record: the original key and headers,
    `recordInfo` for that record, the condition AWS's example uses, and the record's own
    event as payload (10.4)."""
    formatter = KafkaEventFormatter("b:9092")
    records = [formatter.record(message(0, 3, key=b"customer-7"))]
    failure = FailureRecord(
        mapping="m",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=3,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        timestamp=1_700_000_001.0,
        last_result=InvokeResult(payload=b"{}", request_id="req-1", function_error="Unhandled"),
    )
    config = KafkaDestinationConfig(type="kafka", topic="failures", bootstrap_servers=["b:9092"])
    key, value, headers = KafkaTopicDestination("d", config).message_for(
        failure, records[0], formatter
    )
    document = json.loads(value)
    assert key == b"customer-7"
    assert headers == [("h", b"hi")]
    assert document["requestContext"]["condition"] == "RetriesExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert document["KafkaBatchInfo"]["recordInfo"] == {
        "offset": "3",
        "timestamp": "2023-11-14T22:13:20.126Z",
    }
    assert document["KafkaBatchInfo"]["batchSize"] == 1
    assert list(document["payload"]["records"]) == ["orders-0"]
    validate(KafkaSelfManagedEventModel, document["payload"])


def test_source_config_rules() -> None:
    """Bootstrap servers as a list or a comma string; AT_TIMESTAMP needs a past timestamp;
    SASL needs credentials; the failure topic may not be a source topic."""
    base = {"type": "kafka", "topics": ["orders"], "starting_position": "TRIM_HORIZON"}
    config = KafkaSourceConfig.model_validate({**base, "bootstrap_servers": "a:9092, b:9093"})
    assert config.bootstrap_servers == ["a:9092", "b:9093"]
    with pytest.raises(ValueError, match="host:port"):
        KafkaSourceConfig.model_validate({**base, "bootstrap_servers": "a"})
    with pytest.raises(ValueError, match="needs starting_position_timestamp"):
        KafkaSourceConfig.model_validate(
            {**base, "bootstrap_servers": "a:1", "starting_position": "AT_TIMESTAMP"}
        )
    with pytest.raises(ValueError, match="future"):
        KafkaSourceConfig.model_validate(
            {
                **base,
                "bootstrap_servers": "a:1",
                "starting_position": "AT_TIMESTAMP",
                "starting_position_timestamp": 4_000_000_000,
            }
        )
    with pytest.raises(ValueError, match="sasl_username, sasl_password"):
        KafkaSourceConfig.model_validate(
            {
                **base,
                "bootstrap_servers": "a:1",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
            }
        )
    with pytest.raises(ValueError, match="may not be a source topic"):
        config.destination_for("kafka://orders")
    destination = config.destination_for("kafka://orders-failed")
    assert isinstance(destination, KafkaDestinationConfig)
    assert (destination.topic, destination.bootstrap_servers) == (
        "orders-failed",
        ["a:9092", "b:9093"],
    )
    assert config.destination_for("failed") is None


def test_sample_event_is_valid() -> None:
    """generate-event kafka prints an event the strict model accepts."""
    KafkaSelfManagedEventModel.model_validate(loads(KafkaSourceConfig.sample_event(3, Identity())))

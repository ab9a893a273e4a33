"""The record shape of the `sqs` source, its settings and mapping checks, without a queue."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel
from pydantic import ValidationError

from bridge.config.model import MappingConfig
from bridge.config.plugins import QUEUE, Identity
from connectors.sqs.config import SqsDestinationConfig, SqsSourceConfig
from connectors.sqs.events import (
    MessageRecords,
    SqsEventFormatter,
    lambda_message_attributes,
    sample_message,
)

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:orders"
FIFO_ARN = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo"


def parsed(records: list[Any]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(SqsEventFormatter().encode_event(records))
    return event


def validated(event: dict[str, Any]) -> SqsModel:
    """powertools' model mutates what it validates: give it a copy."""
    return SqsModel.model_validate(copy.deepcopy(event))


def fifo_message(group: str, sequence: int, body: str) -> dict[str, Any]:
    message = sample_message(sequence)
    message["Body"] = body
    message["Attributes"].update(
        {
            "SequenceNumber": str(18849496460467696128 + sequence),
            "MessageGroupId": group,
            "MessageDeduplicationId": f"dedup-{sequence}",
        }
    )
    return message


def source_config(**settings: Any) -> SqsSourceConfig:
    settings.setdefault("queue_url", "https://sqs.eu-west-1.amazonaws.com/123456789012/orders")
    return SqsSourceConfig.model_validate({"type": "sqs", **settings})


def mapping(source: SqsSourceConfig, **settings: Any) -> MappingConfig:
    return MappingConfig(name="m", function="f", source=source, **settings)


# -- records and events ---------------------------------------------------------------


def test_sample_event_validates_with_powertools_sqs_model() -> None:
    """`generate-event sqs` builds Lambda's standard-queue event (esm-reference.md 1.2):
    every record passes SqsModel, md5OfMessageAttributes is null without attributes, and
    the ARN and region come from the identity."""
    event = json.loads(SqsSourceConfig.sample_event(3, Identity("eu-central-1", "111122223333")))
    model = validated(event)
    assert len(model.Records) == 3
    first, second = event["Records"][0], event["Records"][1]
    assert first["messageAttributes"] == {}
    assert first["md5OfMessageAttributes"] is None
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == "arn:aws:sqs:eu-central-1:111122223333:orders"
    assert first["awsRegion"] == "eu-central-1"
    assert (
        second["messageAttributes"]["thumbnail"]["binaryValue"]
        == base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    )
    assert list(first) == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]


def test_message_attributes_of_every_data_type_take_lambdas_lower_camel_shape() -> None:
    """String, Number, Binary and custom types map to stringValue / binaryValue (base64)
    with both list fields always present, as AWS-validated snapshots show (1.2)."""
    converted = lambda_message_attributes(
        {
            "Author": {"StringValue": "John Grisham", "DataType": "String"},
            "WeeksOn": {"StringValue": "6", "DataType": "Number"},
            "Blob": {"BinaryValue": b"1100", "DataType": "Binary"},
            "Trace": {"StringValue": "9f3c", "DataType": "String.uuid"},
            "Lists": {
                "StringListValues": ["a", "b"],
                "BinaryListValues": [b"\x00", b"\xff"],
                "DataType": "String",
            },
        }
    )
    assert converted == {
        "Author": {
            "stringValue": "John Grisham",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "WeeksOn": {
            "stringValue": "6",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "Blob": {
            "binaryValue": "MTEwMA==",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
        "Trace": {
            "stringValue": "9f3c",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String.uuid",
        },
        "Lists": {
            "stringListValues": ["a", "b"],
            "binaryListValues": ["AA==", "/w=="],
            "dataType": "String",
        },
    }


def test_standard_record_fields_for_the_pipeline() -> None:
    """item_id is the messageId (the partial batch response identifier, 5.2), arrival the
    SentTimestamp in seconds, handle the receipt handle; standard queues have no lane.
    The body is passed through exactly, never parsed."""
    message = sample_message(0)
    message["Body"] = 'text with "quotes", \\ and ünïcödé'
    record = MessageRecords(QUEUE_ARN, fifo=False).record(message)
    assert record.item_id == message["MessageId"]
    assert record.handle == message["ReceiptHandle"]
    assert record.arrival == int(message["Attributes"]["SentTimestamp"]) / 1000
    assert record.lane is None
    assert record.partition == "orders"
    assert record.payload["body"] == message["Body"]
    assert record.payload["attributes"] == message["Attributes"]
    assert record.payload["awsRegion"] == "eu-west-1"
    validated(parsed([record]))


def test_fifo_records_are_partitioned_by_message_group_and_keep_fifo_attributes() -> None:
    """FIFO (1.3): partition = MessageGroupId, lane = crc32(group) % lanes, position the
    SequenceNumber; SequenceNumber, MessageGroupId and MessageDeduplicationId stay in
    `attributes` as strings, and the event passes SqsModel."""
    builder = MessageRecords(FIFO_ARN, fifo=True, lanes=3)
    messages = [fifo_message("g-a", 1, "a1"), fifo_message("g-b", 2, "b1")]
    records = [builder.record(message) for message in messages]
    for record, message in zip(records, messages, strict=True):
        group = message["Attributes"]["MessageGroupId"]
        assert record.partition == group
        assert record.lane == zlib.crc32(group.encode()) % 3
        assert record.position == int(message["Attributes"]["SequenceNumber"])
    event = parsed(records)
    model = validated(event)
    assert [item.attributes.MessageGroupId for item in model.Records] == ["g-a", "g-b"]
    assert event["Records"][0]["attributes"]["SequenceNumber"] == "18849496460467696129"
    assert event["Records"][0]["attributes"]["MessageDeduplicationId"] == "dedup-1"
    assert event["Records"][0]["eventSourceARN"] == FIFO_ARN


def test_item_identifiers_are_non_empty_strings() -> None:
    """A batchItemFailures itemIdentifier must be a messageId: a non-empty string (5.2)."""
    formatter = SqsEventFormatter()
    assert formatter.parse_item_identifier("059f36b4") == "059f36b4"
    for malformed in ("", None, 7, {"id": "x"}):
        assert formatter.parse_item_identifier(malformed) is None


def test_batch_info_names_the_queue_and_the_messages() -> None:
    """The failure record of an undeliverable message says which queue and messages."""
    builder = MessageRecords(QUEUE_ARN, fifo=False)
    records = [builder.record(sample_message(index)) for index in range(3)]
    key, info = SqsEventFormatter().batch_info(records)
    assert key == "SQSBatchInfo"
    assert info["queueArn"] == QUEUE_ARN
    assert info["batchSize"] == 3
    assert info["firstMessageId"] == records[0].item_id
    assert info["lastMessageId"] == records[2].item_id


# -- settings -------------------------------------------------------------------------


def test_source_needs_exactly_one_of_queue_url_and_queue_arn() -> None:
    """Neither or both of queue_url / queue_arn is a config error; a malformed ARN too."""
    with pytest.raises(ValidationError, match="exactly one"):
        SqsSourceConfig.model_validate({"type": "sqs"})
    with pytest.raises(ValidationError, match="exactly one"):
        source_config(queue_arn=QUEUE_ARN)
    with pytest.raises(ValidationError):
        SqsSourceConfig.model_validate({"type": "sqs", "queue_arn": "arn:aws:sns:x"})
    with pytest.raises(ValidationError):
        source_config(wait_time_seconds=21)
    assert source_config().wait_time_seconds == 20
    assert SqsSourceConfig.family is QUEUE


def test_fifo_is_known_offline_from_the_queue_name() -> None:
    """A queue whose name ends in .fifo is FIFO, named by URL or by ARN; the SQS region
    comes from the ARN or an amazonaws.com URL unless `region` is set."""
    assert source_config(queue_url="http://localhost:4566/000000000000/jobs.fifo").fifo
    by_arn = SqsSourceConfig.model_validate({"type": "sqs", "queue_arn": FIFO_ARN})
    assert by_arn.fifo
    assert by_arn.queue_region("us-east-1") == "eu-west-1"
    assert not source_config().fifo
    assert source_config().queue_region("us-east-1") == "eu-west-1"
    assert source_config(region="ap-south-1").queue_region("us-east-1") == "ap-south-1"
    assert (
        source_config().source_id() == "sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    )


def test_destination_must_be_a_standard_queue() -> None:
    """AWS accepts only standard queues as on-failure destinations (10.1)."""
    with pytest.raises(ValidationError, match="standard queue"):
        SqsDestinationConfig.model_validate({"type": "sqs", "queue_arn": FIFO_ARN})
    with pytest.raises(ValidationError, match="exactly one"):
        SqsDestinationConfig.model_validate({"type": "sqs"})
    assert SqsDestinationConfig.model_validate({"type": "sqs", "queue_arn": QUEUE_ARN}).queue_arn


def test_fifo_mappings_take_at_most_ten_records_and_no_batching_window() -> None:
    """FIFO: batch_size at most 10 and maximum_batching_window_in_seconds does not apply
    (esm-reference.md 5.3)."""
    fifo = source_config(queue_url="https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo")
    assert fifo.check_mapping(mapping(fifo, batch_size=10)) == []
    problems = fifo.check_mapping(
        mapping(fifo, batch_size=11, maximum_batching_window_in_seconds=2)
    )
    assert [path for path, _ in problems] == [
        ("batch_size",),
        ("maximum_batching_window_in_seconds",),
    ]


def test_standard_batches_above_ten_need_a_batching_window_of_a_second() -> None:
    """Standard queues: batch_size above 10 needs maximum_batching_window_in_seconds >= 1
    (esm-reference.md 2)."""
    standard = source_config()
    assert standard.check_mapping(mapping(standard)) == []
    assert standard.check_mapping(mapping(standard, batch_size=10)) == []
    problems = standard.check_mapping(mapping(standard, batch_size=100))
    assert [path for path, _ in problems] == [("maximum_batching_window_in_seconds",)]
    assert (
        standard.check_mapping(
            mapping(standard, batch_size=10_000, maximum_batching_window_in_seconds=1)
        )
        == []
    )

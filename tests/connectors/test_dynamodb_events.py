"""The DynamoDB Streams event shape (esm-reference.md 1.5), lanes (13), DDBStreamBatchInfo
(10.1) and the `dynamodb-streams` and `dynamodb` checkpoint store settings, without a
service."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import zlib
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
)
from pydantic import ValidationError

from bridge.codec import dumps, loads
from bridge.config.plugins import Identity
from bridge.failures import failure_document
from bridge.records import FailureCondition, FailureRecord, InvokeResult
from connectors.dynamodb.config import DynamoDBCheckpointStoreConfig, DynamoDBStreamsSourceConfig
from connectors.dynamodb.events import DynamoDBRecords, DynamoDBStreamsFormatter, to_json

ARN = "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291"
SHARD = "shardId-00000001573689847184-864758bb"


def change(sequence: str = "222", **fields: Any) -> dict[str, Any]:
    """A record as botocore's GetRecords returns it (timestamps as datetimes, binary
    attribute values as bytes)."""
    body = {
        "ApproximateCreationDateTime": dt.datetime(2023, 9, 6, 10, 45, 55, tzinfo=dt.UTC),
        "Keys": {"Id": {"N": "101"}},
        "SequenceNumber": sequence,
        "SizeBytes": 59,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        **fields,
    }
    return {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": "MODIFY",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
    }


def validate(event: dict[str, Any]) -> DynamoDBStreamModel:
    """Validate a copy: the Powertools models decode fields of the dict they are given."""
    return DynamoDBStreamModel.model_validate(copy.deepcopy(event))


def test_record_is_exactly_the_documented_shape() -> None:
    """esm-reference.md 1.5: eventVersion 1.1, the stream's region and ARN (which
    GetRecords leaves out), creation time in epoch seconds, images as DynamoDB JSON."""
    raw = change(
        OldImage={"Message": {"S": "New item!"}, "Id": {"N": "101"}},
        NewImage={"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
    )
    records = DynamoDBRecords(stream_arn=ARN, region="us-west-2").records(SHARD, [raw])
    event = loads(DynamoDBStreamsFormatter(ARN).encode_event(records))
    assert event == {
        "Records": [
            {
                "eventID": "c4ca4238a0b923820dcc509a6f75849b",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-west-2",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1693997155.0,
                    "Keys": {"Id": {"N": "101"}},
                    "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                    "OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                    "SequenceNumber": "222",
                    "SizeBytes": 59,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": ARN,
            }
        ]
    }
    parsed = validate(event).Records[0]
    assert parsed.dynamodb.NewImage == {"Message": "This item has changed", "Id": 101}
    [record] = records
    assert (record.partition, record.position, record.item_id) == (SHARD, 222, "222")
    assert record.arrival == 1693997155.0 and record.lane == SHARD


def test_binary_attributes_go_back_to_base64_and_ttl_identity_is_kept() -> None:
    """B and BS values (bytes from botocore), nested in maps and lists too, are base64 as
    on the wire; a TTL removal keeps `userIdentity` in Lambda's lower-case keys."""
    blob = b"\x00\xffpng"
    raw = change(
        Keys={"Id": {"B": blob}},
        OldImage={
            "Id": {"B": blob},
            "Parts": {"L": [{"M": {"thumb": {"B": b"\x01"}}}, {"BS": [b"a", b"\x02"]}]},
        },
    )
    raw["eventName"] = "REMOVE"
    raw["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    [record] = DynamoDBRecords(stream_arn=ARN, region="us-west-2").records(SHARD, [raw])
    payload = record.payload
    assert payload["dynamodb"]["Keys"] == {"Id": {"B": base64.b64encode(blob).decode()}}
    parts = payload["dynamodb"]["OldImage"]["Parts"]["L"]
    assert parts[0] == {"M": {"thumb": {"B": "AQ=="}}}
    assert parts[1] == {"BS": ["YQ==", "Ag=="]}
    assert payload["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert "NewImage" not in payload["dynamodb"]
    parsed = validate({"Records": [payload]}).Records[0]
    assert parsed.userIdentity is not None and parsed.dynamodb.OldImage is not None


def test_parallelization_factor_gives_each_item_one_lane() -> None:
    """With a factor above 1 the lane is (shard, crc32 of the item's key JSON % factor),
    whatever order the key attributes come in (esm-reference.md 13)."""
    builder = DynamoDBRecords(stream_arn=ARN, region="us-west-2", parallelization_factor=4)
    keys = [{"pk": {"S": f"user-{n % 5}"}, "sk": {"N": str(n % 2)}} for n in range(20)]
    raws = [change(str(100 + n), Keys=key) for n, key in enumerate(keys)]
    records = builder.records(SHARD, raws)
    for record, key in zip(records, keys, strict=True):
        assert record.lane == (SHARD, zlib.crc32(to_json(key, sort_keys=True)) % 4)
    reordered = builder.record(
        SHARD, change("999", Keys={"sk": keys[3]["sk"], "pk": keys[3]["pk"]})
    )
    assert reordered.lane == records[3].lane
    assert len({record.lane for record in records}) > 1


def test_batch_info_has_second_precision() -> None:
    """DDBStreamBatchInfo as in esm-reference.md 10.1, arrival times to the second; the
    Powertools on-failure destination model accepts the whole failure record."""
    raws = [change("800000000003126276362"), change("800000000003126276399")]
    raws[1]["dynamodb"]["ApproximateCreationDateTime"] = 1573690399.7
    records = DynamoDBRecords(stream_arn=ARN, region="us-west-2").records(SHARD, raws)
    formatter = DynamoDBStreamsFormatter(ARN)
    failure = FailureRecord(
        mapping="m",
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        records=records,
        approximate_invoke_count=2,
        function_arn="arn:aws:lambda:us-west-2:111122223333:function:f",
        timestamp=1573690400.25,
        last_result=InvokeResult(b"{}", "req-1", function_error="Unhandled"),
    )
    document = loads(dumps(failure_document(failure, formatter, include_payload=False)))
    assert document["DDBStreamBatchInfo"] == {
        "shardId": SHARD,
        "startSequenceNumber": "800000000003126276362",
        "endSequenceNumber": "800000000003126276399",
        "approximateArrivalOfFirstRecord": "2023-09-06T10:45:55Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
        "batchSize": 2,
        "streamArn": ARN,
    }
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(copy.deepcopy(document))


def test_sample_event_validates_with_all_three_event_names() -> None:
    """`generate-event dynamodb-streams` output passes the strict Powertools model."""
    event = loads(DynamoDBStreamsSourceConfig.sample_event(6, Identity()))
    parsed = validate(event)
    assert [item.eventName for item in parsed.Records[:3]] == ["INSERT", "MODIFY", "REMOVE"]
    assert parsed.Records[2].dynamodb.NewImage is None
    assert parsed.Records[0].dynamodb.OldImage is None


def test_source_settings() -> None:
    """Exactly one of table and stream_arn; only TRIM_HORIZON and LATEST (DynamoDB has
    no AT_TIMESTAMP, esm-reference.md 2); a new table name is a new source_id."""

    def config(**settings: Any) -> DynamoDBStreamsSourceConfig:
        return DynamoDBStreamsSourceConfig.model_validate(
            {"type": "dynamodb-streams", "starting_position": "LATEST", **settings}
        )

    with pytest.raises(ValidationError, match="either table or stream_arn"):
        config()
    with pytest.raises(ValidationError, match="either table or stream_arn"):
        config(table="orders", stream_arn=ARN)
    with pytest.raises(ValidationError):
        config(table="orders", starting_position="AT_TIMESTAMP")
    assert config(table="orders").source_id() != config(table="invoices").source_id()
    assert config(stream_arn=ARN).source_id().endswith(ARN)


def test_checkpoint_store_settings() -> None:
    """The store needs a valid table name; creating the table is opt-in."""
    store = DynamoDBCheckpointStoreConfig.model_validate({"type": "dynamodb", "table": "positions"})
    assert store.create_table is False and store.flush_interval_seconds == 1.0
    with pytest.raises(ValidationError):
        DynamoDBCheckpointStoreConfig.model_validate({"type": "dynamodb", "table": "a b"})

"""AWS's recorded answers of the event source mapping API (Create, Get, Update, Delete and
their errors) compared with what lambda-bridge's API answers for the same calls: one
daemon with Lambda's API over moto's SQS, Kinesis and DynamoDB Streams, each case making
its own queue, stream or table. Responses are compared as boto3 returns them, with
`ResponseMetadata` cut to the status code as the recordings keep it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conformance.esm_api import ACCOUNT, REGION, Api, compare, serve, stream_arn
from tests.e2e import aws_helpers as aws
from tests.support import wait_for


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, aws_endpoint: str) -> Iterator[Api]:
    yield from serve(tmp_path_factory, aws_endpoint)


def test_sqs_duplicate_event_source_mappings(api: Api) -> None:
    """Create answers `Creating` with SQS's fields; the same function and queue again is
    409 naming the existing UUID."""
    _, queue = aws.new_queue(api.endpoint)
    create: Callable[[], dict[str, Any]] = lambda: api.call(  # noqa: E731
        "create_event_source_mapping", FunctionName="function-one", EventSourceArn=queue
    )
    compare("sqs", "test_duplicate_event_source_mappings", {"create": create(), "error": create()})


def test_sqs_event_source_mapping_default_batch_size(api: Api) -> None:
    """SQS's default BatchSize 10; 11 without a batching window refused on update and create."""
    _, queue = aws.new_queue(api.endpoint)
    created = api.call(
        "create_event_source_mapping", FunctionName="function-one", EventSourceArn=queue
    )
    invalid_update = api.call("update_event_source_mapping", UUID=created["UUID"], BatchSize=11)
    _, other = aws.new_queue(api.endpoint)
    invalid_create = api.call(
        "create_event_source_mapping",
        FunctionName="function-one",
        EventSourceArn=other,
        BatchSize=11,
    )
    compare(
        "sqs",
        "test_event_source_mapping_default_batch_size",
        {
            "create-event-source-mapping": created,
            "invalid-update-event-source-mapping": invalid_update,
            "invalid-create-event-source-mapping": invalid_create,
        },
    )


def test_sqs_event_source_mapping_exceptions(api: Api) -> None:
    """Unknown UUIDs 404; no EventSourceArn, an unknown function and OnSuccess on SQS 400."""
    unknown = "00000000-0000-4000-8000-000000000000"
    _, queue = aws.new_queue(api.endpoint)
    compare(
        "sqs",
        "test_event_source_mapping_exceptions",
        {
            "get_unknown_uuid": api.call("get_event_source_mapping", UUID=unknown),
            "delete_unknown_uuid": api.call("delete_event_source_mapping", UUID=unknown),
            "update_unknown_uuid": api.call(
                "update_event_source_mapping", UUID=unknown, Enabled=False
            ),
            "create_no_event_source_arn": api.call(
                "create_event_source_mapping", FunctionName="function-one"
            ),
            "create_unknown_params": api.call(
                "create_event_source_mapping", FunctionName="no-such", EventSourceArn=queue
            ),
            "destination_config_failure": api.call(
                "create_event_source_mapping",
                FunctionName="function-one",
                EventSourceArn=queue,
                DestinationConfig={"OnSuccess": {"Destination": api.failures_arn}},
            ),
        },
    )


def test_sqs_esm_with_not_existing_sqs_queue(api: Api) -> None:
    """A queue SQS does not know: Create is refused in the words of SQS's error."""
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{aws.unique('not-there')}"
    error = api.call(
        "create_event_source_mapping",
        FunctionName="function-one",
        EventSourceArn=missing,
        BatchSize=1,
    )
    compare("sqs", "test_esm_with_not_existing_sqs_queue", {"error": error})


def test_sqs_fifo_message_group_parallelism(api: Api) -> None:
    """Created disabled over a FIFO queue holding five messages of one group: `Disabled`;
    enabled by Update: `Enabling`, then `Enabled`. The recording holds these answers
    only; the five messages reaching the function in order is checked besides."""
    url, queue = aws.new_queue(api.endpoint, fifo=True, visibility=60)
    created = api.call(
        "create_event_source_mapping",
        FunctionName="function-two",
        EventSourceArn=queue,
        BatchSize=1,
        Enabled=False,
    )
    aws.send(api.endpoint, url, [{"n": n} for n in range(5)], group="one-group")
    enabling = api.call("update_event_source_mapping", UUID=created["UUID"], Enabled=True)
    enabled = api.call("get_event_source_mapping", UUID=created["UUID"])
    compare(
        "sqs",
        "test_fifo_message_group_parallelism",
        {
            "create_esm_disabled": created,
            "update_esm_enabling": enabling,
            "get_esm_enabled": enabled,
        },
    )
    bodies = lambda: [  # noqa: E731
        json.loads(record["body"])["n"]
        for event in api.events("function-two")
        for record in event["Records"]
        if record["eventSourceARN"] == queue
    ]
    assert wait_for(lambda: len(bodies()) >= 5, what="the five messages") and bodies() == [
        0,
        1,
        2,
        3,
        4,
    ]
    api.call("delete_event_source_mapping", UUID=created["UUID"])


def test_kinesis_duplicate_event_source_mappings(api: Api) -> None:
    """A Kinesis mapping shows the stream defaults (-1 retries and age, OnFailure {} ...);
    the same function and stream again is 409 in Kinesis's words."""
    stream = stream_arn(api.endpoint)
    arguments = {
        "FunctionName": "function-two",
        "EventSourceArn": stream,
        "StartingPosition": "LATEST",
    }
    create = api.call("create_event_source_mapping", **arguments)
    error = api.call("create_event_source_mapping", **arguments)
    compare("kinesis", "test_duplicate_event_source_mappings", {"create": create, "error": error})


def test_kinesis_create_event_source_validation(api: Api) -> None:
    """No StartingPosition is an InvalidParameterValueException; an unknown one a
    ValidationException listing the three positions."""
    stream = stream_arn(api.endpoint)
    base = {"FunctionName": "function-one", "EventSourceArn": stream}
    compare(
        "kinesis",
        "test_create_event_source_validation_kinesis",
        {
            "no_starting_position": api.call("create_event_source_mapping", **base),
            "invalid_starting_position": api.call(
                "create_event_source_mapping", **base, StartingPosition="invalid"
            ),
        },
    )


def test_dynamodb_event_source_mapping_lifecycle(api: Api) -> None:
    """Create, Get and Delete of a DynamoDB Streams mapping with an SQS on-failure
    destination: every default AWS shows, `Creating`, `Enabled`, `Deleting`."""
    _, stream = aws.new_table(api.endpoint)
    created = api.call(
        "create_event_source_mapping",
        FunctionName="function-one",
        EventSourceArn=stream,
        BatchSize=1,
        StartingPosition="TRIM_HORIZON",
        MaximumBatchingWindowInSeconds=1,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": api.failures_arn}},
    )
    got = api.call("get_event_source_mapping", UUID=created["UUID"])
    deleted = api.call("delete_event_source_mapping", UUID=created["UUID"])
    compare(
        "dynamodb",
        "test_event_source_mapping_lifecycle",
        {"create_response": created, "get_response": got, "delete_response": deleted},
    )

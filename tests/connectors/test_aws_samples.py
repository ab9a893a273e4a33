"""The sample events of `generate-event s3` and `generate-event sns` have the shapes
Lambda delivers (esm-reference.md 1.10), checked with powertools' models."""

from __future__ import annotations

import copy
import json

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model, SnsModel

from bridge.config.plugins import Identity
from connectors.files.notifications import sample_event as s3_sample
from connectors.sns.events import sample_event as sns_sample

IDENTITY = Identity(region="eu-central-1", account_id="123456789012")


@pytest.mark.parametrize("count", [1, 5])
def test_s3_sample_is_an_s3_event(count: int) -> None:
    """`count` S3 notifications that S3Model accepts, in the identity's region, with
    form-encoded keys, growing sequencers, and size/eTag only on created objects."""
    event = json.loads(s3_sample(count, IDENTITY))
    S3Model.model_validate(copy.deepcopy(event))
    records = event["Records"]
    assert len(records) == count
    assert {record["awsRegion"] for record in records} == {"eu-central-1"}
    assert records[0]["eventName"] == "ObjectCreated:Put"
    assert records[0]["s3"]["object"]["key"] == "reports/2026+report+0.csv"
    assert "size" in records[0]["s3"]["object"]
    sequencers = [record["s3"]["object"]["sequencer"] for record in records]
    assert sequencers == sorted(sequencers)
    assert len(set(sequencers)) == count
    if count > 2:
        removed = records[2]
        assert removed["eventName"] == "ObjectRemoved:Delete"
        assert "size" not in removed["s3"]["object"]
        assert "eTag" not in removed["s3"]["object"]


@pytest.mark.parametrize("count", [1, 4])
def test_sns_sample_is_an_sns_event(count: int) -> None:
    """`count` SNS notifications that SnsModel accepts: Lambda's casing (SigningCertUrl,
    UnsubscribeUrl), the identity's region and account in the ARNs, JSON messages with
    attributes, and the same bytes on every call."""
    raw = sns_sample(count, IDENTITY)
    assert sns_sample(count, IDENTITY) == raw
    event = json.loads(raw)
    SnsModel.model_validate(copy.deepcopy(event))
    records = event["Records"]
    assert len(records) == count
    topic_arn = "arn:aws:sns:eu-central-1:123456789012:orders"
    for record in records:
        assert record["EventSource"] == "aws:sns"
        assert record["EventVersion"] == "1.0"
        assert record["EventSubscriptionArn"].startswith(f"{topic_arn}:")
        notification = record["Sns"]
        assert notification["TopicArn"] == topic_arn
        assert notification["Type"] == "Notification"
        assert notification["SigningCertUrl"].startswith("https://sns.eu-central-1.amazonaws.com/")
        assert "SubscriptionArn=" in notification["UnsubscribeUrl"]
        assert notification["MessageAttributes"]["source"] == {"Type": "String", "Value": "web"}
        assert json.loads(notification["Message"])["status"] == "created"
    assert len({record["Sns"]["MessageId"] for record in records}) == count
    assert records[0]["Sns"]["Subject"] == "Order created"

"""The `rabbitmq` source's event (esm-reference.md 1.8) and settings, without a server.

The event is checked field by field against the RabbitMQ samples of four projects that
carry Lambda's events (../shared/conformance/sample-events/*rmq*), built from a message
with the same properties.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.config.plugins import Identity
from bridge.pipeline.settings import resolve
from connectors.rabbitmq.config import RabbitMqSourceConfig
from connectors.rabbitmq.events import (
    QueueRecords,
    RabbitMqEventFormatter,
    SampleProperties,
    header_value,
    java_date,
)
from tests.conformance.snapshots import conformance_dir, missing_recordings
from tests.unit.config_support import problems

SHARED = conformance_dir()
SAMPLES = SHARED / "sample-events" if SHARED is not None else Path("absent")
SAMPLE_FILES = sorted(SAMPLES.glob("*rmq*.json")) + sorted(SAMPLES.glob("*rabbitmq*.json"))


class Properties(SampleProperties):
    def __init__(self, **values: Any) -> None:
        super().__init__(0)
        for name in vars(self):
            setattr(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)


def sample_like(sample: dict[str, Any]) -> bytes:
    """The event our formatter makes of a message with the sample's properties."""
    [(key, [message])] = sample["rmqMessagesByQueue"].items()
    queue, _, vhost = key.partition("::")
    given = message["basicProperties"]
    headers = {
        name: bytes(value["bytes"]).decode() if isinstance(value, dict) else value
        for name, value in given["headers"].items()
    }
    properties = Properties(
        content_type=given["contentType"],
        headers=headers,
        delivery_mode=given["deliveryMode"],
        priority=given["priority"],
        expiration=given["expiration"],
        # "Jan 1, 1970, 12:33:41 AM"
        timestamp=dt.datetime.fromtimestamp(33 * 60 + 41, dt.UTC),
        user_id=given["userId"],
    )
    body = base64.b64decode(message["data"])
    record = QueueRecords(queue, vhost).record(1, properties, body, message["redelivered"])
    return RabbitMqEventFormatter(sample["eventSourceArn"]).encode_event([record])


def test_the_samples_are_there() -> None:
    if SHARED is None:
        missing_recordings()
    assert len(SAMPLE_FILES) >= 4, SAMPLES


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_event_matches_each_sample_field_by_field(path: Path) -> None:
    """Every key, value and key order of the sample, from the envelope down to each
    basic property (nulls included) and `bodySize`."""
    sample = json.loads(path.read_text())
    built = json.loads(sample_like(sample))
    # The samples say `bodySize: 80` beside a 43-byte `data` (AWS's documentation example,
    # copied by all four): ours is the body's length.
    [theirs] = next(iter(sample["rmqMessagesByQueue"].values()))
    assert theirs["basicProperties"]["bodySize"] == 80
    assert len(base64.b64decode(theirs["data"])) == 43
    theirs["basicProperties"]["bodySize"] = 43
    assert list(built) == list(sample) == ["eventSource", "eventSourceArn", "rmqMessagesByQueue"]
    assert built["eventSource"] == "aws:rmq"
    assert built["eventSourceArn"] == sample["eventSourceArn"]
    assert list(built["rmqMessagesByQueue"]) == list(sample["rmqMessagesByQueue"])
    [ours] = next(iter(built["rmqMessagesByQueue"].values()))
    [theirs] = next(iter(sample["rmqMessagesByQueue"].values()))
    assert list(ours) == list(theirs) == ["basicProperties", "redelivered", "data"]
    assert list(ours["basicProperties"]) == list(theirs["basicProperties"])
    for name, value in theirs["basicProperties"].items():
        assert ours["basicProperties"][name] == value, name
    assert ours["redelivered"] is theirs["redelivered"]
    assert ours["data"] == theirs["data"]
    assert built == sample


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (dt.datetime(1970, 1, 1, 0, 33, 41, tzinfo=dt.UTC), "Jan 1, 1970, 12:33:41 AM"),
        (dt.datetime(2026, 12, 7, 12, 0, 5, tzinfo=dt.UTC), "Dec 7, 2026, 12:00:05 PM"),
        (dt.datetime(2026, 9, 21, 23, 59, 59, tzinfo=dt.UTC), "Sep 21, 2026, 11:59:59 PM"),
        # A moment in another zone is written in UTC.
        (
            dt.datetime(2026, 5, 1, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "May 1, 2026, 1:04:05 AM",
        ),
        # pamqp gives naive datetimes, in UTC.
        (dt.datetime(2024, 2, 29, 13, 7, 0), "Feb 29, 2024, 1:07:00 PM"),
    ],
)
def test_dates_are_written_as_gson_writes_a_java_date(moment: dt.datetime, text: str) -> None:
    assert java_date(moment) == text


def test_header_values_as_lambda_writes_them() -> None:
    """Strings are byte arrays of signed Java bytes; numbers and booleans stay; tables
    and arrays are converted inside; a timestamp is a date string."""
    assert header_value("value1") == {"bytes": [118, 97, 108, 117, 101, 49]}
    assert header_value("é") == {"bytes": [-61, -87]}
    assert header_value(b"\x00\xff") == {"bytes": [0, -1]}
    assert header_value(10) == 10
    assert header_value(2.5) == 2.5
    assert header_value(True) is True
    assert header_value(None) is None
    assert header_value(Decimal("12.50")) == 12.5
    assert header_value(Decimal("7")) == 7
    assert header_value(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) == "Jan 1, 1970, 12:00:00 AM"
    assert header_value({"inner": "a", "n": [1, "b"]}) == {
        "inner": {"bytes": [97]},
        "n": [1, {"bytes": [98]}],
    }


def test_a_message_without_properties_has_every_field_null() -> None:
    record = QueueRecords("q", "/").record(7, Properties(), b"", redelivered=True)
    payload = record.payload
    assert payload["redelivered"] is True
    assert payload["data"] == ""
    properties = payload["basicProperties"]
    assert properties.pop("bodySize") == 0
    assert set(properties.values()) == {None}
    assert len(properties) == 14
    assert (record.partition, record.item_id, record.handle) == ("q::/", 7, 7)


def test_records_of_several_queues_are_grouped_by_queue_and_vhost() -> None:
    first, second = QueueRecords("a", "/"), QueueRecords("b", "shop")
    records = [
        first.record(1, Properties(), b"1", False),
        second.record(2, Properties(), b"2", False),
        first.record(3, Properties(), b"3", False),
    ]
    event = json.loads(RabbitMqEventFormatter("arn:x").encode_event(records))
    grouped = event["rmqMessagesByQueue"]
    assert list(grouped) == ["a::/", "b::shop"]
    assert [base64.b64decode(m["data"]) for m in grouped["a::/"]] == [b"1", b"3"]


def test_no_partial_batch_responses() -> None:
    """Amazon MQ mappings have no ReportBatchItemFailures (esm-reference.md 8, 9)."""
    formatter = RabbitMqEventFormatter("arn:x")
    assert formatter.parse_item_identifier("1") is None
    assert formatter.parse_item_identifier({"itemIdentifier": 1}) is None


def test_envelope_bound_covers_long_queue_names() -> None:
    formatter = RabbitMqEventFormatter("arn:aws:mq:us-east-1:000000000000:broker:b:b-1")
    record = QueueRecords("q" * 255, "v" * 255).record(1, Properties(), b"x", False)
    event = formatter.encode_event([record])
    assert len(event) - record.size <= formatter.envelope_bytes


# -- settings -----------------------------------------------------------------------------


def config(**settings: Any) -> RabbitMqSourceConfig:
    settings.setdefault("url", "amqp://app:s3cret@broker.internal:5672/")
    settings.setdefault("queues", ["orders"])
    return RabbitMqSourceConfig(type="rabbitmq", **settings)


def test_virtual_host_from_the_url_or_the_setting() -> None:
    assert config().vhost == "/"
    assert config(url="amqp://broker").vhost == "/"
    assert config(url="amqp://broker/shop%2Feu").vhost == "shop/eu"
    assert config(virtual_host="shop").vhost == "shop"
    assert config(url="amqp://broker/shop", virtual_host="shop").vhost == "shop"
    with pytest.raises(ValidationError, match="give it once"):
        config(url="amqp://broker/shop", virtual_host="other")


def test_credentials_from_the_url_or_the_settings_never_shown() -> None:
    from_url = config()
    assert from_url.connection_url() == "amqp://app:s3cret@broker.internal:5672/%2F"
    separate = config(url="amqps://broker.internal:5671/shop", username="u@x", password="p:w/d")
    assert separate.connection_url() == "amqps://u%40x:p%3Aw%2Fd@broker.internal:5671/shop"
    for each in (from_url, separate):
        for shown in (each.redacted_url(), each.source_id(), repr(each), str(each.model_dump())):
            assert "s3cret" not in shown
            assert "p:w/d" not in shown


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://broker"}, "amqp:// or amqps://"),
        ({"url": "amqp://broker:port"}, "invalid port"),
        ({"queues": []}, "at least 1"),
        ({"queues": ["a", "b"]}, "at most 1"),
        ({"prefetch_count": 70_000}, "less than or equal to 65535"),
        ({"broker_arn": "arn:aws:sqs:us-east-1:000000000000:q"}, "pattern"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**settings)


def test_broker_arn_is_made_up_from_the_host_and_stays() -> None:
    identity = Identity("eu-west-1", "123456789012")
    arn = config().arn_for(identity)
    assert arn.startswith("arn:aws:mq:eu-west-1:123456789012:broker:broker-internal:b-")
    assert config(url="amqp://other:pw@broker.internal:5672/x").arn_for(identity) == arn
    given = "arn:aws:mq:us-east-2:111122223333:broker:pizza:b-9bcfa592-423a-4942-879d-eb284b418fc8"
    assert config(broker_arn=given).arn_for(identity) == given
    described = config(virtual_host="shop").api_description("m", identity)
    assert described == {
        "EventSourceArn": arn,
        "Queues": ["orders"],
        "SourceAccessConfigurations": [{"Type": "VIRTUAL_HOST", "URI": "shop"}],
    }


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the handler the mappings below name."""
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


MAPPING = """\
functions:
  f:
    invoker: python
    handler: handler.py:handler
mappings:
  - name: orders
    function: f
    source: {type: rabbitmq, url: "amqp://localhost", queues: [orders]}
"""


def test_amazon_mq_defaults(workdir: Path) -> None:
    """Batches of 100 gathered for 0.5 s from the first record (esm-reference.md 2, 3),
    one batch at a time (13)."""
    from bridge.config.loading import load_config_text

    settings = resolve(load_config_text(MAPPING, "bridge.yaml", environ={}).config.mappings[0])
    assert settings.batch.max_records == 100
    assert settings.batch.window == 0.5
    assert settings.batch.window_from_first_record
    assert settings.maximum_concurrency == 1
    assert not settings.retry.report_batch_item_failures


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "function_response_types: [ReportBatchItemFailures]",
            "function_response_types: does not apply",
        ),
        ("maximum_retry_attempts: 3", "maximum_retry_attempts: does not apply"),
        ("bisect_batch_on_function_error: true", "bisect_batch_on_function_error: does not apply"),
        ("destination_config: {on_failure: {destination: x}}", "destination_config"),
        ("batch_size: 10001", "batch_size: Input should be less than or equal to 10000"),
    ],
)
def test_settings_amazon_mq_does_not_take(line: str, message: str, workdir: Path) -> None:
    """No retries, bisecting, partial batch responses or destinations (esm-reference.md 8)."""
    text = MAPPING.replace("    function: f\n", f"    function: f\n    {line}\n")
    found = problems(text)
    assert any(message in problem for problem in found), found


def test_concurrency_is_a_setting(workdir: Path) -> None:
    from bridge.config.loading import load_config_text

    text = MAPPING.replace("    function: f\n", "    function: f\n    maximum_concurrency: 3\n")
    mapping = load_config_text(text, "bridge.yaml", environ={}).config.mappings[0]
    assert resolve(mapping).maximum_concurrency == 3

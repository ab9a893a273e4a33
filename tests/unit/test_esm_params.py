"""CreateEventSourceMapping's parameters as config mappings, checked by the config file's
own models, and described back in AWS's shape per source type (esm-reference.md 2, 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loading import load_config_text
from bridge.config.model import ApiAwsConfig, BridgeConfig
from bridge.frontdoor.errors import ApiError
from bridge.frontdoor.esm_describe import describe
from bridge.frontdoor.esm_params import problem_text, settings_of, source_of
from bridge.frontdoor.overlay import MappingInvalid, build_mapping, config_uuid, merged

CONFIG = """\
aws: {region: eu-west-1, account_id: "123456789012"}
functions:
  f: {invoker: python, handler: handler.py:handler}
"""
KINESIS = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"
TABLE_STREAM = "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"


@pytest.fixture
def config(tmp_path: Path) -> BridgeConfig:
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return None\n")
    return load_config_text(CONFIG, "bridge.yaml", handler_root=tmp_path).config


def made(config: BridgeConfig, body: dict[str, object]) -> dict[str, object]:
    source = source_of(body, "7b1d6f1e-0000-4000-8000-000000000001", ApiAwsConfig())
    entry = merged({"name": "m", "function": "f", "source": source}, settings_of(body, config))
    mapping = build_mapping(config, entry)
    return describe(config, mapping, mapping_uuid="u", runner=None, last_modified=1.0)


def test_kafka_is_made_of_self_managed_endpoints_and_one_topic(config: BridgeConfig) -> None:
    """AWS's Kafka defaults: TRIM_HORIZON, a consumer group named by the mapping's UUID,
    BatchSize 100, `USER_INITIATED`, and no stream-only field left unset."""
    described = made(
        config,
        {
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k:9092"]}},
            "Topics": ["orders"],
        },
    )
    assert described["Topics"] == ["orders"]
    assert described["StartingPosition"] == "TRIM_HORIZON"
    assert described["SelfManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "7b1d6f1e-0000-4000-8000-000000000001"
    }
    assert (described["BatchSize"], described["StateTransitionReason"]) == (100, "USER_INITIATED")
    assert "MaximumRetryAttempts" not in described and "EventSourceArn" not in described


def test_streams_show_every_default_aws_shows(config: BridgeConfig) -> None:
    """Kinesis and DynamoDB Streams: -1 retries and age, factor 1, no bisect, window 0,
    `DestinationConfig: {"OnFailure": {}}`, `User action`, `No records processed`."""
    for arn in (KINESIS, TABLE_STREAM):
        described = made(config, {"EventSourceArn": arn, "StartingPosition": "LATEST"})
        assert described["EventSourceArn"] == arn
        assert {
            key: described[key]
            for key in (
                "BatchSize",
                "MaximumRetryAttempts",
                "MaximumRecordAgeInSeconds",
                "ParallelizationFactor",
                "BisectBatchOnFunctionError",
                "TumblingWindowInSeconds",
                "DestinationConfig",
                "StateTransitionReason",
                "StartingPosition",
            )
        } == {
            "BatchSize": 100,
            "MaximumRetryAttempts": -1,
            "MaximumRecordAgeInSeconds": -1,
            "ParallelizationFactor": 1,
            "BisectBatchOnFunctionError": False,
            "TumblingWindowInSeconds": 0,
            "DestinationConfig": {"OnFailure": {}},
            "StateTransitionReason": "User action",
            "StartingPosition": "LATEST",
        }


def test_bad_settings_are_told_in_aws_terms(config: BridgeConfig) -> None:
    """A setting out of range names AWS's parameter; AT_TIMESTAMP is refused for DynamoDB;
    a parameter lambda-bridge has no use for is refused by name."""
    with pytest.raises(MappingInvalid) as caught:
        made(config, {"EventSourceArn": KINESIS, "StartingPosition": "LATEST", "BatchSize": 0})
    assert problem_text(caught.value.problems).startswith("BatchSize: ")
    with pytest.raises(ApiError) as refused:
        made(config, {"EventSourceArn": TABLE_STREAM, "StartingPosition": "AT_TIMESTAMP"})
    assert refused.value.code == "InvalidParameterValueException"
    with pytest.raises(ApiError) as unknown:
        made(config, {"EventSourceArn": KINESIS, "StartingPosition": "LATEST", "Tags": {}})
    assert "Tags" in unknown.value.message


def test_config_mapping_uuids_are_stable() -> None:
    """The same name always gives the same UUID, in every version; different names
    different ones."""
    assert config_uuid("orders") == config_uuid("orders") != config_uuid("inbox")
    # Pinned: a changed namespace would give every config mapping a new UUID.
    assert config_uuid("orders") == "ef7436e4-aa78-598c-9987-cd2782de4882"

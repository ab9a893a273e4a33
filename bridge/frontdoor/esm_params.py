"""CreateEventSourceMapping's and UpdateEventSourceMapping's parameters (esm-reference.md
2 and 16) as the settings of a config file mapping, and their problems in AWS's words.

The source comes from `EventSourceArn` (an SQS queue, a Kinesis stream, a DynamoDB
stream) or `SelfManagedEventSource` with `Topics` (Kafka), reached with `api.aws` (an
emulator's endpoint, a region, a profile). The on-failure destination of a request is an
ARN (or `kafka://topic`); it names one of the config file's `destinations` by that ARN
(or by its name).
"""

from __future__ import annotations

import re
from typing import Any

from bridge.asyncinvoke.settings import destination_arn
from bridge.config.esm_names import SCALAR_SETTINGS
from bridge.config.model import ApiAwsConfig, BridgeConfig
from bridge.frontdoor.errors import ApiError, invalid_parameter
from bridge.frontdoor.overlay import Problems

# AWS's parameter -> the config file's key.
SETTINGS = {
    **SCALAR_SETTINGS,
    "FilterCriteria": "filter_criteria",
    "DestinationConfig": "destination_config",
    "ScalingConfig": "scaling_config",
}
PARAMETERS = {key: name for name, key in SETTINGS.items()} | {"function": "FunctionName"}
# Taken by Create only: they choose the source.
SOURCE_PARAMETERS = frozenset(
    {
        "EventSourceArn",
        "StartingPosition",
        "StartingPositionTimestamp",
        "Topics",
        "SelfManagedEventSource",
        "SelfManagedKafkaEventSourceConfig",
    }
)
SUPPORTED = (
    "lambda-bridge's API makes mappings of SQS queues, Kinesis streams and DynamoDB "
    "streams (by EventSourceArn) and of self-managed Kafka (SelfManagedEventSource and Topics)"
)
# In the order Lambda's model lists them (its validation message shows them so).
STARTING_POSITIONS = ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON")
_ARN = re.compile(
    r"arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):\d{12}:(?P<rest>.+)"
)
# Lambda's words for problems the config checks word their own way.
_AWS_WORDING = {
    "must be at least 1 when batch_size is above 10": (
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10"
    ),
    "does not apply to sqs sources": (
        "Unsupported {parameter} parameter for given event source mapping type."
    ),
}
# Lambda answers every pattern it cannot read so, whatever is wrong with it.
_INVALID_PATTERN = ("invalid filter pattern", "Invalid filter pattern definition.")


def settings_of(body: dict[str, Any], config: BridgeConfig) -> dict[str, Any]:
    """The config keys a request sets; None for the ones it removes (`{}` or `""`)."""
    unknown = sorted(set(body) - set(SETTINGS) - SOURCE_PARAMETERS - {"FunctionName", "UUID"})
    if unknown:
        raise invalid_parameter(
            f"lambda-bridge does not support {', '.join(unknown)} (of the event source "
            f"mapping parameters it takes {', '.join(SETTINGS)}, FunctionName and the source)"
        )
    settings: dict[str, Any] = {}
    for name, key in SETTINGS.items():
        if name in body:
            settings[key] = _setting(name, body[name], config)
    return settings


def _setting(name: str, value: Any, config: BridgeConfig) -> Any:
    if name == "FilterCriteria":
        filters = value.get("Filters") if isinstance(value, dict) else None
        if not filters:
            return None
        return {
            "filters": [
                {"pattern": item.get("Pattern") if isinstance(item, dict) else item}
                for item in filters
            ]
        }
    if name == "ScalingConfig":
        if not isinstance(value, dict) or "MaximumConcurrency" not in value:
            return None
        return {"maximum_concurrency": value["MaximumConcurrency"]}
    if name == "DestinationConfig":
        return _destination(value, config)
    return value


def _destination(value: Any, config: BridgeConfig) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        raise invalid_parameter("DestinationConfig must be an object with OnFailure")
    if "OnSuccess" in value:
        raise invalid_parameter(
            "Unsupported DestinationConfig parameter for given event source mapping type."
        )
    target = (value.get("OnFailure") or {}).get("Destination")
    if not target:
        return None
    if target.startswith("kafka://") or target in config.destinations:
        return {"on_failure": {"destination": target}}
    for name, destination in config.destinations.items():
        if destination_arn(config, destination) == target:
            return {"on_failure": {"destination": name}}
    defined = ", ".join(sorted(config.destinations)) or "none"
    raise invalid_parameter(
        f"DestinationConfig.OnFailure.Destination {target!r} is none of the config file's "
        f"destinations (defined: {defined}): declare it there, then name it by its ARN or name"
    )


def source_of(body: dict[str, Any], mapping_uuid: str, aws: ApiAwsConfig) -> dict[str, Any]:
    """The `source:` of a mapping made by CreateEventSourceMapping."""
    self_managed = body.get("SelfManagedEventSource")
    arn = body.get("EventSourceArn")
    if self_managed is not None:
        return _kafka(body, self_managed, mapping_uuid)
    if not isinstance(arn, str) or not arn:
        raise invalid_parameter("Unrecognized event source.")
    match = _ARN.fullmatch(arn)
    service = match["service"] if match else None
    connection = {key: value for key, value in aws.model_dump().items() if value is not None}
    if service == "sqs":
        return {"type": "sqs", "queue_arn": arn, **connection}
    if service == "kinesis" and match and match["rest"].startswith("stream/"):
        return {
            "type": "kinesis",
            "stream": arn,
            **_start(body, arn, STARTING_POSITIONS),
            **connection,
        }
    if service == "dynamodb" and match and "/stream/" in match["rest"]:
        start = _start(body, arn, ("TRIM_HORIZON", "LATEST"))
        return {"type": "dynamodb-streams", "stream_arn": arn, **start, **connection}
    raise invalid_parameter(f"Unsupported event source {arn!r}: {SUPPORTED}")


def _start(
    body: dict[str, Any], source: str, allowed: tuple[str, ...], default: str | None = None
) -> dict[str, Any]:
    """The starting position; AT_TIMESTAMP for a DynamoDB stream is refused in Lambda's
    words, which name the source's ARN (conformance recordings)."""
    position = body.get("StartingPosition", default)
    if position is None:
        raise invalid_parameter(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    if position in STARTING_POSITIONS and position not in allowed:
        raise invalid_parameter(f"Unsupported starting position for arn type: {source}")
    if position not in allowed:
        raise ApiError(
            400,
            "ValidationException",
            f"1 validation error detected: Value '{position}' at 'startingPosition' failed to "
            f"satisfy constraint: Member must satisfy enum value set: "
            f"[{', '.join(STARTING_POSITIONS)}]",
        )
    start: dict[str, Any] = {"starting_position": position}
    if "StartingPositionTimestamp" in body:
        start["starting_position_timestamp"] = float(body["StartingPositionTimestamp"])
    return start


def _kafka(body: dict[str, Any], self_managed: Any, mapping_uuid: str) -> dict[str, Any]:
    endpoints = self_managed.get("Endpoints") if isinstance(self_managed, dict) else None
    servers = (endpoints or {}).get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        raise invalid_parameter(
            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS must list the brokers"
        )
    topics = body.get("Topics")
    if not isinstance(topics, list) or len(topics) != 1:
        raise invalid_parameter("Topics must name exactly one topic")
    group = (body.get("SelfManagedKafkaEventSourceConfig") or {}).get("ConsumerGroupId")
    return {
        "type": "kafka",
        "bootstrap_servers": servers,
        "topics": topics,
        # AWS names a group it makes up by the mapping's UUID.
        "consumer_group_id": group or mapping_uuid,
        **_start(body, "kafka", STARTING_POSITIONS, default="TRIM_HORIZON"),
    }


def problem_text(problems: Problems) -> str:
    """Problems of settings (paths below the mapping) in Lambda's terms."""
    lines = []
    for path, message in problems:
        key = next((part for part in path if isinstance(part, str)), "")
        parameter = PARAMETERS.get(key, key)
        if key == "source" and len(path) > 1:
            parameter = "/".join(str(part) for part in path)
        aws = _AWS_WORDING.get(message)
        if key == "filter_criteria" and message.startswith(_INVALID_PATTERN[0]):
            aws = _INVALID_PATTERN[1]
        line = aws.format(parameter=parameter) if aws else f"{parameter}: {message}"
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)

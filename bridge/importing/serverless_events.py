"""A serverless.yml function's `events`, written as the SAM / CloudFormation properties
they stand for and converted by the same rules (bridge/importing/esm.py)."""

from __future__ import annotations

import json
from typing import Any

from bridge.importing.context import TemplateContext
from bridge.importing.esm import Converter
from bridge.importing.model import Part
from bridge.importing.notes import Location
from bridge.importing.sam_events import HTTP_METHODS, add_bucket_folder, add_event

# serverless.yml ESM keys -> CloudFormation property names.
ESM_KEYS = {
    "batchSize": "BatchSize",
    "maximumBatchingWindow": "MaximumBatchingWindowInSeconds",
    "batchWindow": "MaximumBatchingWindowInSeconds",
    "startingPosition": "StartingPosition",
    "startingPositionTimestamp": "StartingPositionTimestamp",
    "maximumRetryAttempts": "MaximumRetryAttempts",
    "parallelizationFactor": "ParallelizationFactor",
    "bisectBatchOnFunctionError": "BisectBatchOnFunctionError",
    "maximumRecordAgeInSeconds": "MaximumRecordAgeInSeconds",
    "tumblingWindowInSeconds": "TumblingWindowInSeconds",
    "enabled": "Enabled",
    "consumerGroupId": "ConsumerGroupId",
    "bootstrapServers": "KafkaBootstrapServers",
}
HANDLED = {
    "arn",
    "type",
    "functionResponseType",
    "filterPatterns",
    "maximumConcurrency",
    "destinations",
    "topic",
    "accessConfigurations",
    "consumer",
}


def add_serverless_event(
    converter: Converter,
    context: TemplateContext,
    function: str,
    *,
    index: int,
    event: Any,
    location: Location,
) -> None:
    if not (isinstance(event, dict) and len(event) == 1):
        raise converter.notes.error(location, "an event is a mapping of one event type")
    ((kind, given),) = event.items()
    before = (len(converter.result.mappings), len(converter.result.http_triggers))
    _add(converter, context, function, index=index, kind=kind, given=given, location=location)
    for part in (
        *converter.result.mappings[before[0] :],
        *converter.result.http_triggers[before[1] :],
    ):
        part.kind = kind


def _add(
    converter: Converter,
    context: TemplateContext,
    function: str,
    *,
    index: int,
    kind: str,
    given: Any,
    location: Location,
) -> None:
    given = context.resolve(given, (*location, kind))
    name = f"{kind}{index}"
    where = (*location, kind)
    if kind == "sqs":
        properties = _esm(converter, given, where, "Queue")
        add_event(converter, function, name, {"Type": "SQS", "Properties": properties}, location)
    elif kind == "stream":
        properties = _esm(converter, given, where, "Stream")
        stream_type = given.get("type") if isinstance(given, dict) else None
        arn = str(properties.get("Stream", ""))
        stream_type = stream_type or ("dynamodb" if ":dynamodb:" in arn else "kinesis")
        properties.setdefault("StartingPosition", "TRIM_HORIZON")
        sam_type = "DynamoDB" if stream_type == "dynamodb" else "Kinesis"
        add_event(converter, function, name, {"Type": sam_type, "Properties": properties}, location)
    elif kind == "kafka":
        properties = _esm(converter, given, where, None)
        properties.setdefault("StartingPosition", "TRIM_HORIZON")
        if isinstance(given, dict) and given.get("topic"):
            properties["Topics"] = [given["topic"]]
        if isinstance(given, dict) and given.get("accessConfigurations"):
            properties["SourceAccessConfigurations"] = given["accessConfigurations"]
        add_event(
            converter,
            function,
            name,
            {"Type": "SelfManagedKafka", "Properties": properties},
            location,
        )
    elif kind == "schedule":
        _schedules(converter, function, name, given, location)
    elif kind in ("httpApi", "http"):
        _route(converter, function, kind, given, location)
    elif kind == "s3":
        settings = given if isinstance(given, dict) else {"bucket": given}
        add_bucket_folder(
            converter,
            function,
            name,
            bucket=settings.get("bucket"),
            properties={
                "Events": settings.get("event", "s3:ObjectCreated:*"),
                "rules": settings.get("rules"),
            },
            location=location,
        )
    else:
        converter.notes.unsupported(location, f"an event of type {kind} is not supported; left out")


def _esm(
    converter: Converter, given: Any, location: Location, source_key: str | None
) -> dict[str, Any]:
    settings = given if isinstance(given, dict) else {"arn": given}
    properties: dict[str, Any] = {}
    if source_key is not None:
        if settings.get("arn") is None:
            raise converter.notes.error(location, "arn is required")
        properties[source_key] = settings["arn"]
    for key, value in settings.items():
        if key in ESM_KEYS:
            properties[ESM_KEYS[key]] = value
        elif key == "functionResponseType":
            properties["FunctionResponseTypes"] = [value]
        elif key == "filterPatterns":
            properties["FilterCriteria"] = {
                "Filters": [{"Pattern": json.dumps(pattern)} for pattern in value or []]
            }
        elif key == "maximumConcurrency":
            properties["ScalingConfig"] = {"MaximumConcurrency": value}
        elif key == "destinations":
            target = (value or {}).get("onFailure")
            arn = target.get("arn") if isinstance(target, dict) else target
            if arn is not None:
                properties["DestinationConfig"] = {"OnFailure": {"Destination": arn}}
        elif key == "consumer":
            converter.notes.info(
                (*location, key),
                "read past: records are read the same way without a dedicated consumer",
            )
        elif key not in HANDLED:
            converter.notes.unsupported((*location, key), f"{key} is not supported; left out")
    return properties


def _schedules(
    converter: Converter, function: str, name: str, given: Any, location: Location
) -> None:
    settings = given if isinstance(given, dict) else {"rate": given}
    rates = settings.get("rate")
    rates = rates if isinstance(rates, list) else [rates]
    for number, rate in enumerate(rates):
        properties: dict[str, Any] = {"ScheduleExpression": rate}
        for key, value in settings.items():
            if key == "rate":
                continue
            if key == "input":
                properties["Input"] = value if isinstance(value, str) else json.dumps(value)
            elif key == "enabled":
                properties["State"] = "ENABLED" if value else "DISABLED"
            elif key == "name":
                properties["Name"] = value
            elif key == "timezone":
                properties["ScheduleExpressionTimezone"] = value
            elif key in ("description", "method"):
                converter.notes.info(
                    (*location, "schedule", key), "read past: it changes nothing locally"
                )
            else:
                converter.notes.unsupported(
                    (*location, "schedule", key), f"{key} is not supported; left out"
                )
        suffix = f"-{number}" if len(rates) > 1 else ""
        add_event(
            converter,
            function,
            f"{name}{suffix}",
            {"Type": "ScheduleV2", "Properties": properties},
            location,
        )


def _route(converter: Converter, function: str, kind: str, given: Any, location: Location) -> None:
    if isinstance(given, str):
        if given.strip() == "*":
            method, path = "ANY", "/{proxy+}"
            converter.notes.info(
                location, "the catch-all route is served as /{proxy+} (every path but /)"
            )
        else:
            method, _, path = given.strip().partition(" ")
    elif isinstance(given, dict):
        method, path = str(given.get("method", "ANY")), str(given.get("path", ""))
        for key in given:
            if key not in ("method", "path"):
                converter.notes.unsupported(
                    (*location, kind, key),
                    f"{key} is not supported (requests are not checked); left out",
                )
    else:
        raise converter.notes.error((*location, kind), "write METHOD /path or {method, path}")
    method = "ANY" if method.strip() == "*" else method.strip().upper()
    path = "/" + path.strip().lstrip("/")
    if method not in HTTP_METHODS:
        converter.notes.unsupported(
            (*location, kind), f"method {method} is not served; ANY instead"
        )
        method = "ANY"
    format_version = "2.0" if kind == "httpApi" else "1.0"
    data = {"path": path, "methods": [method], "function": function, "format": format_version}
    converter.result.http_triggers.append(Part(data, location, kind))

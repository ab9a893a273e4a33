"""A SAM function's `Events`: SQS, Kinesis, DynamoDB, MSK, SelfManagedKafka and MQ become
mappings; Schedule and ScheduleV2 become `schedule` mappings; Api and HttpApi become HTTP
triggers; S3 becomes a `files` mapping on a folder given with `--bucket-folder`. Every
other type is named in a warning."""

from __future__ import annotations

import json
from typing import Any

from bridge.importing.esm import Converter, number
from bridge.importing.model import Part, local_path
from bridge.importing.notes import Location

ESM_KINDS = {
    "SQS": "sqs",
    "Kinesis": "kinesis",
    "DynamoDB": "dynamodb",
    "MSK": "msk",
    "SelfManagedKafka": "kafka",
    "MQ": "mq",
}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"}
SCHEDULE_READ_PAST = {
    "Description",
    "RoleArn",
    "PermissionsBoundary",
    "KmsKeyArn",
    "GroupName",
    "OmitName",
    "EventBusName",
}


def add_event(
    converter: Converter, function: str, name: str, event: dict[str, Any], location: Location
) -> None:
    """Add what one SAM event becomes to the import."""
    kind = str(event.get("Type", ""))
    properties = event.get("Properties") or {}
    origin = f"{kind}"
    if kind in ESM_KINDS:
        _add_mapping(
            converter,
            function,
            name,
            kind=ESM_KINDS[kind],
            properties=properties,
            location=location,
            origin=origin,
        )
    elif kind in ("Schedule", "ScheduleV2"):
        _add_schedule(
            converter, function, name, kind=kind, properties=properties, location=location
        )
    elif kind in ("Api", "HttpApi"):
        _add_route(converter, function, kind, properties, location)
    elif kind == "S3":
        add_bucket_folder(
            converter,
            function,
            name,
            bucket=properties.get("Bucket"),
            properties=properties,
            location=location,
        )
    else:
        converter.notes.unsupported(
            location, f"an event of type {kind or '(none)'} is not supported; left out"
        )


def _add_mapping(
    converter: Converter,
    function: str,
    name: str,
    *,
    kind: str,
    properties: dict[str, Any],
    location: Location,
    origin: str,
) -> None:
    props_location = (*location, "Properties")
    needed = {
        "sqs": "Queue",
        "kinesis": "Stream",
        "dynamodb": "Stream",
        "msk": "Stream",
        "mq": "Broker",
    }
    if kind in needed and needed[kind] not in properties:
        raise converter.notes.error(props_location, f"the {needed[kind]} property is required")
    source = converter.source(kind, properties, props_location)
    if source is None:
        return
    settings = converter.mapping_settings(properties, props_location, kind)
    data = {
        "name": converter.result.mapping_name(f"{function}-{name}"),
        "function": function,
        "source": source,
        **settings,
    }
    converter.result.mappings.append(Part(data, location, origin))


def _add_schedule(
    converter: Converter,
    function: str,
    name: str,
    *,
    kind: str,
    properties: dict[str, Any],
    location: Location,
) -> None:
    props_location = (*location, "Properties")
    notes = converter.notes
    expression_key = "Schedule" if kind == "Schedule" else "ScheduleExpression"
    if expression_key not in properties:
        raise notes.error(props_location, f"the {expression_key} property is required")
    source: dict[str, Any] = {"type": "schedule", "expression": str(properties[expression_key])}
    data: dict[str, Any] = {
        "name": converter.result.mapping_name(f"{function}-{name}"),
        "function": function,
        "source": source,
    }
    for key, value in properties.items():
        where = (*props_location, key)
        if key == expression_key:
            continue
        if key == "ScheduleExpressionTimezone":
            source["timezone"] = str(value)
        elif key == "Input":
            source["input"] = _input(value, notes.error, where)
        elif key == "Name":
            source["rule_name"] = str(value)
        elif key == "Enabled":
            data["enabled"] = number(value)
        elif key == "State":
            data["enabled"] = str(value).upper() == "ENABLED"
        elif key == "RetryPolicy" and isinstance(value, dict):
            if "MaximumRetryAttempts" in value:
                data["maximum_retry_attempts"] = number(value["MaximumRetryAttempts"])
            if "MaximumEventAgeInSeconds" in value:
                data["maximum_record_age_in_seconds"] = number(value["MaximumEventAgeInSeconds"])
        elif key == "DeadLetterConfig" and isinstance(value, dict):
            _schedule_dead_letter(converter, data, value, where)
        elif key == "FlexibleTimeWindow" and isinstance(value, dict) and value.get("Mode") == "OFF":
            notes.info(where, "read past: firings are on time, as with Mode OFF")
        elif key in SCHEDULE_READ_PAST:
            notes.info(where, "read past: it changes nothing locally")
        else:
            notes.unsupported(where, f"{key} is not supported for schedules; left out")
    converter.result.mappings.append(Part(data, location, kind))


def _schedule_dead_letter(
    converter: Converter, data: dict[str, Any], value: dict[str, Any], location: Location
) -> None:
    arn = value.get("Arn")
    if not isinstance(arn, str):
        converter.notes.unsupported(
            location, "a DeadLetterConfig without Arn (SAM would create a queue): left out"
        )
        return
    destination = converter.destination(arn, (*location, "Arn"))
    if destination is not None:
        name = converter.result.destination_name(arn.rsplit(":", 1)[-1], destination, location)
        data["destination_config"] = {"on_failure": {"destination": name}}


def _input(value: Any, error: Any, location: Location) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise error(location, "Input must be JSON text") from None
    if not isinstance(value, dict):
        raise error(location, "Input must be a JSON object to be delivered locally")
    return value


def _add_route(
    converter: Converter, function: str, kind: str, properties: dict[str, Any], location: Location
) -> None:
    notes = converter.notes
    props_location = (*location, "Properties")
    path = properties.get("Path")
    method = str(properties.get("Method", "ANY")).upper()
    if path is None and kind == "HttpApi":
        path = "/{proxy+}"  # the $default route
        notes.info(location, "the $default route is served as /{proxy+} (every path but /)")
    if not isinstance(path, str):
        raise notes.error(props_location, "the Path property is required")
    if method not in HTTP_METHODS:
        notes.unsupported(
            (*props_location, "Method"), f"method {method} is not served; ANY instead"
        )
        method = "ANY"
    format_version = "1.0" if kind == "Api" else str(properties.get("PayloadFormatVersion", "2.0"))
    for key in properties:
        if key in ("Path", "Method", "PayloadFormatVersion"):
            continue
        where = (*props_location, key)
        if key in ("RestApiId", "ApiId", "TimeoutInMillis", "RouteSettings"):
            notes.info(where, "read past: routes are served on --api-listen")
        else:
            notes.unsupported(where, f"{key} is not supported (requests are not checked); left out")
    data = {"path": path, "methods": [method], "function": function, "format": format_version}
    converter.result.http_triggers.append(Part(data, location, kind))


def add_bucket_folder(
    converter: Converter,
    function: str,
    name: str,
    *,
    bucket: Any,
    properties: dict[str, Any],
    location: Location,
) -> None:
    """An S3 notification as a `files` mapping on the folder `--bucket-folder` names."""
    bucket_name = str(bucket or "")
    folders = converter.options.bucket_folders
    if bucket_name not in folders:
        converter.notes.unsupported(
            location,
            f"an S3 event of bucket {bucket_name!r}: give --bucket-folder "
            f"{bucket_name}=FOLDER to watch a folder for it; left out",
        )
        return
    source: dict[str, Any] = {
        "type": "files",
        "path": local_path(converter.options.cwd, folders[bucket_name], converter.options.cwd),
        "bucket": bucket_name,
        "create_path": True,
    }
    events = properties.get("Events") or properties.get("event")
    if events:
        source["events"] = _file_events(converter, events, location)
    patterns = _key_patterns(properties)
    if patterns:
        source["patterns"] = patterns
    data = {
        "name": converter.result.mapping_name(f"{function}-{name}"),
        "function": function,
        "source": source,
    }
    converter.result.mappings.append(Part(data, location, "S3"))


def _file_events(converter: Converter, events: Any, location: Location) -> list[str]:
    """S3's event names, as the files source tells them: created or removed."""
    found: list[str] = []
    for item in events if isinstance(events, list) else [events]:
        family = ":".join(str(item).split(":")[:2])
        if family not in ("s3:ObjectCreated", "s3:ObjectRemoved"):
            converter.notes.unsupported(
                location, f"S3 event {item} has no local counterpart; left out"
            )
            continue
        if str(item) != f"{family}:*":
            converter.notes.info(location, f"{item} is read as {family}:* (a folder tells no more)")
        if f"{family}:*" not in found:
            found.append(f"{family}:*")
    return found or ["s3:ObjectCreated:*"]


def _key_patterns(properties: dict[str, Any]) -> list[str]:
    prefix = suffix = ""
    rules = (
        properties.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        if isinstance(properties.get("Filter"), dict)
        else []
    )
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict) and str(rule.get("Name", "")).lower() == "prefix":
            prefix = str(rule.get("Value", ""))
        if isinstance(rule, dict) and str(rule.get("Name", "")).lower() == "suffix":
            suffix = str(rule.get("Value", ""))
    for rule in properties.get("rules", []) or []:  # serverless.yml: [{prefix: x}, {suffix: y}]
        if isinstance(rule, dict):
            prefix = str(rule.get("prefix", prefix))
            suffix = str(rule.get("suffix", suffix))
    return [f"{prefix}*{suffix}"] if prefix or suffix else []

"""A function of a template (SAM's AWS::Serverless::Function with its Globals, or
CloudFormation's AWS::Lambda::Function) as a lambda-bridge `runtime` function: its code
folder, handler, runtime, memory, timeout, environment, layers, architecture, ephemeral
storage, concurrency, alias, dead-letter queue and asynchronous invocation settings."""

from __future__ import annotations

import re
from typing import Any

from bridge.importing.context import LAYER_TYPES, TemplateContext
from bridge.importing.esm import Converter, number
from bridge.importing.model import Part, local_path
from bridge.importing.notes import Location

RUNTIMES = re.compile(r"python3\.\d{1,2}|nodejs\d{1,2}\.x|provided(\.al2|\.al2023)?")
READ_PAST = {
    "Role": "roles and permissions do not apply locally",
    "Policies": "roles and permissions do not apply locally",
    "PermissionsBoundary": "roles and permissions do not apply locally",
    "RolePath": "roles and permissions do not apply locally",
    "AssumeRolePolicyDocument": "roles and permissions do not apply locally",
    "Tags": "tags are not used locally",
    "PropagateTags": "tags are not used locally",
    "Description": "a description changes nothing",
    "Tracing": "X-Ray tracing is not done locally",
    "TracingConfig": "X-Ray tracing is not done locally",
    "KmsKeyArn": "environment encryption is AWS's concern",
    "CodeSigningConfigArn": "code signing is AWS's concern",
    "DeploymentPreference": "deployments are AWS's concern",
    "AutoPublishCodeSha256": "versions are numbered locally",
    "AutoPublishAliasAllProperties": "versions are numbered locally",
    "VersionDescription": "versions are numbered locally",
    "VpcConfig": "functions run in the host's network",
    "LoggingConfig": "logs go to lambda-bridge's log",
    "RuntimeManagementConfig": "the runtime is the host's",
    "SnapStart": "there is no SnapStart locally",
    "RecursiveLoop": "recursion detection is AWS's",
    "FunctionName": "used as the function's name",
    "PackageType": "Zip packages only",
    "Events": "see the mappings",
    "Handler": "",
    "Runtime": "",
    "CodeUri": "",
    "Code": "",
    "MemorySize": "",
    "Timeout": "",
}


def add_function(
    context: TemplateContext,
    converter: Converter,
    logical_id: str,
    properties: dict[str, Any],
    location: Location,
    *,
    sam: bool,
) -> str | None:
    """Add the function; its name, or None when it cannot run locally (with a warning)."""
    notes = converter.notes
    name = context.physical_name(logical_id)
    if str(properties.get("PackageType", "Zip")) == "Image":
        notes.unsupported(
            location,
            "an image function (PackageType: Image) cannot run locally; left out, with its events",
        )
        return None
    runtime = properties.get("Runtime")
    if not isinstance(runtime, str):
        raise notes.error(location, "Runtime is required")
    if not RUNTIMES.fullmatch(runtime):
        notes.unsupported(
            (*location, "Runtime"),
            f"runtime {runtime} is not hosted locally (pythonX.Y, "
            "nodejsN.x, provided*); left out, with its events",
        )
        return None
    code = _code(context, converter, properties, location, sam=sam)
    if code is None:
        return None
    data: dict[str, Any] = {"invoker": "runtime", "runtime": runtime, "code": code}
    if properties.get("Handler") is not None:
        data["handler"] = str(properties["Handler"])
    if "MemorySize" in properties:
        data["memory_size"] = number(properties["MemorySize"])
    if "Timeout" in properties:
        data["timeout"] = number(properties["Timeout"])
    for key, value in properties.items():
        _apply(context, converter, data, key=key, value=value, where=(*location, key))
    resource_type = "AWS::Serverless::Function" if sam else "AWS::Lambda::Function"
    converter.result.functions[name] = Part(data, location[:-1], resource_type)
    return name


def _apply(
    context: TemplateContext,
    converter: Converter,
    data: dict[str, Any],
    *,
    key: str,
    value: Any,
    where: Location,
) -> None:
    """One function property as its setting."""
    notes = converter.notes
    if key in READ_PAST:
        if READ_PAST[key] and key not in ("FunctionName", "PackageType", "Events"):
            notes.info(where, f"read past: {READ_PAST[key]}")
    elif key == "Environment":
        variables = value.get("Variables", {}) if isinstance(value, dict) else {}
        if variables:
            data["environment"] = {str(k): _text(v) for k, v in variables.items()}
    elif key == "Architectures":
        data["architecture"] = str(value[0]) if isinstance(value, list) and value else "x86_64"
    elif key == "EphemeralStorage":
        data["ephemeral_storage"] = (
            number(value.get("Size", 512)) if isinstance(value, dict) else 512
        )
    elif key == "ReservedConcurrentExecutions":
        data["reserved_concurrency"] = number(value)
    elif key == "ProvisionedConcurrencyConfig":
        count = value.get("ProvisionedConcurrentExecutions") if isinstance(value, dict) else None
        if count is not None:
            data["provisioned_concurrency"] = number(count)
    elif key == "AutoPublishAlias":
        data["versions"] = {"1": {}}
        data["aliases"] = {str(value): {"version": "1"}}
        notes.info(where, f"version 1 with alias {value}; mappings invoke $LATEST, the same code")
    elif key == "Layers":
        layers = _layers(context, converter, value, where)
        if layers:
            data["layers"] = layers
    elif key in ("DeadLetterQueue", "DeadLetterConfig"):
        dead_letter(converter, data, value, where)
    elif key == "EventInvokeConfig":
        apply_invoke_config(converter, data, value, where)
    elif key in ("InlineCode",):
        pass  # handled by _code
    else:
        notes.unsupported(where, f"{key} is not supported; left out")


def _code(
    context: TemplateContext,
    converter: Converter,
    properties: dict[str, Any],
    location: Location,
    *,
    sam: bool,
) -> str | None:
    notes = converter.notes
    key = "CodeUri" if sam else "Code"
    value = properties.get(key)
    if "InlineCode" in properties or (isinstance(value, dict) and "ZipFile" in value):
        notes.unsupported(
            location,
            "inline code is not supported: put it in a folder and name "
            "it in CodeUri; left out, with its events",
        )
        return None
    if isinstance(value, str) and not value.startswith("s3://"):
        path = context.template.folder / value
        if not path.exists():
            raise notes.error(
                (*location, key), f"{value} does not exist (relative to the template's folder)"
            )
        return local_path(context.template.folder, value, converter.options.cwd)
    if value is None:
        raise notes.error(location, f"{key} is required (a local folder)")
    notes.unsupported(
        (*location, key),
        "code in S3 cannot be run locally: name a local folder; left out, with its events",
    )
    return None


def _layers(
    context: TemplateContext, converter: Converter, value: Any, location: Location
) -> list[str]:
    layers: list[str] = []
    for index, layer in enumerate(value if isinstance(value, list) else []):
        logical_id = getattr(layer, "logical_id", None)
        resource = context.resources.get(logical_id or "")
        if not (isinstance(resource, dict) and resource.get("Type") in LAYER_TYPES):
            converter.notes.unsupported(
                (*location, index), f"layer {layer} is not a layer of this template; left out"
            )
            continue
        properties = resource.get("Properties") or {}
        content = properties.get("ContentUri", properties.get("Content"))
        if not isinstance(content, str) or content.startswith("s3://"):
            converter.notes.unsupported(
                (*location, index), f"layer {logical_id} has no local ContentUri; left out"
            )
            continue
        if not (context.template.folder / content).exists():
            raise converter.notes.error(
                ("Resources", str(logical_id), "Properties", "ContentUri"),
                f"{content} does not exist",
            )
        layers.append(local_path(context.template.folder, content, converter.options.cwd))
    return layers


def dead_letter(converter: Converter, data: dict[str, Any], value: Any, location: Location) -> None:
    arn = value.get("TargetArn") if isinstance(value, dict) else None
    if not isinstance(arn, str):
        converter.notes.unsupported(location, "a dead-letter queue without TargetArn; left out")
        return
    destination = converter.destination(arn, (*location, "TargetArn"))
    if destination is None:
        return
    if destination["type"] not in ("sqs", "sns"):
        converter.notes.unsupported(
            location, "a dead-letter queue is an SQS queue or SNS topic; left out"
        )
        return
    name = converter.result.destination_name(arn.rsplit(":", 1)[-1], destination, location)
    data.setdefault("async", {})["dead_letter"] = name


def apply_invoke_config(
    converter: Converter, data: dict[str, Any], value: Any, location: Location
) -> None:
    """EventInvokeConfig (SAM) / AWS::Lambda::EventInvokeConfig as the function's `async`."""
    if not isinstance(value, dict):
        return
    settings = data.get("async", {})
    for key, item in value.items():
        where = (*location, key)
        if key == "MaximumEventAgeInSeconds":
            settings["maximum_event_age_in_seconds"] = number(item)
        elif key == "MaximumRetryAttempts":
            settings["maximum_retry_attempts"] = number(item)
        elif key == "DestinationConfig" and isinstance(item, dict):
            for outcome, setting in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
                target = item.get(outcome)
                arn = target.get("Destination") if isinstance(target, dict) else None
                if target is not None and not isinstance(arn, str):
                    converter.notes.unsupported(
                        (*where, outcome),
                        "a destination without Destination (SAM would create one); left out",
                    )
                    continue
                if isinstance(arn, str):
                    destination = converter.destination(arn, (*where, outcome, "Destination"))
                    if destination is not None:
                        name = converter.result.destination_name(
                            arn.rsplit(":", 1)[-1], destination, where
                        )
                        settings.setdefault("destinations", {})[setting] = name
        elif key in ("FunctionName", "Qualifier"):
            continue
        else:
            converter.notes.unsupported(where, f"{key} is not supported; left out")
    if settings:
        data["async"] = settings


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

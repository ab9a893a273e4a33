"""`lambda-bridge import serverless serverless.yml`: a Serverless Framework service as
lambda-bridge config data.

`provider` gives the defaults (runtime, memorySize, timeout, environment, architecture,
layers); each of `functions` becomes a `runtime` function whose code is the service's
folder; its `events` of types sqs, stream (Kinesis and DynamoDB), kafka, schedule,
httpApi, http and s3 become mappings and HTTP triggers. The CloudFormation resources of
`resources.Resources` are read as in a template (names, ARNs, `--create-resources`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.importing.cfn_resources import CREATABLE, declared_resource
from bridge.importing.cfnyaml import Template, load_template
from bridge.importing.context import TemplateContext
from bridge.importing.esm import Converter
from bridge.importing.functions import add_function, apply_invoke_config, dead_letter
from bridge.importing.model import ImportOptions, ImportResult
from bridge.importing.notes import Location, Notes
from bridge.importing.serverless_events import add_serverless_event
from bridge.importing.variables import Variables

DEFAULT_STAGE = "dev"
# serverless.yml function keys -> the CloudFormation properties add_function reads.
FUNCTION_KEYS = {
    "handler": "Handler",
    "runtime": "Runtime",
    "memorySize": "MemorySize",
    "timeout": "Timeout",
    "reservedConcurrency": "ReservedConcurrentExecutions",
}
READ_PAST_FUNCTION = {
    "name",
    "description",
    "role",
    "iamRoleStatements",
    "iamRoleStatementsName",
    "tags",
    "tracing",
    "vpc",
    "package",
    "logRetentionInDays",
    "kmsKeyArn",
    "disableLogs",
    "versionFunction",
    "events",
    "environment",
    "layers",
    "architecture",
    "ephemeralStorageSize",
    "provisionedConcurrency",
    "destinations",
    "maximumRetryAttempts",
    "maximumEventAge",
    "onError",
    "url",
    "memorySize",
    "handler",
    "runtime",
    "timeout",
    "reservedConcurrency",
}


def import_serverless(path: Path, options: ImportOptions) -> ImportResult:
    template = load_template(path)
    notes = Notes(path, template.lines, strict=options.strict)
    stage = options.stage or DEFAULT_STAGE
    raw_provider = template.data.get("provider")
    region_given = raw_provider.get("region") if isinstance(raw_provider, dict) else None
    variables = Variables(
        template.data,
        {"stage": stage, "region": options.region},
        options.environ,
        {"region": options.region, "accountId": options.account_id},
        notes.error,
    )
    data = variables.resolve(template.data, ())
    if not isinstance(data.get("functions"), dict):
        raise notes.error(("functions",), "a serverless.yml needs functions (a mapping)")
    provider = data.get("provider") or {}
    if not isinstance(provider, dict):
        raise notes.error(("provider",), "must be a mapping")
    if provider.get("name", "aws") != "aws":
        raise notes.error(("provider", "name"), "only the aws provider is supported")
    if isinstance(region_given, str) and provider.get("region") != options.region:
        notes.info(
            ("provider", "region"),
            f"the region is {options.region} (--region, AWS_REGION), not {provider.get('region')}",
        )
    _note_unread(data, provider, notes)
    service = str(data.get("service", "service"))
    options.stack_name = (
        options.stack_name if options.stack_name != "local" else f"{service}-{stage}"
    )
    resources = (data.get("resources") or {}).get("Resources") or {}
    # Notes about resources name them `Resources.X` as in a template, at their own lines.
    for key, line in list(template.lines.items()):
        if key[:2] == ("resources", "Resources"):
            template.lines.setdefault(key[1:], line)
    cfn = Template(
        path,
        {
            "Resources": resources,
            "Conditions": (data.get("resources") or {}).get("Conditions") or {},
        },
        template.lines,
    )
    context = TemplateContext(cfn, options, notes)
    # Locations of resources are under `resources.Resources` in the file.
    context.resolver.error = lambda location, message: notes.error(_in_resources(location), message)
    result = ImportResult(
        path,
        notes,
        api_listen=options.api_listen,
        region=options.region,
        account_id=options.account_id,
    )
    converter = Converter(result, options, notes)
    for logical_id, resource in resources.items():
        if isinstance(resource, dict) and resource.get("Type") in CREATABLE:
            result.resources.append(
                declared_resource(context, logical_id, resource["Type"], ("Resources", logical_id))
            )
    layers = _layers(data, path.parent, notes)
    for name in data["functions"]:
        # As CloudFormation resources, so that `Ref` and the function's ARN work.
        context.resources.setdefault(name, {"Type": "AWS::Lambda::Function", "Properties": {}})
    for name, function in data["functions"].items():
        location: Location = ("functions", name)
        if not isinstance(function, dict):
            raise notes.error(location, "a function must be a mapping")
        properties = _function_properties(
            context, provider, function, layers=layers, location=location, notes=notes
        )
        properties = context.resolve(properties, location)
        imported = add_function(context, converter, name, properties, location, sam=True)
        if imported is None:
            continue
        result.functions[imported].origin = location
        result.functions[imported].kind = ""
        _async_settings(converter, result.functions[imported].data, function, location)
        for index, event in enumerate(function.get("events") or []):
            where = (*location, "events", index)
            add_serverless_event(
                converter, context, imported, index=index, event=event, location=where
            )
    return result


PROVIDER_READ = {
    "name",
    "runtime",
    "stage",
    "region",
    "memorySize",
    "timeout",
    "environment",
    "architecture",
    "layers",
    "ephemeralStorageSize",
    "reservedConcurrency",
}
PROVIDER_READ_PAST = {
    "iam",
    "role",
    "iamRoleStatements",
    "deploymentBucket",
    "deploymentMethod",
    "tags",
    "stackTags",
    "stackName",
    "logRetentionInDays",
    "logs",
    "tracing",
    "vpc",
    "profile",
    "versionFunctions",
    "lambdaHashingVersion",
    "apiGateway",
    "httpApi",
    "kmsKeyArn",
}
TOP_LEVEL_READ = {"service", "provider", "functions", "resources", "custom", "layers"}
TOP_LEVEL_READ_PAST = {"frameworkVersion", "package", "useDotenv", "configValidationMode"}


def _note_unread(data: dict[str, Any], provider: dict[str, Any], notes: Notes) -> None:
    """Name every top-level and provider key that is not carried over."""
    for key in data:
        if key in TOP_LEVEL_READ_PAST:
            notes.info((key,), "read past: it changes nothing locally")
        elif key not in TOP_LEVEL_READ:
            notes.unsupported((key,), f"{key} is not supported (plugins are not run); left out")
    for key in provider:
        if key in PROVIDER_READ_PAST:
            notes.info(("provider", key), "read past: it changes nothing locally")
        elif key not in PROVIDER_READ:
            notes.unsupported(("provider", key), f"provider.{key} is not supported; left out")


def _in_resources(location: Location) -> Location:
    return ("resources", *location) if location[:1] == ("Resources",) else location


def _layers(data: dict[str, Any], folder: Path, notes: Notes) -> dict[str, str]:
    """Top-level `layers:` by the names functions use: `{Ref: <Name>LambdaLayer}`."""
    found: dict[str, str] = {}
    for name, layer in (data.get("layers") or {}).items():
        if not isinstance(layer, dict) or not isinstance(layer.get("path"), str):
            raise notes.error(("layers", name), "a layer needs a path")
        found[f"{name[:1].upper()}{name[1:]}LambdaLayer"] = layer["path"]
    return found


def _function_properties(
    context: TemplateContext,
    provider: dict[str, Any],
    function: dict[str, Any],
    *,
    layers: dict[str, str],
    location: Location,
    notes: Notes,
) -> dict[str, Any]:
    """The function as CloudFormation properties, with the provider's defaults."""
    properties: dict[str, Any] = {"CodeUri": "."}
    for key, prop in FUNCTION_KEYS.items():
        value = function.get(key, provider.get(key))
        if value is not None:
            properties[prop] = value
    if properties.get("MemorySize") is None and provider.get("memorySize") is None:
        properties["MemorySize"] = 1024  # the Framework's default
    properties.setdefault("Timeout", 6)  # the Framework's default
    environment = {**(provider.get("environment") or {}), **(function.get("environment") or {})}
    if environment:
        properties["Environment"] = {"Variables": environment}
    architecture = function.get("architecture", provider.get("architecture"))
    if architecture:
        properties["Architectures"] = [architecture]
    storage = function.get("ephemeralStorageSize", provider.get("ephemeralStorageSize"))
    if storage:
        properties["EphemeralStorage"] = {"Size": storage}
    if function.get("provisionedConcurrency"):
        properties["ProvisionedConcurrencyConfig"] = {
            "ProvisionedConcurrentExecutions": function["provisionedConcurrency"]
        }
    given_layers = function.get("layers", provider.get("layers")) or []
    resolved_layers = []
    for index, layer in enumerate(given_layers):
        reference = layer.get("Ref") if isinstance(layer, dict) else None
        if reference in layers:
            context.resources[reference] = {
                "Type": "AWS::Lambda::LayerVersion",
                "Properties": {"Content": layers[reference]},
            }
            resolved_layers.append(layer)
        else:
            notes.unsupported(
                (*location, "layers", index),
                f"layer {layer} is not a layer of this service; left out",
            )
    if resolved_layers:
        properties["Layers"] = resolved_layers
    for key in function:
        if key not in READ_PAST_FUNCTION:
            notes.unsupported((*location, key), f"{key} is not supported; left out")
        elif key in ("role", "iamRoleStatements", "vpc", "tracing", "tags"):
            notes.info((*location, key), "read past: it changes nothing locally")
    return properties


def _async_settings(
    converter: Converter, data: dict[str, Any], function: dict[str, Any], location: Location
) -> None:
    config: dict[str, Any] = {}
    if "maximumRetryAttempts" in function:
        config["MaximumRetryAttempts"] = function["maximumRetryAttempts"]
    if "maximumEventAge" in function:
        config["MaximumEventAgeInSeconds"] = function["maximumEventAge"]
    destinations = function.get("destinations") or {}
    given = {}
    for key, outcome in (("onSuccess", "OnSuccess"), ("onFailure", "OnFailure")):
        target = destinations.get(key)
        if isinstance(target, dict):
            target = target.get("arn")
        if isinstance(target, str):
            region, account = converter.options.region, converter.options.account_id
            arn = (
                target
                if target.startswith("arn:")
                else f"arn:aws:lambda:{region}:{account}:function:{target}"
            )
            given[outcome] = {"Destination": arn}
    if given:
        config["DestinationConfig"] = given
    apply_invoke_config(converter, data, config, location)
    if isinstance(function.get("onError"), str):
        dead_letter(converter, data, {"TargetArn": function["onError"]}, (*location, "onError"))

"""`lambda-bridge import sam template.yaml`: a SAM (or plain CloudFormation) template as
lambda-bridge config data.

Functions (AWS::Serverless::Function with Globals, AWS::Lambda::Function) become `runtime`
functions; their Events, AWS::Lambda::EventSourceMapping and AWS::Lambda::EventInvokeConfig
become mappings, schedules, HTTP triggers and asynchronous settings; declared queues,
streams, tables and topics resolve to their names and ARNs. Everything else is named in a
note.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from bridge.importing.cfn_resources import (
    CREATABLE,
    READ_PAST_TYPES,
    add_event_invoke_config,
    add_event_source_mapping,
    declared_resource,
)
from bridge.importing.cfnyaml import load_template
from bridge.importing.context import FUNCTION_TYPES, TemplateContext
from bridge.importing.esm import Converter
from bridge.importing.functions import add_function
from bridge.importing.model import ImportOptions, ImportResult, ResourceSpec
from bridge.importing.notes import Location, Notes
from bridge.importing.sam_events import add_event

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Globals.Function keys whose values are merged with the function's, not replaced.
MERGED_MAPS = ("Environment",)
APPENDED_LISTS = ("Layers",)


def import_sam(path: Path, options: ImportOptions) -> ImportResult:
    """Import a template; TemplateError (one line) for a template that cannot be."""
    template = load_template(path)
    notes = Notes(path, template.lines, strict=options.strict)
    result = ImportResult(
        path,
        notes,
        api_listen=options.api_listen,
        region=options.region,
        account_id=options.account_id,
    )
    context = TemplateContext(template, options, notes)
    converter = Converter(result, options, notes)
    if not isinstance(template.data.get("Resources"), dict):
        raise notes.error(("Resources",), "a template needs Resources (a mapping)")
    _check_transform(template.data, notes)
    globals_ = _function_globals(template.data, notes)
    converter.broker_engines = _broker_engines(context)

    ordered = list(context.resources.items())
    skipped: set[str] = set()
    # Resources first, so that functions and mappings see the queues they name.
    for logical_id, resource in ordered:
        location: Location = ("Resources", logical_id)
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise notes.error(location, "a resource needs a Type")
        if not context.included(logical_id, resource):
            notes.info(location, f"left out: its condition {resource['Condition']} is false")
            skipped.add(logical_id)
            continue
        kind = resource["Type"]
        if kind in CREATABLE:
            result.resources.append(declared_resource(context, logical_id, kind, location))
    for logical_id, resource in ordered:
        if logical_id in skipped or resource["Type"] not in FUNCTION_TYPES:
            continue
        _function(context, converter, logical_id, resource, globals_)
    for logical_id, resource in ordered:
        kind = resource["Type"]
        location = ("Resources", logical_id)
        if logical_id in skipped or kind in FUNCTION_TYPES or kind in CREATABLE:
            continue
        if kind == "AWS::Lambda::EventSourceMapping":
            properties = context.resolve(
                resource.get("Properties") or {}, (*location, "Properties")
            )
            add_event_source_mapping(context, converter, properties, location)
        elif kind == "AWS::Lambda::EventInvokeConfig":
            properties = context.resolve(
                resource.get("Properties") or {}, (*location, "Properties")
            )
            add_event_invoke_config(context, converter, properties, location)
        elif kind in READ_PAST_TYPES:
            notes.info(location, f"{kind} read past: {READ_PAST_TYPES[kind]}")
        else:
            notes.unsupported(location, f"{kind} is not supported; left out")
    for section in ("Outputs", "Metadata", "Rules", "Hooks"):
        if section in template.data:
            notes.info((section,), f"{section} read past")
    result.resources = _creation_order(result.resources)
    return result


def _check_transform(data: dict[str, Any], notes: Notes) -> None:
    transform = data.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform] if transform else []
    for index, name in enumerate(transforms):
        if name != SAM_TRANSFORM:
            notes.unsupported(
                ("Transform", index) if isinstance(transform, list) else ("Transform",),
                f"transform {name} is not applied",
            )


def _function_globals(data: dict[str, Any], notes: Notes) -> dict[str, Any]:
    given = data.get("Globals")
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise notes.error(("Globals",), "Globals must be a mapping")
    for section in given:
        if section != "Function":
            notes.info(
                ("Globals", section),
                f"Globals.{section} read past: only function settings apply locally",
            )
    function = given.get("Function") or {}
    if not isinstance(function, dict):
        raise notes.error(("Globals", "Function"), "must be a mapping")
    return function


def _merge_globals(globals_: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """SAM's rules: the function's own value wins, maps are merged (Environment's
    Variables), lists are appended to the global ones (Layers)."""
    merged = copy.deepcopy(globals_)
    for key, value in properties.items():
        if key in MERGED_MAPS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            variables = {**merged[key].get("Variables", {}), **value.get("Variables", {})}
            merged[key] = {**merged[key], **value, "Variables": variables}
        elif (
            key in APPENDED_LISTS and isinstance(value, list) and isinstance(merged.get(key), list)
        ):
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = value
    return merged


def _function(
    context: TemplateContext,
    converter: Converter,
    logical_id: str,
    resource: dict[str, Any],
    globals_: dict[str, Any],
) -> None:
    location: Location = ("Resources", logical_id, "Properties")
    raw = resource.get("Properties") or {}
    if not isinstance(raw, dict):
        raise converter.notes.error(location, "must be a mapping")
    sam = resource["Type"] == "AWS::Serverless::Function"
    events = raw.get("Events") if sam else None
    given = _merge_globals(globals_, raw) if sam else raw
    properties = context.resolve(
        {key: value for key, value in given.items() if key != "Events"}, location
    )
    name = add_function(context, converter, logical_id, properties, location, sam=sam)
    if events is None:
        return
    if not isinstance(events, dict):
        raise converter.notes.error((*location, "Events"), "must be a mapping")
    for event_name, event in events.items():
        where = (*location, "Events", event_name)
        if name is None:
            converter.notes.unsupported(where, "left out with its function")
            continue
        resolved = context.resolve(event, where)
        if not isinstance(resolved, dict):
            raise converter.notes.error(
                where, "an event must be a mapping with Type and Properties"
            )
        add_event(converter, name, event_name, resolved, where)


def _broker_engines(context: TemplateContext) -> dict[str, str]:
    engines: dict[str, str] = {}
    for logical_id, resource in context.resources.items():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::AmazonMQ::Broker":
            engine = (resource.get("Properties") or {}).get("EngineType")
            if isinstance(engine, str):
                engines[logical_id] = engine.upper()
    return engines


def _creation_order(specs: list[ResourceSpec]) -> list[ResourceSpec]:
    """Each resource after those its properties name (a queue after its dead-letter
    queue); a cycle keeps the template's order for what remains."""
    ordered: list[ResourceSpec] = []
    remaining = list(specs)
    declared = {spec.logical_id for spec in specs}
    while remaining:
        done = {spec.logical_id for spec in ordered}
        ready = [spec for spec in remaining if (spec.depends_on & declared) <= done]
        if not ready:
            ready = remaining[:1]
        for spec in ready:
            remaining.remove(spec)
            ordered.append(spec)
    return ordered

"""Plain CloudFormation resources: the queues, streams, tables and topics a template
declares (what `--create-resources` makes in an emulator, with the template's
properties), and AWS::Lambda::EventSourceMapping and AWS::Lambda::EventInvokeConfig."""

from __future__ import annotations

from typing import Any

from bridge.importing.context import FUNCTION_TYPES, TemplateContext
from bridge.importing.esm import Converter
from bridge.importing.functions import apply_invoke_config
from bridge.importing.intrinsics import ResourceValue
from bridge.importing.model import Part, ResourceSpec
from bridge.importing.notes import Location

# The properties creating each kind locally takes; others are named in a note.
CREATABLE = {
    "AWS::SQS::Queue": {
        "QueueName",
        "FifoQueue",
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "RedrivePolicy",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    },
    "AWS::Kinesis::Stream": {"Name", "ShardCount", "RetentionPeriodHours", "StreamModeDetails"},
    "AWS::DynamoDB::Table": {
        "TableName",
        "AttributeDefinitions",
        "KeySchema",
        "StreamSpecification",
        "BillingMode",
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
    },
    "AWS::SNS::Topic": {"TopicName", "FifoTopic", "ContentBasedDeduplication"},
}
READ_PAST_TYPES = {
    "AWS::IAM::Role": "roles and permissions do not apply locally",
    "AWS::IAM::Policy": "roles and permissions do not apply locally",
    "AWS::IAM::ManagedPolicy": "roles and permissions do not apply locally",
    "AWS::Lambda::Permission": "roles and permissions do not apply locally",
    "AWS::SQS::QueuePolicy": "roles and permissions do not apply locally",
    "AWS::SNS::TopicPolicy": "roles and permissions do not apply locally",
    "AWS::Serverless::Api": "routes are served on --api-listen",
    "AWS::Serverless::HttpApi": "routes are served on --api-listen",
    "AWS::Serverless::LayerVersion": "used by the functions that name it",
    "AWS::Lambda::LayerVersion": "used by the functions that name it",
    "AWS::AmazonMQ::Broker": "its engine decides the source type; the broker itself is not created",
    "AWS::MSK::Cluster": "not created: give the brokers in KAFKA_BOOTSTRAP_SERVERS",
    "AWS::S3::Bucket": "not created; an S3 event of it needs --bucket-folder",
    "AWS::Logs::LogGroup": "logs go to lambda-bridge's log",
}
ESM_KIND_BY_SERVICE = {
    "sqs": "sqs",
    "kinesis": "kinesis",
    "dynamodb": "dynamodb",
    "kafka": "msk",
    "mq": "mq",
}


def declared_resource(
    context: TemplateContext, logical_id: str, kind: str, location: Location
) -> ResourceSpec:
    """A queue, stream, table or topic with its name and resolved properties."""
    resource = context.resources[logical_id]
    raw = resource.get("Properties") or {}
    before = set(context.resolver.referenced)
    context.resolver.referenced.clear()
    properties = context.resolve(raw, (*location, "Properties"))
    depends_on = set(context.resolver.referenced) - {logical_id}
    context.resolver.referenced |= before
    for key in properties:
        if key not in CREATABLE[kind]:
            context.notes.info(
                (*location, "Properties", key), f"{key} is not applied by --create-resources"
            )
    if kind == "AWS::DynamoDB::Table" and not properties.get("StreamSpecification"):
        context.notes.info(location, "the table has no stream: no mapping can read it")
    return ResourceSpec(logical_id, kind, context.physical_name(logical_id), properties, depends_on)


def add_event_source_mapping(
    context: TemplateContext, converter: Converter, properties: dict[str, Any], location: Location
) -> None:
    """AWS::Lambda::EventSourceMapping: the function and the source from their ARNs."""
    notes = converter.notes
    props_location = (*location, "Properties")
    function = _function_name(context, properties.get("FunctionName"))
    if function is None:
        notes.unsupported(
            (*props_location, "FunctionName"), "not a function of this template; left out"
        )
        return
    if function not in converter.result.functions:
        notes.unsupported(props_location, f"function {function} is not imported; left out")
        return
    arn = properties.get("EventSourceArn")
    if arn is None:
        if properties.get("SelfManagedEventSource"):
            kind = "kafka"
        else:
            raise notes.error(
                props_location, "EventSourceArn or SelfManagedEventSource is required"
            )
    else:
        parts = str(arn).split(":")
        kind = ESM_KIND_BY_SERVICE.get(parts[2] if len(parts) > 2 else "", "")
        if not kind:
            notes.unsupported(
                (*props_location, "EventSourceArn"),
                f"{arn} is not a queue, stream or broker lambda-bridge reads; left out",
            )
            return
    given = dict(properties)
    if kind == "sqs":
        given["Queue"] = arn
    elif kind in ("kinesis", "dynamodb", "msk"):
        given["Stream"] = arn
    elif kind == "mq":
        given["Broker"] = arn
    source = converter.source(kind, given, props_location)
    if source is None:
        return
    settings = converter.mapping_settings(properties, props_location, kind)
    name = converter.result.mapping_name(f"{function}-{location[-1]}")
    data = {"name": name, "function": function, "source": source, **settings}
    converter.result.mappings.append(Part(data, location, "AWS::Lambda::EventSourceMapping"))


def add_event_invoke_config(
    context: TemplateContext, converter: Converter, properties: dict[str, Any], location: Location
) -> None:
    function = _function_name(context, properties.get("FunctionName"))
    part = converter.result.functions.get(function or "")
    if part is None:
        converter.notes.unsupported(location, "the function is not imported; left out")
        return
    qualifier = str(properties.get("Qualifier", "$LATEST"))
    if qualifier != "$LATEST":
        converter.notes.info(location, f"qualifier {qualifier}: applied to the function")
    apply_invoke_config(converter, part.data, properties, (*location, "Properties"))


def _function_name(context: TemplateContext, value: Any) -> str | None:
    if isinstance(value, ResourceValue):
        resource = context.resources.get(value.logical_id)
        if isinstance(resource, dict) and resource.get("Type") in FUNCTION_TYPES:
            return context.physical_name(value.logical_id)
        return None
    if isinstance(value, str):
        # A name, partial ARN or ARN of a function in this template.
        name = value.split(":function:", 1)[-1].split(":", 1)[0]
        for logical_id, resource in context.resources.items():
            if (
                isinstance(resource, dict)
                and resource.get("Type") in FUNCTION_TYPES
                and context.physical_name(logical_id) == name
            ):
                return name
    return None

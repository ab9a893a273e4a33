"""A template's resolution context: its parameters (defaults, overrides, allowed values),
the pseudo parameters, its conditions and mappings, and what each declared resource's
`Ref` and `Fn::GetAtt` give locally: the names and ARNs of the queues, streams, tables and
topics in the emulator or account the AWS settings point at."""

from __future__ import annotations

import uuid
from typing import Any

from bridge.importing.cfnyaml import Template
from bridge.importing.intrinsics import Resolver
from bridge.importing.model import ImportOptions
from bridge.importing.notes import Location, Notes

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
NAME_PROPERTY = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::IAM::Role": "RoleName",
    "AWS::AmazonMQ::Broker": "BrokerName",
    "AWS::MSK::Cluster": "ClusterName",
    "AWS::Events::EventBus": "Name",
}
LIST_TYPES = ("CommaDelimitedList", "List<")


class TemplateContext:
    """Builds the Resolver of one template and answers resource look-ups."""

    def __init__(self, template: Template, options: ImportOptions, notes: Notes) -> None:
        self.template = template
        self.options = options
        self.notes = notes
        data = template.data
        self.resources: dict[str, Any] = _mapping(data.get("Resources"))
        stack = options.stack_name
        self.pseudo: dict[str, Any] = {
            "AWS::Region": options.region,
            "AWS::AccountId": options.account_id,
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{options.region}:{options.account_id}"
            f":stack/{stack}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self.resolver = Resolver(
            parameters=self._parameters(),
            pseudo=self.pseudo,
            conditions=_mapping(data.get("Conditions")),
            mappings=_mapping(data.get("Mappings")),
            resources=self._lookup,
            error=notes.error,
        )
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()

    def resolve(self, value: Any, location: Location) -> Any:
        return self.resolver.resolve(value, location)

    def included(self, logical_id: str, resource: dict[str, Any]) -> bool:
        """Whether a resource's `Condition` holds."""
        condition = resource.get("Condition")
        if condition is None:
            return True
        return self.resolver.condition(str(condition), ("Resources", logical_id, "Condition"))

    # -- parameters ---------------------------------------------------------------------

    def _parameters(self) -> dict[str, Any]:
        declared = _mapping(self.template.data.get("Parameters"))
        overrides = self.options.parameter_overrides
        for name in overrides:
            if name not in declared:
                self.notes.unsupported(
                    ("Parameters",), f"--parameter-overrides {name}: no such parameter"
                )
        values: dict[str, Any] = {}
        for name in declared:
            location: Location = ("Parameters", name)
            spec = declared[name] if isinstance(declared[name], dict) else {}
            if name in overrides:
                value: Any = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise self.notes.error(
                    location, "has no Default: give it with --parameter-overrides"
                )
            kind = str(spec.get("Type", "String"))
            if kind.startswith(LIST_TYPES):
                value = (
                    value
                    if isinstance(value, list)
                    else [part.strip() for part in str(value).split(",")]
                )
            else:
                value = str(value).lower() if isinstance(value, bool) else str(value)
            allowed = spec.get("AllowedValues")
            if (
                isinstance(allowed, list)
                and not isinstance(value, list)
                and value not in [str(a) for a in allowed]
            ):
                raise self.notes.error(location, f"{value!r} is not one of AllowedValues {allowed}")
            values[name] = value
        return values

    # -- resources ----------------------------------------------------------------------

    def physical_name(self, logical_id: str) -> str:
        """The resource's name: its name property, else `<stack>-<LogicalId>` (a FIFO
        queue's with `.fifo`), as CloudFormation makes one up, without its random part."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            raise self.notes.error(("Resources", logical_id), "its name depends on itself")
        self._naming.add(logical_id)
        try:
            resource = self.resources[logical_id]
            kind = str(resource.get("Type", ""))
            properties = _mapping(resource.get("Properties"))
            prop = NAME_PROPERTY.get(kind)
            location: Location = ("Resources", logical_id, "Properties", prop or "")
            name = self.resolve(properties[prop], location) if prop and prop in properties else None
            if name is None:
                name = (
                    logical_id
                    if kind in (*FUNCTION_TYPES, *LAYER_TYPES)
                    else f"{self.options.stack_name}-{logical_id}"
                )
                if kind == "AWS::SQS::Queue" and self.resolve(
                    properties.get("FifoQueue", False), location
                ) in (True, "true"):
                    name += ".fifo"
                if kind == "AWS::S3::Bucket":
                    name = name.lower()
            self._names[logical_id] = str(name)
            return str(name)
        finally:
            self._naming.discard(logical_id)

    def _lookup(self, logical_id: str, attribute: str | None) -> Any:
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict):
            raise LookupError(f"no parameter or resource named {logical_id!r}")
        kind = str(resource.get("Type", ""))
        name = self.physical_name(logical_id)
        region, account = self.options.region, self.options.account_id
        arn = _arn(kind, name, region, account)
        endpoint = (self.options.endpoint_url or f"https://sqs.{region}.amazonaws.com").rstrip("/")
        table_arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        values: dict[str, dict[str | None, str]] = {
            "AWS::SQS::Queue": {
                None: f"{endpoint}/{account}/{name}",
                "Arn": arn,
                "QueueName": name,
                "QueueUrl": f"{endpoint}/{account}/{name}",
            },
            "AWS::Kinesis::Stream": {None: name, "Arn": arn},
            "AWS::DynamoDB::Table": {
                None: name,
                "Arn": table_arn,
                # The stream's label is known only once the table exists: mappings use the
                # table itself (`table:`), which reads its latest stream.
                "StreamArn": f"{table_arn}/stream/latest",
            },
            "AWS::SNS::Topic": {None: arn, "TopicArn": arn, "TopicName": name},
            "AWS::S3::Bucket": {None: name, "Arn": arn, "DomainName": f"{name}.s3.amazonaws.com"},
            "AWS::IAM::Role": {None: name, "Arn": arn, "RoleId": f"AROA{logical_id.upper()[:17]}"},
        }
        for function_kind in FUNCTION_TYPES:
            values[function_kind] = {None: name, "Arn": arn}
        for layer_kind in LAYER_TYPES:
            values[layer_kind] = {None: arn, "LayerVersionArn": arn}
        known = values.get(kind, {None: arn if kind.startswith("AWS::SNS") else name, "Arn": arn})
        if attribute in known:
            return known[attribute]
        raise LookupError(f"{logical_id}.{attribute} ({kind}) cannot be known locally")


def _arn(kind: str, name: str, region: str, account: str) -> str:
    service_and_path = {
        "AWS::SQS::Queue": ("sqs", name),
        "AWS::Kinesis::Stream": ("kinesis", f"stream/{name}"),
        "AWS::DynamoDB::Table": ("dynamodb", f"table/{name}"),
        "AWS::SNS::Topic": ("sns", name),
        "AWS::Serverless::Function": ("lambda", f"function:{name}"),
        "AWS::Lambda::Function": ("lambda", f"function:{name}"),
        "AWS::Serverless::LayerVersion": ("lambda", f"layer:{name}:1"),
        "AWS::Lambda::LayerVersion": ("lambda", f"layer:{name}:1"),
        # A broker's id is made up by Amazon MQ: a stable one from the name stands in.
        "AWS::AmazonMQ::Broker": ("mq", f"broker:{name}:b-{uuid.uuid5(uuid.NAMESPACE_URL, name)}"),
        "AWS::MSK::Cluster": ("kafka", f"cluster/{name}/0"),
        "AWS::Events::EventBus": ("events", f"event-bus/{name}"),
    }
    if kind == "AWS::S3::Bucket":
        return f"arn:aws:s3:::{name}"
    if kind == "AWS::IAM::Role":
        return f"arn:aws:iam::{account}:role/{name}"
    service, path = service_and_path.get(
        kind, (kind.split("::")[1].lower() if "::" in kind else "unknown", name)
    )
    return f"arn:aws:{service}:{region}:{account}:{path}"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
